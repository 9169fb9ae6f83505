"""Click options made from the settings' declarations (controller/settings.py), so no flag is declared twice.

Every generated option defaults to None: a flag given on the command line is passed to the settings class and wins;
one not given leaves the environment variable, else the declared default. The help shows both.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic_settings import BaseSettings

from controller.settings import SettingsError, env_name, flag_name


def _text_fields(cls: type[BaseSettings]) -> set[str]:
    """Fields the settings class parses from text itself (memory sizes, GPU lists, queue limits)."""
    validators = cls.__pydantic_decorators__.field_validators.values()
    return {f for v in validators if v.info.mode == "before" for f in v.info.fields}


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """The click type for a field's annotation, and whether it is an on/off flag; text for everything parsed later."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        return None, True
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)]), False
    if annotation is Path:
        return click.Path(path_type=Path), False
    if annotation in (int, float):
        return annotation, False
    return None, False


def _help(cls: type[BaseSettings], field: str) -> str:
    info = cls.model_fields[field]
    default = info.default
    shown = "" if default is None or default is False else f"; default {default}"
    return f"{info.description} [env {env_name(cls, field)}{shown}]"


def setting_options(cls: type[BaseSettings], *fields: str, **flags: str) -> Callable[[Callable], Callable]:
    """Decorator adding a click option for each named field, spelled as declared (or as `flags` renames it)."""

    def decorate(command: Callable) -> Callable:
        for field in reversed(fields):
            flag = flags.get(field) or flag_name(cls, field)
            if flag is None:
                raise TypeError(f"{cls.__name__}.{field} declares no flag")
            if field in _text_fields(cls):
                click_type, is_flag = None, False
            else:
                click_type, is_flag = _click_type(cls.model_fields[field].annotation)
            command = click.option(flag, field, type=click_type, is_flag=is_flag, default=None, help=_help(cls, field))(
                command
            )
        return command

    return decorate


def load_settings(cls: type[BaseSettings], flags: dict[str, Any]) -> Any:
    """The settings with the given flags over the environment; a bad flag is a usage error naming it (exit 2), a bad
    variable a plain error naming it (exit 1)."""
    try:
        return cls.from_env(**flags)  # type: ignore[attr-defined]
    except SettingsError as err:
        if err.given:
            raise click.UsageError(str(err)) from None
        raise click.ClickException(f"bad setting: {err}") from None
