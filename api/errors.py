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


# ---- domain errors: raised by the code below the routes, mapped to a status in one place (api/app.py) ----------
class DomainError(Exception):
    """A request the service cannot honour, said in the words of the domain, not of HTTP."""


class InvalidInput(DomainError):
    """A value in the request is malformed or names something it must not (a path with '..', a bad file name)."""


class NotFound(DomainError):
    """The thing the request names does not exist."""


class AlreadyExists(DomainError):
    """Creating it would replace something that exists, and the request did not ask for that."""


class UnsafePath(DomainError):
    """A path a job or a user could have planted leads through a link or to something that is not a plain file."""


class TooLarge(DomainError):
    """The content is over a size limit."""


class UnknownHost(DomainError):
    """`target_host` names a host this service does not know (the old service answered 400)."""


class CannotRunHere(DomainError):
    """The request asks for an executor this service does not have (an HPC target such as Deucalion)."""


DOMAIN_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    AlreadyExists: 409,
    UnsafePath: 409,
    TooLarge: 413,
    UnknownHost: 400,
    CannotRunHere: 422,
}


def domain_status(err: DomainError) -> int:
    for kind in type(err).__mro__:
        if kind in DOMAIN_STATUS:
            return DOMAIN_STATUS[kind]
    return 400
