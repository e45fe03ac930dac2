from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageOps

from spyglass.color.histogram import (
    BINS,
    MAX_SIDE,
    RANGES,
    SIZE,
    bin_centres,
    from_hellinger,
    hellinger,
    histogram,
    shrink,
)


def reference_lab(r: int, g: int, b: int) -> tuple[float, float, float]:
    """sRGB -> Lab (D65) one pixel at a time, float64, straight from the formulas."""

    def linear(c: int) -> float:
        v = c / 255.0
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    rl, gl, bl = linear(r), linear(g), linear(b)
    matrix = (
        (0.4124564, 0.3575761, 0.1804375),
        (0.2126729, 0.7151522, 0.0721750),
        (0.0193339, 0.1191920, 0.9503041),
    )
    xyz = [m[0] * rl + m[1] * gl + m[2] * bl for m in matrix]
    white = [sum(m) for m in matrix]

    def f(t: float) -> float:
        d = 6.0 / 29.0
        return t ** (1.0 / 3.0) if t > d**3 else t / (3 * d * d) + 4.0 / 29.0

    fx, fy, fz = (f(v / w) for v, w in zip(xyz, white, strict=True))
    return 116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)


def reference_histogram(image: Image.Image) -> list[float]:
    """The documented tri-linear soft histogram, one pixel and one corner at a time."""
    hist = [0.0] * SIZE
    width, height = image.size
    pixels = image.load()
    assert pixels is not None
    for y in range(height):
        for x in range(width):
            lab = reference_lab(*pixels[x, y])
            lows: list[int] = []
            fracs: list[float] = []
            for value, (lo, hi), n in zip(lab, RANGES, BINS, strict=True):
                t = (value - lo) / ((hi - lo) / n) - 0.5
                t = min(max(t, 0.0), n - 1.0)
                low = min(math.floor(t), n - 2)
                lows.append(low)
                fracs.append(t - low)
            for dl in (0, 1):
                for da in (0, 1):
                    for db in (0, 1):
                        weight = (
                            (fracs[0] if dl else 1 - fracs[0])
                            * (fracs[1] if da else 1 - fracs[1])
                            * (fracs[2] if db else 1 - fracs[2])
                        )
                        index = ((lows[0] + dl) * BINS[1] + lows[1] + da) * BINS[2] + lows[2] + db
                        hist[index] += weight
    total = sum(hist)
    return [h / total for h in hist]


def test_vectorised_histogram_equals_the_per_pixel_reference(
    photos: dict[str, Image.Image],
) -> None:
    # a real crop plus a strip of extreme colours, so the edge clipping is exercised
    crop = np.asarray(photos["skimage_astronaut.png"].crop((200, 100, 240, 130)))
    extremes = np.array(
        [
            [0, 0, 0],
            [255, 255, 255],
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [255, 255, 0],
            [0, 255, 255],
            [255, 0, 255],
            [1, 1, 1],
            [128, 128, 128],
        ],
        dtype=np.uint8,
    )
    strip = np.repeat(extremes[None, :, :], 4, axis=1)[:, :40]
    image = Image.fromarray(np.concatenate([crop, strip], axis=0))
    assert max(image.size) <= MAX_SIDE  # no resize: both see the same pixels
    np.testing.assert_allclose(histogram(image), reference_histogram(image), rtol=0, atol=1e-6)


def test_every_photo_gives_an_l1_histogram(photos: dict[str, Image.Image]) -> None:
    for name, image in photos.items():
        hist = histogram(image)
        assert hist.shape == (SIZE,) == (1152,), name
        assert (hist >= 0).all(), name
        assert hist.sum() == pytest.approx(1.0, abs=1e-12), name
        assert np.count_nonzero(hist) > 16, name  # a photo is not one colour


def test_a_pure_colour_lands_on_the_bins_around_it() -> None:
    red = histogram(Image.new("RGB", (300, 200), (255, 0, 0)))
    lab = np.array(reference_lab(255, 0, 0))
    centres = bin_centres()
    nearest = int(np.argmin(np.linalg.norm(centres - lab, axis=1)))
    assert int(np.argmax(red)) == nearest
    assert np.count_nonzero(red) <= 8
    assert red[np.linalg.norm(centres - lab, axis=1) < 25].sum() == pytest.approx(1.0)
    # and the mass-weighted mean of the centres is the colour itself, on axes it does not clip
    mean = red @ centres
    np.testing.assert_allclose(mean[1:], lab[1:], atol=1e-3)


def test_a_mirrored_photo_has_the_same_histogram(photos: dict[str, Image.Image]) -> None:
    for name in ("sklearn_china.jpg", "skimage_retina.jpg", "skimage_chelsea.png"):
        image = photos[name]
        mirrored = ImageOps.mirror(image)
        np.testing.assert_allclose(histogram(mirrored), histogram(image), atol=1e-9)


def test_large_images_are_shrunk_to_the_maximum_side(photos: dict[str, Image.Image]) -> None:
    retina = photos["skimage_retina.jpg"]  # 1411 x 1411
    assert shrink(retina).size == (MAX_SIDE, MAX_SIDE)
    china = photos["sklearn_china.jpg"]  # 640 x 427
    assert shrink(china).size == (MAX_SIDE, 171)
    small = china.resize((100, 60))
    assert shrink(small) is small
    # shrinking changes colour statistics little
    full = histogram(china)
    assert np.abs(histogram(china.resize((320, 214))) - full).sum() < 0.05


def test_grey_and_palette_modes_are_converted() -> None:
    grey = Image.new("L", (10, 10), 128)
    hist = histogram(grey)
    assert hist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(hist, histogram(Image.new("RGB", (10, 10), (128, 128, 128))))


def test_hellinger_vectors_have_unit_length(photos: dict[str, Image.Image]) -> None:
    hists = np.stack([histogram(image) for image in photos.values()])
    vectors = hellinger(hists)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(from_hellinger(vectors), hists, atol=1e-7)


def test_bin_centres_follow_the_documented_convention() -> None:
    centres = bin_centres()
    assert centres.shape == (SIZE, 3)
    np.testing.assert_allclose(centres[0], [6.25, -86 + 184 / 24, -108 + 203 / 24])
    # flattened index (l * 12 + a) * 12 + b
    np.testing.assert_allclose(
        centres[(3 * 12 + 5) * 12 + 7], [43.75, -86 + 5.5 * 184 / 12, -108 + 7.5 * 203 / 12]
    )
