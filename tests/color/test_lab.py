from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spyglass.color.lab import lab_to_srgb, srgb_to_lab, srgb_to_lab_planes

# Reference Lab (D65) of sRGB colours, as published by colour-science tools
# (e.g. Bruce Lindbloom's calculator and colormine): L*, a*, b*.
KNOWN = [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.2408, 80.0925, 67.2032)),
    ((0, 255, 0), (87.7347, -86.1827, 83.1793)),
    ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
    ((128, 128, 128), (53.5850, 0.0, 0.0)),
    ((255, 255, 0), (97.1393, -21.5537, 94.4780)),
]


@pytest.mark.parametrize(("rgb", "lab"), KNOWN)
def test_known_colours(rgb: tuple[int, int, int], lab: tuple[float, float, float]) -> None:
    got = srgb_to_lab(np.array([rgb], dtype=np.uint8))[0]
    np.testing.assert_allclose(got, lab, atol=2e-3)


def test_planes_and_shapes_agree(photos: dict[str, Image.Image]) -> None:
    pixels = np.asarray(photos["sklearn_china.jpg"])[:50, :60]
    lab = srgb_to_lab(pixels)
    assert lab.shape == (50, 60, 3)
    assert lab.dtype == np.float32
    planes = srgb_to_lab_planes(pixels.reshape(-1, 3))
    np.testing.assert_array_equal(planes.T, lab.reshape(-1, 3))


def test_round_trip_on_a_photo(photos: dict[str, Image.Image]) -> None:
    pixels = np.asarray(photos["skimage_coffee.png"]).reshape(-1, 3)
    back = lab_to_srgb(srgb_to_lab(pixels))
    assert np.abs(back.astype(int) - pixels.astype(int)).max() == 0


def test_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError):
        srgb_to_lab_planes(np.zeros((4, 3), dtype=np.float64))
