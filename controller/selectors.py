"""Label selectors (`-l team=a,debug`, `?label=team=a`): one parser and one matcher for the API and the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Selector = list[tuple[str, str | None]]


def parse_label_selector(values: Iterable[str]) -> Selector:
    """`k=v` (equal) or `k` (present), each one a requirement; ValueError says which one is malformed."""
    out: Selector = []
    for raw in values:
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key = key.strip()
            if sep and value.startswith("="):  # k==v, as kubectl allows
                value = value[1:]
            if not key:
                raise ValueError(f"label selector {part!r} has no key; use key=value or key")
            out.append((key, value.strip() if sep else None))
    return out


def labels_match(labels: Mapping[str, str], selector: Selector) -> bool:
    """Every requirement holds: the key is present and, when a value is given, equal."""
    return all(k in labels and (v is None or labels[k] == v) for k, v in selector)
