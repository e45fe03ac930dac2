"""The ``image`` encoder on the real EfficientNet-Lite0 weights and the shared photos."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from spyglass.encoders.image import (
    IMAGE_MODULES,
    ImageEncoder,
    check_images,
    preprocess,
    require_extra,
)
from spyglass.errors import ConfigError, InvalidRequest
from tests.conftest import SHARED_DATA

COLOR = SHARED_DATA / "photos" / "color"
#: ImageNet class ids (of the 1000 the weights were trained on).
ESPRESSO = 967
CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
MOTOR_SCOOTER, MOPED = 670, 665

pytestmark = pytest.mark.slow


def photo(name: str) -> Image.Image:
    with Image.open(COLOR / name) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def encoder() -> ImageEncoder:
    return ImageEncoder(threads=1)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {path.name: photo(path.name) for path in sorted(COLOR.iterdir())}


def test_identity() -> None:
    assert ImageEncoder.name == "image"
    assert ImageEncoder.dim == 1280
    assert ImageEncoder.inputs == frozenset({"image"})
    assert ImageEncoder.metric == "cosine"


def test_missing_extra_names_it() -> None:
    require_extra(IMAGE_MODULES, "image", "image")  # all installed here
    with pytest.raises(ConfigError) as error:
        require_extra(("torch", "spyglass_no_such_module"), "image", "image")
    assert str(error.value) == (
        "the image encoder needs the 'image' extra: pip install 'spyglass[image]'"
    )
    assert isinstance(error.value.__cause__, ImportError)


def test_shape_dtype_and_unit_rows(encoder: ImageEncoder, photos: dict[str, Image.Image]) -> None:
    vectors = encoder.encode_images(list(photos.values()))
    assert vectors.shape == (len(photos), 1280)
    assert vectors.dtype == np.float32
    assert len(photos) >= 10
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.isfinite(vectors))


def test_the_imagenet_weights_and_preprocessing_are_right(
    encoder: ImageEncoder, photos: dict[str, Image.Image]
) -> None:
    # the classifier the features were trained for names what the photos show
    import torch

    names = ["skimage_coffee.png", "skimage_chelsea.png", "skimage_motorcycle_right.png"]
    pooled = encoder._pooled([photos[n] for n in names])
    with torch.inference_mode():
        logits = encoder._model._fc(torch.from_numpy(pooled))
        pixels = torch.from_numpy(np.stack([preprocess(photos[n]) for n in names]))
        network = encoder._model(pixels)  # the network's own pooling and classifier
    np.testing.assert_allclose(logits.numpy(), network.numpy(), atol=1e-3)
    coffee, cat, motorcycle = logits.softmax(dim=1)
    assert int(coffee.argmax()) == ESPRESSO
    assert float(coffee[ESPRESSO]) > 0.8
    assert int(cat.argmax()) in CATS
    assert float(cat[sorted(CATS)].sum()) > 0.8
    assert int(motorcycle.argmax()) in {MOTOR_SCOOTER, MOPED}


def test_a_flipped_photo_is_closer_than_another_photo(
    encoder: ImageEncoder, photos: dict[str, Image.Image]
) -> None:
    cat = photos["skimage_chelsea.png"]
    flipped = ImageOps.mirror(cat)
    names = [n for n in photos if n != "skimage_chelsea.png"]
    vectors = encoder.encode_images([cat, flipped] + [photos[n] for n in names])
    to_flip = float(vectors[0] @ vectors[1])
    to_others = vectors[2:] @ vectors[0]
    assert to_flip > 0.9
    assert to_flip > float(to_others.max()) + 0.3, dict(zip(names, to_others.tolist(), strict=True))


def test_similar_scenes_are_nearest(encoder: ImageEncoder, photos: dict[str, Image.Image]) -> None:
    names = list(photos)
    vectors = encoder.encode_images(list(photos.values()))
    left = names.index("skimage_motorcycle_left.png")
    scores = vectors @ vectors[left]
    scores[left] = -1
    assert names[int(scores.argmax())] == "skimage_motorcycle_right.png"


def test_deterministic_and_independent_of_batching(
    encoder: ImageEncoder, photos: dict[str, Image.Image]
) -> None:
    images = list(photos.values())[:5]
    first = encoder.encode_images(images)
    np.testing.assert_array_equal(encoder.encode_images(images), first)
    one_by_one = np.concatenate([encoder.encode_images([image]) for image in images])
    np.testing.assert_allclose(one_by_one, first, atol=1e-5)
    many = encoder.encode_images(images * 4)  # 20 images: several forward passes
    np.testing.assert_allclose(many, np.tile(first, (4, 1)), atol=1e-5)


def test_empty_batch(encoder: ImageEncoder) -> None:
    empty = encoder.encode_images([])
    assert empty.shape == (0, 1280)
    assert empty.dtype == np.float32


def test_grayscale_and_rgba_inputs(encoder: ImageEncoder) -> None:
    with Image.open(SHARED_DATA / "photos" / "grayscale" / "skimage_camera.png") as gray:
        gray.load()
        assert gray.mode == "L"
        rgba = gray.convert("RGBA")
        rgb = gray.convert("RGB")
        vectors = encoder.encode_images([gray, rgba, rgb])
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    np.testing.assert_allclose(vectors[1], vectors[2], atol=1e-6)


def test_two_threads_get_the_same_vectors(
    encoder: ImageEncoder, photos: dict[str, Image.Image]
) -> None:
    images = [photos["skimage_chelsea.png"], photos["skimage_rocket.jpg"]]
    expected = encoder.encode_images(images)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(encoder.encode_images(images))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 6
    for vectors in results:
        np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_preprocess_crops_the_centre_and_scales_pixels() -> None:
    # a 512 x 256 image: a white centre square of 224 of the 256 rows' width, black elsewhere.
    # The crop keeps 256 * 224/256 = 224 pixels around the centre: all white.
    image = Image.new("RGB", (512, 256), (0, 0, 0))
    image.paste((255, 255, 255), (144, 16, 368, 240))
    pixels = preprocess(image)
    assert pixels.shape == (3, 224, 224)
    assert pixels.dtype == np.float32
    np.testing.assert_allclose(pixels, (255 - 127) / 128, atol=1e-6)
    black = preprocess(Image.new("RGB", (300, 200), (0, 0, 0)))
    np.testing.assert_allclose(black, -127 / 128, atol=1e-6)
    red = preprocess(Image.new("RGB", (50, 80), (200, 0, 0)))  # small images are upscaled
    np.testing.assert_allclose(red[0], (200 - 127) / 128, atol=1e-5)
    np.testing.assert_allclose(red[1:], -127 / 128, atol=1e-6)


def test_preprocess_resizes_bicubically_from_the_centre_square() -> None:
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), "RGB")
    # the square is 200 * 224/256 = 175 pixels, at (300 - 175) / 2 and (200 - 175) / 2
    box = (62.5, 12.5, 237.5, 187.5)
    expected = np.asarray(image.resize((224, 224), Image.Resampling.BICUBIC, box=box), np.float32)
    expected = ((expected - 127) / 128).transpose(2, 0, 1)
    np.testing.assert_allclose(preprocess(image), expected, atol=1e-6)


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(InvalidRequest) as error:
        check_images([Image.new("RGB", (2, 2)), Path("photo.png")])  # type: ignore[list-item]
    assert error.value.field == "image"
    assert "image 1" in str(error.value)


def test_threads_below_one_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        ImageEncoder(threads=0)
