"""The API's errors: one exception type that carries an HTTP status and a message meant for the user.

Every error leaves the API as `{"detail": "..."}` with a 4xx status (a 503 only when the data folder itself cannot be
written or read, which is not the caller's fault).
"""

from __future__ import annotations

NAME_RULE = (
    "a job name is a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter "
    "or digit, at most 63 characters"
)


class ApiError(Exception):
    """An error to answer with `status` and `{"detail": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def not_found(name: str) -> ApiError:
    return ApiError(404, f"job {name!r} not found: no spec file defines it and the controller has no record of it")


def short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
