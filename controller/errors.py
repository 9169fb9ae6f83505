"""Domain errors: what went wrong in terms of jobs and files, never in terms of HTTP.

Code below the API's routes (the controller's model, the API's helpers) raises these; the API maps each kind to one
status code in one place (`api/errors.py`, DOMAIN_STATUS), and the command line turns them into messages. Each
carries a message meant for the user.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the service cannot honour, said in the words of the domain, not of HTTP."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """A value in the request is malformed or names something it must not (a path with '..', a spec that does not
    validate, a name that does not match)."""


class NotFound(DomainError):
    """The thing the request names does not exist."""


class Conflict(DomainError):
    """The request is well formed but the current state forbids it."""


class AlreadyExists(Conflict):
    """Creating it would replace something that exists, and the request did not ask for that."""


class UnsafePath(Conflict):
    """A path a job or a user could have planted leads through a link or to something that is not a plain file."""


class TooLarge(DomainError):
    """The content is over a size limit."""


class OutOfRange(DomainError):
    """A read starts past the end of a file; `size` is where a retry may start."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size
