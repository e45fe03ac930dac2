"""The ``bench ann`` loaders: TEXMEX, ann-benchmarks HDF5 and .npy folders, real files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from spyglass.bench.datasets import exact_neighbors, load_data, load_npy, read_vecs
from spyglass.errors import ConfigError
from tests.conftest import SHARED_DATA

FASHION = SHARED_DATA / "ann_fashion_mnist900"


def write_vecs(path: Path, rows: np.ndarray) -> None:
    """A TEXMEX file: each row an int32 dimension, then its values."""
    dims = np.full((len(rows), 1), rows.shape[1], dtype=np.int32)
    width = rows.dtype.itemsize * rows.shape[1]
    records = np.hstack([dims.view(np.uint8), np.ascontiguousarray(rows).view(np.uint8)])
    assert records.shape[1] == 4 + width
    path.write_bytes(records.tobytes())


def brute_force(base: np.ndarray, queries: np.ndarray, metric: str, k: int) -> np.ndarray:
    """Exact top-k with numpy in float64 (the reference for the FAISS computation)."""
    b, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        cost = ((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    else:
        cost = -(q @ b.T)
    return np.argsort(cost, axis=1, kind="stable")[:, :k]


def vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_texmex_folder_and_base_file_load_the_same(tmp_path: Path) -> None:
    base, queries = vectors(60, 8, 1), vectors(7, 8, 2)
    truth = brute_force(base, queries, "l2", 20).astype(np.int32)
    write_vecs(tmp_path / "sift_base.fvecs", base)
    write_vecs(tmp_path / "sift_query.fvecs", queries)
    write_vecs(tmp_path / "sift_groundtruth.ivecs", truth)
    write_vecs(tmp_path / "sift_learn.fvecs", vectors(5, 8, 3))  # ignored

    for path in (tmp_path, tmp_path / "sift_base.fvecs"):
        data = load_data(path)
        assert data.layout == "texmex" and data.metric == "l2"  # TEXMEX truth is euclidean
        np.testing.assert_array_equal(data.base, base)
        np.testing.assert_array_equal(data.queries, queries)
        assert data.neighbors is not None and data.neighbors.dtype == np.int64
        np.testing.assert_array_equal(data.neighbors, truth)
        assert data.truth == "sift_groundtruth.ivecs"


def test_bvecs_base_is_read_as_float32(tmp_path: Path) -> None:
    rows = np.random.default_rng(4).integers(0, 256, size=(10, 16), dtype=np.uint8)
    write_vecs(tmp_path / "base.bvecs", rows)
    loaded = read_vecs(tmp_path / "base.bvecs")
    np.testing.assert_array_equal(loaded, rows)
    write_vecs(tmp_path / "query.bvecs", rows[:3])
    data = load_data(tmp_path, "cosine")
    assert data.base.dtype == np.float32 and data.neighbors is None  # no truth: computed later
    np.testing.assert_array_equal(data.base, rows.astype(np.float32))


def test_a_truncated_vecs_file_is_a_config_error(tmp_path: Path) -> None:
    write_vecs(tmp_path / "base.fvecs", vectors(5, 4, 5))
    raw = (tmp_path / "base.fvecs").read_bytes()
    (tmp_path / "base.fvecs").write_bytes(raw[:-3])
    with pytest.raises(ConfigError, match="not a .fvecs file"):
        read_vecs(tmp_path / "base.fvecs")


def test_hdf5_angular_is_cosine_and_another_metric_gets_computed_truth(tmp_path: Path) -> None:
    base, queries = vectors(80, 12, 6), vectors(9, 12, 7)
    truth = brute_force(base, queries, "cosine", 25)
    path = tmp_path / "toy-12-angular.hdf5"
    with h5py.File(path, "w") as handle:
        handle.attrs["distance"] = "angular"
        handle.attrs["type"] = "dense"
        handle["train"] = base
        handle["test"] = queries
        handle["neighbors"] = truth.astype(np.int32)
        handle["distances"] = np.zeros(truth.shape, dtype=np.float32)

    data = load_data(path)
    assert (data.layout, data.metric, data.name, data.truth) == (
        "hdf5",
        "cosine",
        "toy-12-angular",
        "neighbors",
    )
    assert data.neighbors is not None
    np.testing.assert_array_equal(data.neighbors, truth)
    assert data.with_truth(10) is data  # 25 columns already: nothing to compute

    as_l2 = load_data(path, "l2")
    assert as_l2.neighbors is None
    computed = as_l2.with_truth(10)
    assert computed.truth == "computed exactly (FAISS IndexFlatL2)"
    assert computed.neighbors is not None
    np.testing.assert_array_equal(computed.neighbors, brute_force(base, queries, "l2", 10))


def test_hdf5_with_an_unsupported_distance_or_not_hdf5_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "sparse.hdf5"
    with h5py.File(path, "w") as handle:
        handle.attrs["distance"] = "jaccard"
        handle["train"] = vectors(4, 3, 8)
        handle["test"] = vectors(2, 3, 9)
    with pytest.raises(ConfigError, match="jaccard"):
        load_data(path)
    fake = tmp_path / "fake.hdf5"
    fake.write_text("not hdf5")
    with pytest.raises(ConfigError, match="not a readable HDF5 file"):
        load_data(fake)


def test_npy_folder_with_ip_truth_serves_cosine_only_for_unit_vectors(tmp_path: Path) -> None:
    base, queries = vectors(50, 6, 10), vectors(5, 6, 11)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = brute_force(base, queries, "ip", 10)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "query.npy", queries)
    np.save(tmp_path / "gt_ip_neighbors.npy", truth)
    np.save(tmp_path / "gt_ip_scores.npy", np.ones(truth.shape, dtype=np.float32))  # not ids

    data = load_data(tmp_path)  # the text100k layout of benchmarks/
    assert (data.layout, data.metric, data.truth) == ("npy", "ip", "gt_ip_neighbors.npy")
    cosine = load_data(tmp_path, "cosine")
    assert cosine.truth == "gt_ip_neighbors.npy"  # the same ranking on unit vectors

    np.save(tmp_path / "base.npy", base * 3.0)  # no longer unit length
    assert load_data(tmp_path, "cosine").neighbors is None


def test_npy_folder_without_truth_defaults_to_cosine_and_computes_it(tmp_path: Path) -> None:
    base, queries = vectors(70, 5, 12), vectors(6, 5, 13)
    np.save(tmp_path / "base.npy", base.astype(np.float64))
    np.save(tmp_path / "query.npy", queries)
    data = load_data(tmp_path).head(4).with_truth(7)
    assert data.metric == "cosine" and len(data.queries) == 4
    assert data.truth == "computed exactly (FAISS IndexFlatIP)"
    assert data.neighbors is not None
    np.testing.assert_array_equal(data.neighbors, brute_force(base, queries[:4], "cosine", 7))


def test_bad_paths_and_layouts_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_data(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no \\*base.fvecs"):
        load_data(tmp_path)
    np.save(tmp_path / "base.npy", vectors(5, 3, 14))
    with pytest.raises(ConfigError, match="without query.npy"):
        load_data(tmp_path)
    np.save(tmp_path / "query.npy", vectors(2, 4, 15))
    with pytest.raises(ConfigError, match="3-d but queries are 4-d"):
        load_data(tmp_path)


def test_fashion_mnist900_texmex_files_with_both_ground_truths() -> None:
    data = load_data(FASHION)
    assert (data.layout, data.metric) == ("texmex", "l2")  # euclidean, as ann-benchmarks has it
    assert data.base.shape == (800, 784) and data.queries.shape == (100, 784)
    assert data.truth == "groundtruth_euclidean.ivecs"
    assert data.neighbors is not None
    np.testing.assert_array_equal(data.neighbors, np.load(FASHION / "gt_euclidean_neighbors.npy"))

    angular = load_data(FASHION, "cosine")
    assert angular.truth == "groundtruth_angular.ivecs"
    assert angular.neighbors is not None
    np.testing.assert_array_equal(angular.neighbors, np.load(FASHION / "gt_angular_neighbors.npy"))


def test_fashion_mnist900_npy_files_match_the_texmex_ones() -> None:
    texmex, npy = load_data(FASHION), load_npy(FASHION)
    np.testing.assert_array_equal(npy.base, texmex.base)  # uint8 pixels as float32
    np.testing.assert_array_equal(npy.queries, texmex.queries)
    assert npy.metric == "l2" and npy.truth == "gt_euclidean_neighbors.npy"


@pytest.mark.parametrize(("metric", "truth"), [("l2", "euclidean"), ("cosine", "angular")])
def test_exact_neighbors_reproduce_the_shipped_fashion_ground_truth(
    metric: str, truth: str
) -> None:
    data = load_data(FASHION)
    found = exact_neighbors(data.base, data.queries, metric, 10)  # type: ignore[arg-type]
    shipped = np.load(FASHION / f"gt_{truth}_neighbors.npy")[:, :10]
    # the README: no ties across rank 10, so the sets agree exactly
    for row, expected in zip(found, shipped, strict=True):
        assert set(row.tolist()) == set(expected.tolist())
