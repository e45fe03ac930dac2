"""Click options generated from the settings declaration, so flags never drift from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import click

from spyglass.settings import ENV_PREFIX, Settings

F = TypeVar("F", bound=Callable[..., Any])


def _click_type(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    kind = args[0]
    if kind is Path:
        return click.Path(path_type=Path)
    if kind in (int, float, str):
        return kind
    return str


def _structured(annotation: Any) -> bool:
    """A setting made of tables (``sources``): config file or environment only, no flag."""
    return get_origin(annotation) in (tuple, list, dict)


def setting_options(*names: str) -> Callable[[F], F]:
    """Decorate a command with one ``--flag`` per named setting (all settings if none named).

    Flags default to None so that an absent flag leaves the environment, the
    config file or the default in charge.
    """
    chosen = names or tuple(
        name for name, field in Settings.model_fields.items() if not _structured(field.annotation)
    )

    def decorate(command: F) -> F:
        for name in reversed(chosen):
            field = Settings.model_fields[name]
            flag = "--" + name.replace("_", "-")
            help_text = (
                f"{field.description} [env {ENV_PREFIX}{name.upper()}; default {field.default}]"
            )
            if field.annotation is bool:
                option = click.option(
                    f"{flag}/--no-{name.replace('_', '-')}", name, default=None, help=help_text
                )
            else:
                option = click.option(
                    flag, name, type=_click_type(field.annotation), default=None, help=help_text
                )
            command = option(command)
        return command

    return decorate
