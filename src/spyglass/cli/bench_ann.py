"""``spyglass bench ann``: recall and queries/s of the index on a data set with ground truth."""

from __future__ import annotations

import click


def install(group: click.Group) -> None:
    """Add the ``ann`` command to ``group``."""
