from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from spyglass.color.histogram import histogram
from spyglass.color.palette import (
    MAX_COLORS,
    dominant_colors,
    palette_histogram,
    parse_hex,
    parse_palette,
    to_hex,
)
from spyglass.errors import InvalidRequest


@pytest.mark.parametrize("text", ["#ff0000", "ff0000", "#FF0000", "f00", "#F00", " #f00 "])
def test_hex_forms(text: str) -> None:
    assert parse_hex(text, "c") == (255, 0, 0)


def test_six_digits_keep_each_channel() -> None:
    assert parse_hex("#12aBef", "c") == (0x12, 0xAB, 0xEF)
    assert parse_hex("1ae", "c") == (0x11, 0xAA, 0xEE)
    assert to_hex((0x12, 0xAB, 0xEF)) == "#12abef"


def _field_of(*args: object, **kwargs: object) -> str | None:
    with pytest.raises(InvalidRequest) as caught:
        parse_palette(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value.field


@pytest.mark.parametrize(
    ("colors", "weights", "field"),
    [
        (["#ff0000", "#zz0000"], None, "colors[1]"),
        (["#ff0000", "#ff00"], None, "colors[1]"),
        (["12345"], None, "colors[0]"),
        (["#ff0000", 255], None, "colors[1]"),
        (["##f00"], None, "colors[0]"),
        ([], None, "colors"),
        ("#ff0000", None, "colors"),
        (["#f00"] * (MAX_COLORS + 1), None, "colors"),
        (["#f00", "#00f"], [1.0], "weights"),
        (["#f00", "#00f"], [1.0, 0.0], "weights[1]"),
        (["#f00", "#00f"], [-1.0, 1.0], "weights[0]"),
        (["#f00", "#00f"], [1.0, float("nan")], "weights[1]"),
        (["#f00", "#00f"], [1.0, float("inf")], "weights[1]"),
        (["#f00", "#00f"], [1.0, "2"], "weights[1]"),
        (["#f00", "#00f"], [True, 1.0], "weights[0]"),
        (["#f00"], "1", "weights"),
    ],
)
def test_mistakes_name_the_element(colors: object, weights: object, field: str) -> None:
    assert _field_of(colors, weights) == field


def test_fields_follow_the_caller() -> None:
    assert _field_of(["#f00", "nope"], None, field="query.colors") == "query.colors[1]"
    assert _field_of(["#f00"], [0], field="query.colors") == "query.weights[0]"
    assert _field_of(["#f00"], [0], field="palette", weights_field="mix") == "mix[0]"


def test_weights_are_normalised() -> None:
    rgb, weights = parse_palette(["#f00", "#00f", "0f0"], [2, 1, 1])
    assert rgb.tolist() == [[255, 0, 0], [0, 0, 255], [0, 255, 0]]
    np.testing.assert_allclose(weights, [0.5, 0.25, 0.25])
    _, equal = parse_palette(["#f00", "#00f"])
    np.testing.assert_allclose(equal, [0.5, 0.5])
    _, huge = parse_palette(["#f00", "#00f"], [1e308, 1e308])
    np.testing.assert_allclose(huge, [0.5, 0.5])


def test_palette_histogram_matches_an_image_of_the_same_colours() -> None:
    # 75% red, 25% blue as a palette and as pixels
    palette = palette_histogram(*parse_palette(["#ff0000", "#0000ff"], [3, 1]))
    pixels = np.zeros((4, 10, 3), dtype=np.uint8)
    pixels[:3, :, 0] = 255
    pixels[3:, :, 2] = 255
    image = histogram(Image.fromarray(pixels))
    assert palette.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(palette, image, atol=1e-6)


def test_dominant_colours_of_a_palette() -> None:
    hist = palette_histogram(*parse_palette(["#ff0000", "#0000ff"], [3, 1]))
    found = dominant_colors(hist, count=20)
    assert 0 < len(found) <= 16  # 8 bins around each colour at most
    assert sum(c.weight for c in found) == pytest.approx(1.0)
    weights = [c.weight for c in found]
    assert weights == sorted(weights, reverse=True)
    top = parse_hex(found[0].hex, "x")
    assert top[0] > 180 and top[2] < 80  # reddish


def test_dominant_colours_of_a_photo(photos: dict[str, Image.Image]) -> None:
    # the coffee photo is mostly browns and oranges: red above blue in its top colours
    found = dominant_colors(histogram(photos["skimage_coffee.png"]), count=3)
    assert len(found) == 3
    for colour in found:
        r, _, b = parse_hex(colour.hex, "x")
        assert r > b, colour
