"""``spyglass bench``: measure recall, throughput and capacity, as part of the product.

The subcommands live in their own modules (:mod:`spyglass.cli.bench_ann` for ``ann``,
:mod:`spyglass.cli.bench_load` for ``load``, ``capacity`` and ``compare``); this group
only gathers them; :mod:`spyglass.cli.bench_overload` adds ``overload``.
"""

from __future__ import annotations

import click


@click.group(name="bench")
def bench() -> None:
    """Measure an index (ann) or a running server (load, capacity, overload); compare reports."""


def install(group: click.Group) -> None:
    """Add ``bench`` and every subcommand that is importable to ``group``."""
    from spyglass.cli import bench_ann, bench_load, bench_overload

    bench_ann.install(bench)
    bench_load.install(bench)
    bench.add_command(bench_overload.overload_command)
    group.add_command(bench)
