"""``spyglass bench ann``: recall and queries/s of the index on a data set with ground truth.

Thin: loading is :mod:`spyglass.bench.datasets`, measuring :mod:`spyglass.bench.ann`,
plotting :mod:`spyglass.bench.plots`. This module parses the options, draws the
progress bar and the table, and writes ``<out>/ann-<data>-<store>.{json,png,svg}``.
Ctrl-C during the measurements still writes what was measured, then exits 130.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from spyglass.errors import ConfigError
from spyglass.stores.base import METRICS, IndexParams, Metric

console = Console()
errors = Console(stderr=True)
DEFAULT_EFS = "16,32,64,128,256"


def install(group: click.Group) -> None:
    """Add the ``ann`` command to ``group``."""
    group.add_command(ann)


@click.command(name="ann")
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The data set: a TEXMEX folder (*base.fvecs, *query.fvecs, *groundtruth*.ivecs),"
    " an ann-benchmarks .hdf5 file, or a folder with base.npy and query.npy.",
)
@click.option(
    "--store",
    "location",
    default=None,
    help="A data directory or a postgresql:// URL to build in (a collection of its own,"
    " dropped afterwards). Default: a fresh embedded store in a temporary directory.",
)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    default=None,
    help="Override the data set's metric (ground truth is then computed if none fits).",
)
@click.option("--k", "k", type=click.IntRange(1), default=10, show_default=True, help="Recall@k.")
@click.option(
    "--ef",
    "ef_list",
    default=DEFAULT_EFS,
    show_default=True,
    help="The ef_search values to sweep, comma-separated.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("bench-results"),
    show_default=True,
    help="Folder for the JSON report and the PNG and SVG plots.",
)
@click.option(
    "--queries",
    type=click.IntRange(1),
    default=None,
    help="Use only the first N queries (default: all).",
)
@click.option(
    "--m", "m", type=click.IntRange(2), default=IndexParams.m, show_default=True, help="HNSW M."
)
@click.option(
    "--ef-construction",
    type=click.IntRange(1),
    default=IndexParams.ef_construction,
    show_default=True,
    help="HNSW ef_construction.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Least time per measurement: the queries repeat until it has passed (0: one pass).",
)
def ann(
    data_path: Path,
    location: str | None,
    metric: Metric | None,
    k: int,
    ef_list: str,
    out: Path,
    queries: int | None,
    m: int,
    ef_construction: int,
    seconds: float,
) -> None:
    """Recall@k and queries/s of the store's HNSW index over an ef_search sweep.

    Loads the data set, builds a collection of its base vectors (bulk upserts, then
    optimize: the build time), and for each ef runs the queries one per call on one
    thread (queries/s, p50/p99 latency, recall against the exact ground truth) and on
    one caller thread per core (queries/s). Raw FAISS IndexHNSWFlat with the same M,
    ef_construction and metric is measured the same way, as a reference curve. Prints
    a table and writes a JSON report and a recall vs queries/s plot (PNG and SVG).
    Ctrl-C stops early and still writes what was measured.
    """
    from spyglass.bench.ann import AnnReport, run
    from spyglass.bench.datasets import load_data
    from spyglass.bench.plots import recall_qps_plot, require_matplotlib
    from spyglass.settings import load_settings
    from spyglass.stores import is_postgres

    efs = parse_efs(ef_list)
    require_matplotlib()  # fail now, not after the run
    settings = load_settings()
    bar = Bar()
    with bar.progress:
        bar.start(f"load {data_path}", None)
        data = load_data(data_path, metric).head(queries)
        if data.neighbors is None or data.neighbors.shape[1] < k:
            bar.start("compute the exact ground truth", None)
        data = data.with_truth(k)
    kind = "postgresql" if is_postgres(location) else "embedded"
    params = IndexParams(m=m, ef_construction=ef_construction)
    report = AnnReport(data=data, k=k, store=kind, index=params)
    bar.lines = not errors.is_terminal
    try:
        with bar.progress:
            run(report, location, settings, efs, seconds=seconds, progress=bar)
    except KeyboardInterrupt:
        report.partial = True
        if report.build_s is None:
            errors.print("interrupted before anything was measured")
            raise SystemExit(130) from None
    stem = out / f"ann-{data.name}-{report.store}"
    json_path = report.write(stem.with_name(stem.name + ".json"))
    document = report.as_dict()
    console.print(results_table(document))
    console.print(summary(document), soft_wrap=True, highlight=False)
    plots = recall_qps_plot(document, stem) if document["rows"] or document["faiss"] else []
    written = ", ".join(str(path) for path in [json_path, *plots])
    console.print(f"wrote {written}", soft_wrap=True, highlight=False)
    if report.partial:
        errors.print("interrupted: the report holds what was measured before Ctrl-C")
        raise SystemExit(130)


def parse_efs(text: str) -> list[int]:
    """``"16,32,64"`` as sorted distinct ints >= 1, or ``ConfigError``."""
    try:
        efs = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise ConfigError(f"--ef must be comma-separated integers, not {text!r}") from exc
    if not efs or efs[0] < 1:
        raise ConfigError(f"--ef must list integers of at least 1, not {text!r}")
    return efs


def results_table(report: dict[str, Any]) -> Table:
    """The sweep as one table: the store's figures and FAISS's side by side, per ef."""
    data, k, cores = report["data"], report["data"]["k"], report["machine"]["cores"]
    table = Table(
        "ef",
        f"recall\n@{k}",
        "q/s\n1 thread",
        f"q/s\n{cores} threads",
        "p50\nms",
        "p99\nms",
        f"FAISS\nrecall@{k}",
        "FAISS q/s\n1 thread",
        box=box.SIMPLE_HEAVY,
        title=f"bench ann: {Path(data['path']).name}, {data['base']:,} x {data['dim']},"
        f" {data['queries']:,} queries, {data['metric']}, {report['store']} store,"
        f" HNSW M={report['index']['m']} efC={report['index']['ef_construction']}",
    )
    reference = {row["ef"]: row for row in report["faiss"]}
    for ef in sorted({row["ef"] for row in report["rows"]} | set(reference)):
        row = next((r for r in report["rows"] if r["ef"] == ef), None)
        ref = reference.get(ef)
        mine = (
            [f"{row['recall']:.4f}", f"{row['qps_1']:,.0f}", f"{row['qps_all']:,.0f}"]
            + [f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}"]
            if row
            else [""] * 5
        )
        theirs = [f"{ref['recall']:.4f}", f"{ref['qps_1']:,.0f}"] if ref else ["", ""]
        table.add_row(str(ef), *mine, *theirs)
    return table


def summary(report: dict[str, Any]) -> str:
    """Build time, index size, RSS and where the ground truth came from, in one line."""
    size = report["index_bytes"]
    rss = report["rss_mb"]
    build = report["build_s"]
    return (
        f"build (upsert + optimize) {'n/a' if build is None else f'{build:.2f} s'};"
        f" index on disk {'n/a' if size is None else f'{size / 1e6:.1f} MB'};"
        f" process RSS {'n/a' if rss is None else f'{rss:.0f} MiB'};"
        f" ground truth: {report['data']['ground_truth']}"
    )


class Bar:
    """A rich progress bar on stderr, one phase at a time (the ``Progress`` of a run).

    Where stderr is not a terminal no bar is drawn; with ``lines`` set, each phase's
    name is written as a line instead (set once the input is checked, so that a
    user's mistake stays one line)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        )
        self.task = self.progress.add_task("", total=None)
        self.lines = False

    def start(self, what: str, total: int | None) -> None:
        self.progress.reset(self.task, total=total, description=what)
        if self.lines:
            errors.print(what, soft_wrap=True, highlight=False, markup=False)

    def advance(self, steps: int = 1) -> None:
        self.progress.advance(self.task, steps)
