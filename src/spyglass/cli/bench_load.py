"""``spyglass bench load``, ``capacity`` and ``compare``: load a running server."""

from __future__ import annotations

import click


def install(group: click.Group) -> None:
    """Add the ``load``, ``capacity`` and ``compare`` commands to ``group``."""
