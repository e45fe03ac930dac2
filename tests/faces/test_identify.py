"""The identification decision: statuses, threshold, nearest-wins, similarity."""

from __future__ import annotations

import numpy as np
import pytest

from spyglass.faces.identify import (
    DEFAULT_THRESHOLD,
    NO_FACE,
    Identification,
    identify,
    similarity,
)


def test_nearest_within_threshold_is_success() -> None:
    found = identify([0.71, 0.42, 0.9], ["bob", "alice", "carol"], threshold=0.6)
    assert found == Identification(
        status="success", person="alice", similarity=pytest.approx(0.58), distance=0.42
    )


def test_nearest_beyond_threshold_is_unknown() -> None:
    found = identify(np.array([0.71, 0.65]), ["bob", "alice"], threshold=0.6)
    assert found.status == "unknown"
    assert found.person is None
    assert found.distance == pytest.approx(0.65)
    assert found.similarity == pytest.approx(0.35)


def test_threshold_is_per_call() -> None:
    assert identify([0.65], ["bob"], threshold=0.7).person == "bob"
    assert identify([0.55], ["bob"], threshold=0.5).status == "unknown"


def test_distance_equal_to_threshold_matches() -> None:
    assert identify([0.5], ["bob"], threshold=0.5).status == "success"


def test_default_threshold_is_dlibs() -> None:
    assert DEFAULT_THRESHOLD == 0.6
    assert identify([0.6], ["bob"]).status == "success"
    assert identify([0.61], ["bob"]).status == "unknown"


def test_nearest_encoding_wins_over_a_majority() -> None:
    found = identify([0.50, 0.52, 0.30, 0.55], ["bob", "bob", "alice", "bob"])
    assert found.person == "alice"


def test_empty_collection_is_unknown() -> None:
    found = identify([], [])
    assert found == Identification(status="unknown", person=None, similarity=None, distance=None)


def test_no_face_answer() -> None:
    assert NO_FACE == Identification(status="no_face", person=None, similarity=None, distance=None)


@pytest.mark.parametrize(
    ("distance", "expected"),
    [(0.0, 1.0), (0.25, 0.75), (0.6, 0.4), (1.0, 0.0), (1.7, 0.0), (-0.01, 1.0)],
)
def test_similarity_is_one_minus_distance_clipped(distance: float, expected: float) -> None:
    assert similarity(distance) == pytest.approx(expected)


def test_similarity_does_not_depend_on_threshold() -> None:
    loose = identify([0.45], ["bob"], threshold=0.9)
    strict = identify([0.45], ["bob"], threshold=0.4)
    assert loose.similarity == strict.similarity == pytest.approx(0.55)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2 distances but 1 labels"):
        identify([0.1, 0.2], ["bob"])
    for threshold in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="threshold"):
            identify([0.1], ["bob"], threshold=threshold)
