"""Push webhooks from GitHub, GitLab and Gitea: verify the sender, then ask the git source to fetch now.

The body is never trusted for what to apply: a verified hook only wakes the fetch, which reads the ref from the
repository itself. So a replayed or reordered hook can do no harm beyond an extra fetch.

- GitHub: `X-Hub-Signature-256: sha256=HEX`, HMAC-SHA256 of the body with the secret.
- Gitea (and Forgejo): `X-Gitea-Signature: HEX` (or `X-Hub-Signature-256` as GitHub), the same HMAC.
- GitLab: `X-Gitlab-Token: SECRET`, the secret itself (GitLab does not sign bodies).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Webhook:
    secret: str
    trigger: Callable[[], None]


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """The sender ("github", "gitea", "gitlab") when the request carries a valid signature or token, else None."""
    key = secret.encode()
    digest = hmac.new(key, body, hashlib.sha256).hexdigest()
    github = headers.get("x-hub-signature-256")
    if github is not None:
        return "github" if hmac.compare_digest(github.strip(), f"sha256={digest}") else None
    gitea = headers.get("x-gitea-signature") or headers.get("x-gogs-signature")
    if gitea is not None:
        return "gitea" if hmac.compare_digest(gitea.strip(), digest) else None
    gitlab = headers.get("x-gitlab-token")
    if gitlab is not None:
        return "gitlab" if hmac.compare_digest(gitlab.encode(), key) else None
    return None
