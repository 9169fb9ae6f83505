"""The client's error type: a message for the user on stderr (`error: ...`) and an exit code."""

from __future__ import annotations

from typing import IO, Any

import click


class CliError(click.ClickException):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click types it per class; ours varies per error

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)
