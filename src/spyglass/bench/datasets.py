"""Data sets with ground truth for ``spyglass bench ann``: TEXMEX, ann-benchmarks HDF5, .npy.

Three layouts are read, all into the same :class:`AnnData`:

- **TEXMEX** (SIFT, GIST, ...): ``<prefix>base.fvecs`` (or ``.bvecs``), ``<prefix>query.fvecs``
  and ``<prefix>groundtruth*.ivecs`` in one folder (or give the base file itself).
- **ann-benchmarks HDF5**: datasets ``train``, ``test``, ``neighbors`` (and ``distances``),
  the metric in the file's ``distance`` attribute (``angular`` is cosine). Needs ``h5py``
  (the ``bench`` extra).
- **.npy folder**: ``base.npy``, ``query.npy`` and optionally ground-truth ids, any file
  such as ``gt.npy``, ``neighbors.npy`` or ``gt_<metric>_neighbors.npy``.

Ground truth is only trusted for the metric it was computed with: a metric word in
its file name (``euclidean``/``l2``, ``angular``/``cosine``, ``ip``/``dot``) or the
HDF5 attribute says which. Without one, TEXMEX truth is euclidean (its convention)
and a .npy truth is taken to be for the metric chosen. Cosine and inner-product
truth are interchangeable when every vector has unit length. When nothing fits, or
it holds fewer than ``k`` neighbours, :meth:`AnnData.with_truth` computes the exact
top-k by brute force with FAISS ``IndexFlat``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from spyglass.errors import ConfigError
from spyglass.stores.base import Metric

#: Metric words found in ground-truth file names and HDF5 ``distance`` attributes.
METRIC_WORDS: dict[str, Metric] = {
    "euclidean": "l2",
    "l2": "l2",
    "angular": "cosine",
    "cosine": "cosine",
    "ip": "ip",
    "dot": "ip",
    "inner": "ip",
    "innerproduct": "ip",
}
#: Which truth a folder's metric defaults to when it holds several (fashion-mnist has
#: euclidean and angular; ann-benchmarks publishes it as euclidean).
PREFERENCE: tuple[Metric, ...] = ("l2", "cosine", "ip")
VECS_DTYPES = {".fvecs": np.float32, ".bvecs": np.uint8, ".ivecs": np.int32}
TRUTH_WORDS = {"gt", "groundtruth", "neighbors", "neighbours", "truth"}
NOT_TRUTH_WORDS = {"distances", "distance", "scores", "labels", "dist"}
UNIT_TOLERANCE = 1e-3

Truths = dict[Metric | None, tuple[str, Callable[[], np.ndarray]]]
"""metric -> (file name, a loader of its ids); loaded only when chosen."""


@dataclass(frozen=True)
class AnnData:
    """Base vectors, queries and (when known) their exact nearest neighbours."""

    name: str
    path: Path
    layout: str
    """``texmex``, ``hdf5`` or ``npy``."""
    metric: Metric
    base: np.ndarray
    """(n, dim) float32, C-contiguous: item ``i`` is row ``i``."""
    queries: np.ndarray
    """(q, dim) float32."""
    neighbors: np.ndarray | None
    """(q, >= 1) int64 base rows, nearest first; None until computed."""
    truth: str
    """Where ``neighbors`` came from: a file name, ``computed (...)``, or ``""``."""

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    def head(self, queries: int | None) -> AnnData:
        """The first ``queries`` queries only (all when None)."""
        if queries is None or queries >= len(self.queries):
            return self
        truth = None if self.neighbors is None else self.neighbors[:queries]
        return replace(self, queries=self.queries[:queries], neighbors=truth)

    def with_truth(self, k: int) -> AnnData:
        """This data with at least ``k`` true neighbours per query, computed if need be."""
        if self.neighbors is not None and self.neighbors.shape[1] >= k:
            return self
        k = min(k, len(self.base))
        found = exact_neighbors(self.base, self.queries, self.metric, k)
        flat = "IndexFlatL2" if self.metric == "l2" else "IndexFlatIP"
        return replace(self, neighbors=found, truth=f"computed exactly (FAISS {flat})")


def load_data(path: Path, metric: Metric | None = None) -> AnnData:
    """The data set at ``path`` (a file or folder in one of the layouts above).

    ``metric`` overrides the one the data declares. Raises ``ConfigError`` with one
    line saying what is wrong.
    """
    if not path.exists():
        raise ConfigError(f"data set {path} does not exist")
    if path.is_file():
        if path.suffix in (".hdf5", ".h5"):
            return load_hdf5(path, metric)
        if path.suffix in (".fvecs", ".bvecs") and path.stem.endswith("base"):
            return load_texmex(path.parent, metric, prefix=path.stem[: -len("base")])
        raise ConfigError(
            f"data set {path}: expected a .hdf5 file, a TEXMEX *base.fvecs file or a folder"
        )
    if _texmex_prefixes(path):
        return load_texmex(path, metric)
    if (path / "base.npy").is_file():
        return load_npy(path, metric)
    hdf5 = sorted([*path.glob("*.hdf5"), *path.glob("*.h5")])
    if len(hdf5) == 1:
        return load_hdf5(hdf5[0], metric)
    raise ConfigError(
        f"data set {path}: no *base.fvecs/.bvecs, base.npy or single .hdf5 file in the folder"
    )


def load_texmex(
    directory: Path, metric: Metric | None = None, prefix: str | None = None
) -> AnnData:
    """``<prefix>base``, ``<prefix>query`` (.fvecs or .bvecs), ``<prefix>groundtruth*.ivecs``."""
    if prefix is None:
        prefixes = _texmex_prefixes(directory)
        if len(prefixes) != 1:
            raise ConfigError(
                f"data set {directory}: several TEXMEX base files ({', '.join(sorted(prefixes))});"
                " give the one to use"
            )
        prefix = prefixes.pop()
    base_file = _first(directory, [f"{prefix}base.fvecs", f"{prefix}base.bvecs"])
    query_file = _first(directory, [f"{prefix}query.fvecs", f"{prefix}query.bvecs"])
    if base_file is None or query_file is None:
        raise ConfigError(f"data set {directory}: needs {prefix}base.fvecs and {prefix}query.fvecs")
    truths: Truths = {}
    for file in sorted(directory.glob(f"{prefix}*.ivecs")):
        words = _words(file.name[len(prefix) :])
        if words & TRUTH_WORDS:
            # TEXMEX ground truth without a metric word is euclidean (SIFT, GIST)
            truths.setdefault(_metric_of(words) or "l2", (file.name, _ivecs_loader(file)))
    return _assemble(
        directory,
        "texmex",
        read_vecs(base_file),
        read_vecs(query_file),
        truths,
        metric,
        default="l2",
    )


def load_npy(directory: Path, metric: Metric | None = None) -> AnnData:
    """``base.npy``, ``query.npy`` and any ground-truth ids file (see the module docstring)."""
    query_file = directory / "query.npy"
    if not query_file.is_file():
        raise ConfigError(f"data set {directory}: base.npy without query.npy")
    truths: Truths = {}
    for file in sorted(directory.glob("*.npy")):
        words = _words(file.name)
        if words & TRUTH_WORDS and not words & NOT_TRUTH_WORDS:
            truths.setdefault(_metric_of(words), (file.name, _npy_loader(file)))
    return _assemble(
        directory,
        "npy",
        _npy(directory / "base.npy"),
        _npy(query_file),
        truths,
        metric,
        default="cosine",
    )


def load_hdf5(path: Path, metric: Metric | None = None) -> AnnData:
    """An ann-benchmarks file: ``train``, ``test``, ``neighbors``, attribute ``distance``."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in ("train", "test") if key not in handle]
            if missing:
                raise ConfigError(f"data set {path}: no {' or '.join(missing)} dataset in the file")
            base = np.asarray(handle["train"][()])
            queries = np.asarray(handle["test"][()])
            declared: Metric | None = None
            if "distance" in handle.attrs:
                declared = _declared_metric(path, handle.attrs["distance"])
            truths: Truths = {}
            if "neighbors" in handle:
                ids = np.asarray(handle["neighbors"][()])
                truths[declared or "l2"] = ("neighbors", lambda: ids)
    except OSError as exc:
        raise ConfigError(f"data set {path} is not a readable HDF5 file: {exc}") from exc
    return _assemble(path, "hdf5", base, queries, truths, metric, default=declared or "l2")


def read_vecs(path: Path) -> np.ndarray:
    """A TEXMEX ``.fvecs``/``.bvecs``/``.ivecs`` file: each row an int32 dim, then the values."""
    dtype = np.dtype(VECS_DTYPES[path.suffix])
    raw = np.fromfile(path, dtype=np.uint8)
    dim = int(raw[:4].view(np.int32)[0]) if raw.size >= 4 else 0
    width = 4 + dim * dtype.itemsize
    if dim <= 0 or raw.size % width:
        raise ConfigError(f"{path} is not a {path.suffix} file (bad size or dimension)")
    rows = raw.reshape(-1, width)
    if not (np.ascontiguousarray(rows[:, :4]).view(np.int32) == dim).all():
        raise ConfigError(f"{path}: rows of different dimensions")
    return np.ascontiguousarray(rows[:, 4:]).view(dtype)


def exact_neighbors(base: np.ndarray, queries: np.ndarray, metric: Metric, k: int) -> np.ndarray:
    """The true top-``k`` base rows of each query, best first (FAISS brute force)."""
    index: Any
    if metric == "l2":
        index = faiss.IndexFlatL2(base.shape[1])
        base_rows, query_rows = base, queries
    else:
        index = faiss.IndexFlatIP(base.shape[1])
        base_rows, query_rows = (
            (unit(base), unit(queries)) if metric == "cosine" else (base, queries)
        )
    index.add(np.ascontiguousarray(base_rows, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(query_rows, dtype=np.float32), k)
    return np.asarray(found, dtype=np.int64)


def unit(vectors: np.ndarray) -> np.ndarray:
    """A unit-length copy (what the store indexes for cosine); zero rows stay zero."""
    copy = np.array(vectors, dtype=np.float32, order="C")
    faiss.normalize_L2(copy)
    return copy


# assembling and checking


def _assemble(
    path: Path,
    layout: str,
    base: np.ndarray,
    queries: np.ndarray,
    truths: Truths,
    metric: Metric | None,
    *,
    default: Metric,
) -> AnnData:
    base, queries = _vectors(path, base, "base"), _vectors(path, queries, "query")
    if base.shape[1] != queries.shape[1]:
        raise ConfigError(
            f"data set {path}: base is {base.shape[1]}-d but queries are {queries.shape[1]}-d"
        )
    chosen_metric = _pick_metric(truths, metric, default)
    chosen = truths.get(chosen_metric) or truths.get(None)
    if chosen is None and chosen_metric != "l2":
        other = truths.get("ip" if chosen_metric == "cosine" else "cosine")
        if other is not None and _unit_rows(base) and _unit_rows(queries):
            chosen = other  # same ranking on unit vectors
    neighbors = None
    if chosen is not None:
        neighbors = _truth(path, chosen[0], chosen[1](), len(base), len(queries))
    name = path.stem if path.is_file() else path.name
    return AnnData(
        name=name,
        path=path,
        layout=layout,
        metric=chosen_metric,
        base=base,
        queries=queries,
        neighbors=neighbors,
        truth=chosen[0] if chosen is not None else "",
    )


def _pick_metric(truths: Truths, metric: Metric | None, default: Metric) -> Metric:
    """The metric asked for, else the first in :data:`PREFERENCE` with truth, else ``default``."""
    if metric is not None:
        return metric
    for candidate in PREFERENCE:
        if truths.get(candidate) is not None:
            return candidate
    return default


def _vectors(path: Path, array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim != 2 or not array.shape[0] or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(
            f"data set {path}: {what} vectors must be a non-empty 2-D numeric array,"
            f" not {array.dtype} {array.shape}"
        )
    vectors = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ConfigError(f"data set {path}: {what} vectors hold NaN or infinite values")
    return vectors


def _truth(path: Path, source: str, ids: np.ndarray, n: int, q: int) -> np.ndarray:
    if ids.ndim != 2 or ids.shape[0] < q or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(
            f"data set {path}: ground truth {source} must be integer ids, one row per query"
            f" ({q}), not {ids.dtype} {ids.shape}"
        )
    ids = np.asarray(ids[:q], dtype=np.int64)
    if ids.size and (ids.max() >= n or ids.min() < -1):
        raise ConfigError(f"data set {path}: ground truth {source} names rows outside the base")
    return ids


def _unit_rows(vectors: np.ndarray) -> bool:
    norms = np.linalg.norm(vectors, axis=1)
    return bool(np.all(np.abs(norms - 1.0) <= UNIT_TOLERANCE))


def _declared_metric(path: Path, raw: Any) -> Metric:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    metric = METRIC_WORDS.get(text.lower().replace("_", "").replace("-", ""))
    if metric is None:
        raise ConfigError(
            f"data set {path}: distance {text!r} is not supported (angular, euclidean, ip)"
        )
    return metric


def _words(name: str) -> set[str]:
    stem = name.split(".")[0]
    return set(re.split(r"[^a-z0-9]+", stem.lower())) - {""}


def _metric_of(words: set[str]) -> Metric | None:
    found = {METRIC_WORDS[w] for w in words if w in METRIC_WORDS}
    return found.pop() if len(found) == 1 else None


def _texmex_prefixes(directory: Path) -> set[str]:
    return {
        file.name[: -len("base.fvecs")]
        for pattern in ("*base.fvecs", "*base.bvecs")
        for file in directory.glob(pattern)
    }


def _first(directory: Path, names: list[str]) -> Path | None:
    return next((directory / n for n in names if (directory / n).is_file()), None)


def _ivecs_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: read_vecs(path)


def _npy_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: _npy(path)


def _npy(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable .npy file: {exc}") from exc


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ConfigError(
            "reading HDF5 data sets needs the 'bench' extra: pip install 'spyglass[bench]'"
        ) from exc
    return h5py
