"""Placement constraints in Docker Swarm's syntax (`node.labels.gpu==true`, `node.hostname!=old-box`): parsed,
checked and matched against a node, with no I/O.

Swarm accepts any key that fits its pattern and then never places a task whose key it does not know, so a typo
would leave a job waiting for ever; here an unknown key, a missing operator or a bad value is a clear spec error
instead. The keys and patterns follow swarmkit's `manager/constraint` package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

OPERATORS = ("==", "!=")
NODE_LABEL_PREFIX = "node.labels."
ENGINE_LABEL_PREFIX = "engine.labels."
PLAIN_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
ROLES = ("manager", "worker")
_KEY_RE = re.compile(r"^[a-z_][a-z0-9\-_.]+$", re.IGNORECASE)
# a value may not hold an operator, current or future (<, >, ~, =, !)
_VALUE_RE = re.compile(r"^[a-z0-9:\-_\s.*()?+\[\]\\^$|/]+$", re.IGNORECASE)
MAX_CONSTRAINT = 256


class NodeFacts(Protocol):
    """What a constraint is matched against (runtime.base.NodeInfo has these)."""

    @property
    def id(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def os(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def engine_labels(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Constraint:
    key: str
    op: Literal["==", "!="]
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"

    def matches(self, node: NodeFacts) -> bool:
        """Swarm's rule: keys and the values of id, hostname, role and platform compare without case; label values
        compare exactly; a label the node does not have matches `!=` only."""
        key = self.key.lower()
        if key.startswith(NODE_LABEL_PREFIX) or key.startswith(ENGINE_LABEL_PREFIX):
            labels = node.labels if key.startswith(NODE_LABEL_PREFIX) else node.engine_labels
            name = self.key[len(NODE_LABEL_PREFIX if key.startswith(NODE_LABEL_PREFIX) else ENGINE_LABEL_PREFIX) :]
            have = labels.get(name)
            equal = have is not None and have == self.value
        else:
            have = {
                "node.id": node.id,
                "node.hostname": node.hostname,
                "node.role": node.role,
                "node.platform.os": node.os,
                "node.platform.arch": node.arch,
            }[key]
            equal = have.lower() == self.value.lower()
        return equal if self.op == "==" else not equal


def parse_constraint(text: str) -> Constraint:
    """One constraint, checked; ValueError with what is wrong and an example otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a placement constraint must be a non-empty string like node.labels.gpu==true")
    if len(text) > MAX_CONSTRAINT:
        raise ValueError(f"placement constraint longer than {MAX_CONSTRAINT} characters")
    found = [op for op in OPERATORS if op in text]
    if len(found) != 1 or text.count(found[0]) != 1:
        raise ValueError(f"placement constraint {text!r} needs exactly one operator, == or != (e.g. node.role==worker)")
    op = found[0]
    key, value = (part.strip() for part in text.split(op, 1))
    if not _KEY_RE.match(key):
        raise ValueError(f"placement constraint {text!r}: {key!r} is not a key (letters, digits, '-', '_', '.')")
    lower = key.lower()
    if lower.startswith((NODE_LABEL_PREFIX, ENGINE_LABEL_PREFIX)):
        if lower in (NODE_LABEL_PREFIX.rstrip("."), ENGINE_LABEL_PREFIX.rstrip(".")) or key.endswith("."):
            raise ValueError(f"placement constraint {text!r}: name the label, e.g. node.labels.gpu==true")
    elif lower not in PLAIN_KEYS:
        known = ", ".join((*PLAIN_KEYS, NODE_LABEL_PREFIX + "NAME", ENGINE_LABEL_PREFIX + "NAME"))
        raise ValueError(f"placement constraint {text!r}: unknown key {key!r}; Swarm knows {known}")
    if not value or not _VALUE_RE.match(value):
        raise ValueError(
            f"placement constraint {text!r}: the value must be non-empty, without operators (=, !, <, >, ~)"
        )
    if lower == "node.role" and value.lower() not in ROLES:
        raise ValueError(f"placement constraint {text!r}: node.role is manager or worker")
    return Constraint(key, op, value)  # type: ignore[arg-type]


def parse_constraints(texts: Iterable[str]) -> tuple[Constraint, ...]:
    return tuple(parse_constraint(t) for t in texts)


def node_matches(node: NodeFacts, constraints: Iterable[str]) -> bool:
    """Whether every constraint holds on `node` (Swarm ANDs them)."""
    return all(parse_constraint(c).matches(node) for c in constraints)


def mismatches(node: NodeFacts, constraints: Iterable[str]) -> list[str]:
    """The constraints `node` does not meet, as written."""
    return [c for c in constraints if not parse_constraint(c).matches(node)]


def exclude_node(node_id: str) -> str:
    """The constraint that keeps jobs off one node."""
    return f"node.id!={node_id}"


def on_node(hostname: str | None = None, node_id: str | None = None) -> str:
    """The constraint that puts a job on one node: by host name, or by id when host names are not unique."""
    return f"node.id=={node_id}" if node_id else f"node.hostname=={hostname}"
