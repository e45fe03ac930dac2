"""The recall-vs-queries/s plot of a ``bench ann`` report, as PNG and SVG.

Drawn the way ann-benchmarks draws its plots: recall@k across, queries/s up on a
log scale, one point per ef_search, so up and to the right is better. Three
curves: the store on one thread, the store on every core, and raw FAISS HNSW on
one thread as the reference. Uses matplotlib (the ``bench`` extra) without
pyplot, so nothing global changes and no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spyglass.errors import ConfigError

SUFFIXES = (".png", ".svg")


def require_matplotlib() -> None:
    """Raise ``ConfigError`` naming the ``bench`` extra unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "plotting benchmark results needs the 'bench' extra: pip install 'spyglass[bench]'"
        ) from exc


def recall_qps_plot(report: dict[str, Any], stem: Path) -> list[Path]:
    """Plot an ``ann`` report (its JSON form) to ``stem``.png and ``stem``.svg; return both."""
    require_matplotlib()
    from matplotlib.figure import Figure

    data, index, machine = report["data"], report["index"], report["machine"]
    k = data["k"]
    figure = Figure(figsize=(8, 5), dpi=120)
    axes = figure.add_subplot()
    store = report["store"]
    series = [  # label, rows, figure, line style, color, label offset (FAISS's below its point)
        (f"Spyglass ({store}), 1 thread", report["rows"], "qps_1", "o-", "C0", (4, 4)),
        (
            f"Spyglass ({store}), {machine['cores']} threads",
            report["rows"],
            "qps_all",
            "s-",
            "C1",
            (4, 4),
        ),
        ("FAISS IndexHNSWFlat, 1 thread", report["faiss"], "qps_1", "^--", "C2", (4, -11)),
    ]
    for label, rows, key, style, color, offset in series:
        if not rows:
            continue
        recalls = [row["recall"] for row in rows]
        rates = [row[key] for row in rows]
        axes.plot(recalls, rates, style, color=color, label=label)
        for row in rows:
            axes.annotate(
                str(row["ef"]),
                (row["recall"], row[key]),
                textcoords="offset points",
                xytext=offset,
                fontsize=7,
                color=color,
            )
    axes.set_yscale("log")
    axes.set_xlabel(f"recall@{k} (numbers: ef_search)")
    axes.set_ylabel("queries/s (log)")
    axes.grid(True, which="both", alpha=0.3)
    name = Path(data["path"]).name or data["path"]
    axes.set_title(
        f"{name}: {data['base']:,} x {data['dim']}, {data['queries']:,} queries,"
        f" {data['metric']}, HNSW M={index['m']} efC={index['ef_construction']}",
        fontsize=10,
    )
    figure.text(
        0.01,
        0.01,
        f"spyglass {report['spyglass']}, {machine['cpu']}, {machine['cores']} cores,"
        f" {report['created_at']}" + (" (partial: interrupted)" if report.get("partial") else ""),
        fontsize=7,
        color="0.4",
    )
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + suffix) for suffix in SUFFIXES]
    for path in paths:
        figure.savefig(path)
    return paths
