from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spyglass.color.histogram import hellinger, histogram
from spyglass.color.palette import parse_hex
from spyglass.encoders import load_encoder
from spyglass.encoders.base import Encoder
from spyglass.encoders.color import ColorEncoder
from spyglass.errors import ConfigError, InvalidRequest
from spyglass.settings import Settings, load_settings


@pytest.fixture(scope="module")
def encoder() -> ColorEncoder:
    return ColorEncoder(threads=None)


def tinted(image: Image.Image, colour: tuple[int, int, int], share: float) -> Image.Image:
    """A real photo washed with ``colour``: ``share`` of every pixel is that colour."""
    return Image.blend(image, Image.new("RGB", image.size, colour), share)


def test_contract(encoder: ColorEncoder) -> None:
    assert isinstance(encoder, Encoder)
    assert encoder.name == "color"
    assert encoder.dim == 1152
    assert encoder.inputs == frozenset({"image", "colors"})
    assert encoder.metric == "l2"
    with pytest.raises(InvalidRequest):
        encoder.encode(["red"])


def test_encode_images(encoder: ColorEncoder, photos: dict[str, Image.Image]) -> None:
    images = list(photos.values())
    vectors = encoder.encode_images(images)
    assert vectors.shape == (len(images), 1152)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(vectors[3], hellinger(histogram(images[3])))
    assert encoder.encode_images([]).shape == (0, 1152)


def test_threads_give_the_same_vectors(photos: dict[str, Image.Image]) -> None:
    images = list(photos.values())
    one = ColorEncoder(threads=1).encode_images(images)
    two = ColorEncoder(threads=2).encode_images(images)
    np.testing.assert_array_equal(one, two)


def test_encode_palette(encoder: ColorEncoder) -> None:
    vector = encoder.encode_palette(["#ff0000", "00f"], [3, 1])
    assert vector.shape == (1, 1152)
    assert vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
    same = encoder.encode_palette(["f00", "#0000FF"], [0.75, 0.25])
    np.testing.assert_allclose(vector, same, atol=1e-7)


def test_palette_mistakes_name_the_element(encoder: ColorEncoder) -> None:
    with pytest.raises(InvalidRequest) as caught:
        encoder.encode_palette(["#ff0000", "#gg0000"])
    assert caught.value.field == "colors[1]"
    assert "#gg0000" in caught.value.detail
    with pytest.raises(InvalidRequest) as caught:
        encoder.encode_palette(["#ff0000"], [-2], field="query.colors")
    assert caught.value.field == "query.weights[0]"


@pytest.mark.parametrize("name", ["skimage_astronaut.png", "sklearn_china.jpg", "skimage_ihc.png"])
def test_red_palette_prefers_the_red_photo(
    encoder: ColorEncoder, photos: dict[str, Image.Image], name: str
) -> None:
    photo = photos[name]
    red, blue = tinted(photo, (220, 20, 20), 0.6), tinted(photo, (20, 40, 220), 0.6)
    images = encoder.encode_images([blue, red])
    query = encoder.encode_palette(["#e01010", "#a00000"], [2, 1])
    # fast mode: L2 between Hellinger vectors
    l2 = np.linalg.norm(images - query, axis=1)
    assert l2[1] < l2[0]
    # accurate mode: the Sinkhorn rerank
    emd = encoder.rerank(query, images)
    assert emd[1] < emd[0]


def test_rerank_ranks_the_photo_itself_first(
    encoder: ColorEncoder, photos: dict[str, Image.Image]
) -> None:
    vectors = encoder.encode_images(list(photos.values()))
    for i in (0, 4, 9):
        distances = encoder.rerank(vectors[i], vectors)
        assert distances.shape == (len(vectors),)
        assert int(np.argmin(distances)) == i


def test_dominant_colors_of_a_red_image(encoder: ColorEncoder) -> None:
    vector = encoder.encode_images([Image.new("RGB", (64, 64), (250, 10, 10))])[0]
    found = encoder.dominant_colors(vector, count=3)
    assert len(found) == 3
    r, g, b = parse_hex(found[0].hex, "x")
    assert r > 200 and g < 80 and b < 80
    assert found[0].weight > 0.3


@pytest.mark.parametrize(
    "options",
    [
        {"threads": 0},
        {"rerank_candidates": 0},
        {"sinkhorn_reg": 0.0},
        {"sinkhorn_reg": float("nan")},
        {"sinkhorn_iterations": 0},
    ],
)
def test_bad_settings(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ColorEncoder(**options)  # type: ignore[arg-type]


def test_settings_are_kept() -> None:
    encoder = ColorEncoder(
        threads=2, rerank_candidates=50, sinkhorn_reg=0.05, sinkhorn_iterations=30
    )
    assert (encoder.threads, encoder.rerank_candidates) == (2, 50)
    assert (encoder.sinkhorn_reg, encoder.sinkhorn_iterations) == (0.05, 30)


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        encoder_threads=2,
        rerank_candidates=120,
        color_sinkhorn_reg=0.03,
        color_sinkhorn_iterations=40,
    )
    encoder = load_encoder("color", settings)
    assert isinstance(encoder, ColorEncoder)
    assert encoder.reranks
    assert (encoder.threads, encoder.rerank_candidates) == (2, 120)
    assert (encoder.sinkhorn_reg, encoder.sinkhorn_iterations) == (0.03, 40)
    with pytest.raises(ConfigError, match="color_sinkhorn_reg"):
        load_settings(data_dir=tmp_path, color_sinkhorn_reg=0.0001)  # Sinkhorn breaks down
