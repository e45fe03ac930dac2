from __future__ import annotations

import numpy as np
import ot
import pytest
from PIL import Image, ImageOps

from spyglass.color.histogram import SIZE, histogram
from spyglass.color.palette import palette_histogram, parse_palette
from spyglass.color.rerank import COST, COST_SCALE, sinkhorn_rerank

REG = 0.02
ITERATIONS = 50


@pytest.fixture(scope="module")
def hists(photos: dict[str, Image.Image]) -> np.ndarray:
    return np.stack([histogram(image) for image in photos.values()])


def test_cost_matrix() -> None:
    assert COST.shape == (SIZE, SIZE)
    assert COST.max() == pytest.approx(1.0)
    assert np.all(np.diag(COST) == 0)
    np.testing.assert_allclose(COST, COST.T)
    assert 250 < COST_SCALE < 290  # the Lab gamut's diameter between bin centres


def test_a_histogram_is_closest_to_itself(hists: np.ndarray) -> None:
    for i in range(len(hists)):
        distances = sinkhorn_rerank(hists[i], hists, reg=REG, iterations=ITERATIONS)
        assert int(np.argmin(distances)) == i
        assert (distances >= 0).all()


def test_a_mirrored_crop_is_closer_than_other_photos(photos: dict[str, Image.Image]) -> None:
    names = list(photos)
    query = ImageOps.mirror(photos["sklearn_flower.jpg"].crop((50, 50, 500, 400)))
    candidates = np.stack([histogram(photos[n]) for n in names])
    distances = sinkhorn_rerank(histogram(query), candidates, reg=REG, iterations=ITERATIONS)
    assert names[int(np.argmin(distances))] == "sklearn_flower.jpg"


def test_ranking_follows_the_exact_emd(hists: np.ndarray) -> None:
    query = palette_histogram(*parse_palette(["#d2691e", "#1e3a8a"], [2, 1]))
    approx = sinkhorn_rerank(query, hists, reg=REG, iterations=ITERATIONS)
    rows = np.flatnonzero(query)
    exact = np.array([ot.emd2(query[rows], h, COST[rows]) * COST_SCALE for h in hists])
    assert list(np.argsort(approx)[:3]) == list(np.argsort(exact)[:3])
    # entropic smoothing only blurs the plan: the cost stays near the exact one
    np.testing.assert_allclose(approx, exact, rtol=0.1)


def test_colour_distance_is_perceptual() -> None:
    def pal(*colours: str) -> np.ndarray:
        return palette_histogram(*parse_palette(list(colours)))

    candidates = np.stack([pal("#0000ff"), pal("#ff8000"), pal("#cc0000")])
    distances = sinkhorn_rerank(pal("#ff0000"), candidates, reg=REG, iterations=ITERATIONS)
    # dark red, then orange, then blue: the order Lab distance gives
    assert list(np.argsort(distances)) == [2, 1, 0]


def test_empty_candidates_are_infinitely_far(hists: np.ndarray) -> None:
    candidates = np.vstack([hists[:2], np.zeros((1, SIZE))])
    distances = sinkhorn_rerank(hists[0], candidates, reg=REG, iterations=ITERATIONS)
    assert np.isinf(distances[2]) and np.isfinite(distances[:2]).all()
    assert np.isinf(sinkhorn_rerank(hists[0], np.zeros((2, SIZE)), reg=REG, iterations=5)).all()


@pytest.mark.parametrize(("reg", "iterations"), [(0.0, 10), (0.001, 10), (0.02, 0)])
def test_bad_settings(hists: np.ndarray, reg: float, iterations: int) -> None:
    with pytest.raises(ValueError):
        sinkhorn_rerank(hists[0], hists, reg=reg, iterations=iterations)
