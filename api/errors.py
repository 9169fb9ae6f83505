"""The API's errors: one exception type that carries an HTTP status and a message meant for the user.

Every error leaves the API as `{"detail": "..."}` with a 4xx status (a 503 only when the data folder itself cannot be
written or read, which is not the caller's fault).
"""

from __future__ import annotations

from controller.errors import (  # noqa: F401  (re-exported: the API's modules import them from here)
    AlreadyExists,
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    OutOfRange,
    TooLarge,
    UnsafePath,
)

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


# ---- domain errors (defined in controller/errors.py) and the one mapping to HTTP -------------------------------
class UnknownHost(DomainError):
    """`target_host` names a host this service does not know (the old service answered 400)."""


class CannotRunHere(DomainError):
    """The request asks for an executor this service does not have (an HPC target such as Deucalion)."""


DOMAIN_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,  # AlreadyExists, UnsafePath (and controller.jobfiles.UnsafeFile) included
    TooLarge: 413,
    OutOfRange: 416,
    UnknownHost: 400,
    CannotRunHere: 422,
}


def domain_status(err: DomainError) -> int:
    for kind in type(err).__mro__:
        if kind in DOMAIN_STATUS:
            return DOMAIN_STATUS[kind]
    return 400


def domain_headers(err: DomainError) -> dict[str, str] | None:
    return {"X-Next-Offset": str(err.size)} if isinstance(err, OutOfRange) else None
