"""The ``face`` encoder on the real dlib models and real photos.

Faces: scikit-image's astronaut (Eileen Collins, NASA, public domain) and Kodak's
kodim15 (a girl with face paint). The Kodak copy in the shared data was squeezed
from 768x512 to 256x256 and no face is found in it at dlib's default threshold;
stretched back to its 3:2 shape (384x256) it is found. The other 19 Kodak photos
have no face a person would call one. Non-faces: coffee, a rocket, a cat.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from spyglass.encoders.face import (
    DESCRIPTOR_FILE,
    EXTRA_HINT,
    LANDMARKS_FILE,
    MAX_DETECT_SIDE,
    FaceEncoder,
    models_dir,
    require,
)
from spyglass.errors import ConfigError, InvalidRequest
from spyglass.faces import NO_FACE, identify
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow

PHOTOS = SHARED_DATA / "photos"
#: Where the astronaut's face is in the 512x512 photo (found by eye and by dlib).
ASTRONAUT_FACE = (175, 76, 266, 167)


def load(relative: str) -> Image.Image:
    with Image.open(PHOTOS / relative) as image:
        image.load()
        return image


@pytest.fixture(scope="module")
def encoder() -> FaceEncoder:
    return FaceEncoder()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return load("color/skimage_astronaut.png").convert("RGB")


@pytest.fixture(scope="module")
def kodim15() -> Image.Image:
    """Grayscale ("L" mode), stretched back to the 3:2 shape of the Kodak original."""
    return load("grayscale_kodak256/kodim15.png").resize((384, 256), Image.Resampling.LANCZOS)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def test_identity() -> None:
    assert FaceEncoder.name == "face"
    assert FaceEncoder.dim == 128
    assert FaceEncoder.inputs == frozenset({"image"})
    assert FaceEncoder.metric == "l2"


def test_missing_dependency_names_the_extra() -> None:
    before = set(sys.modules)
    with pytest.raises(ConfigError) as raised:
        require("spyglass_no_such_module")
    assert str(raised.value) == EXTRA_HINT
    assert "pip install 'spyglass[face]'" in str(raised.value)
    with pytest.raises(ConfigError, match=r"spyglass\[face\]"):
        models_dir("spyglass_no_such_package")
    assert set(sys.modules) == before


def test_models_are_found_without_importing_the_package() -> None:
    folder = models_dir()
    assert (folder / LANDMARKS_FILE).stat().st_size > 1_000_000
    assert (folder / DESCRIPTOR_FILE).stat().st_size > 1_000_000
    assert require("dlib").__name__ == "dlib"


@pytest.mark.parametrize(
    "options",
    [{"threads": 0}, {"upsample": -1}, {"upsample": 4}, {"jitters": 0}, {"max_side": 10}],
)
def test_bad_options(options: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        FaceEncoder(**options)


def test_detects_the_astronaut_face_first(encoder: FaceEncoder, astronaut: Image.Image) -> None:
    boxes = encoder.detect(astronaut)
    assert boxes
    face = boxes[0]
    left, top, right, bottom = ASTRONAUT_FACE
    assert abs(face.left - left) <= 8 and abs(face.top - top) <= 8
    assert abs(face.right - right) <= 8 and abs(face.bottom - bottom) <= 8
    assert face.score > 0.8
    # Upsampled once, HOG also takes the round mission patch on her chest for a
    # face (score about 0.1); at its native scale only the face is found.
    assert all(box.score < 0.5 for box in boxes[1:])


def test_a_clear_face_beats_a_slightly_larger_false_one(encoder: FaceEncoder) -> None:
    # At 1.2x, the mission patch's box is a pixel wider than the face's.
    image = load("color/skimage_astronaut.png").resize((614, 614), Image.Resampling.BILINEAR)
    boxes = encoder.detect(image)
    assert len(boxes) == 2
    face, patch = boxes
    assert patch.area > face.area and patch.score < 0.5 < face.score
    assert abs(face.left - ASTRONAUT_FACE[0] * 1.2) <= 10


def test_one_face_without_upsampling(astronaut: Image.Image) -> None:
    boxes = FaceEncoder(upsample=0).detect(astronaut)
    assert len(boxes) == 1
    assert abs(boxes[0].left - ASTRONAUT_FACE[0]) <= 8


def test_descriptor_is_dlibs_128_floats(encoder: FaceEncoder, astronaut: Image.Image) -> None:
    faces = encoder.encode_faces(astronaut)
    assert len(faces) == 1
    vector = faces[0].vector
    assert vector.shape == (128,) and vector.dtype == np.float32
    # dlib's descriptors are not unit vectors: about 1.45 long here.
    assert 1.2 < float(np.linalg.norm(vector)) < 1.7
    again = encoder.encode_images([astronaut])
    assert again.shape == (1, 128) and again.dtype == np.float32
    np.testing.assert_array_equal(again[0], vector)


def test_same_person_within_threshold_other_person_beyond(
    encoder: FaceEncoder, astronaut: Image.Image, kodim15: Image.Image
) -> None:
    width, height = astronaut.size
    copies = [
        ImageOps.mirror(astronaut),
        astronaut.resize((int(width * 0.8), int(height * 0.8)), Image.Resampling.BILINEAR),
        astronaut.resize((int(width * 1.3), int(height * 1.3)), Image.Resampling.BILINEAR),
        ImageEnhance.Brightness(astronaut).enhance(1.3),
        astronaut.crop((60, 20, 480, 440)),
        ImageOps.grayscale(astronaut),
    ]
    vectors = encoder.encode_images([astronaut, *copies])
    same = [distance(vectors[0], v) for v in vectors[1:]]
    assert max(same) < 0.6
    girl = encoder.encode_images([kodim15, ImageOps.mirror(kodim15)])
    assert distance(girl[0], girl[1]) < 0.6
    others = [distance(g, v) for g in girl for v in vectors]
    assert min(others) > 0.6
    assert min(others) > max(same + [distance(girl[0], girl[1])])


@pytest.mark.parametrize(
    "name", ["color/skimage_coffee.png", "color/skimage_rocket.jpg", "color/skimage_chelsea.png"]
)
def test_photos_without_a_face(encoder: FaceEncoder, name: str) -> None:
    image = load(name)
    assert encoder.detect(image) == []
    assert encoder.encode_faces(image, all_faces=True) == []
    with pytest.raises(InvalidRequest, match="no face found in the image") as raised:
        encoder.encode_images([image])
    assert raised.value.field == "image"


def test_no_false_faces_in_the_kodak_photos(encoder: FaceEncoder) -> None:
    others = sorted((PHOTOS / "grayscale_kodak256").glob("kodim*.png"))
    others = [path for path in others if path.name != "kodim15.png"]
    assert len(others) == 19
    for path in others:
        assert encoder.detect(load(str(path.relative_to(PHOTOS)))) == [], path.name


def test_batch_error_names_the_image(encoder: FaceEncoder, astronaut: Image.Image) -> None:
    with pytest.raises(InvalidRequest, match="no face found in image 1"):
        encoder.encode_images([astronaut, load("color/skimage_coffee.png")])
    assert encoder.encode_images([]).shape == (0, 128)


def test_large_photo_is_detected_on_a_smaller_copy(
    encoder: FaceEncoder, astronaut: Image.Image
) -> None:
    big = astronaut.resize((2000, 2000), Image.Resampling.BICUBIC)
    assert max(big.size) > MAX_DETECT_SIDE
    (face,) = encoder.encode_faces(big)
    factor = 2000 / 512
    for got, expected in zip(
        (face.box.left, face.box.top, face.box.right, face.box.bottom), ASTRONAUT_FACE, strict=True
    ):
        assert abs(got - expected * factor) <= 12 * factor
    assert distance(face.vector, encoder.encode_images([astronaut])[0]) < 0.15


def test_all_faces_in_one_photo(
    encoder: FaceEncoder, astronaut: Image.Image, kodim15: Image.Image
) -> None:
    group = Image.new("RGB", (512 + 384, 512), "white")
    group.paste(astronaut, (0, 0))
    group.paste(kodim15.convert("RGB"), (512, 128))
    alone = encoder.encode_images([astronaut, kodim15])
    faces = encoder.encode_faces(group, all_faces=True)
    assert len(faces) >= 2
    # the girl's face (about 187 px) is larger than the astronaut's (about 91 px)
    assert faces[0].box.left >= 512
    assert distance(faces[0].vector, alone[1]) < 0.3
    assert faces[1].box.right <= 512
    assert distance(faces[1].vector, alone[0]) < 0.3
    (largest,) = encoder.encode_faces(group)
    np.testing.assert_allclose(largest.vector, faces[0].vector, atol=1e-5)


def test_identify_real_photos(
    encoder: FaceEncoder, astronaut: Image.Image, kodim15: Image.Image
) -> None:
    enrolled = encoder.encode_images([astronaut, kodim15])
    labels = ["eileen", "girl"]
    query = encoder.encode_faces(ImageOps.mirror(astronaut))[0].vector
    distances = np.linalg.norm(enrolled - query, axis=1)
    found = identify(distances, labels)
    assert found.status == "success" and found.person == "eileen"
    assert found.similarity is not None and found.similarity > 0.4
    stranger = identify(distances[1:], labels[1:])
    assert stranger.status == "unknown" and stranger.person is None
    assert encoder.encode_faces(load("color/skimage_coffee.png")) == []
    assert NO_FACE.status == "no_face"


def test_concurrent_calls_match_serial_ones(astronaut: Image.Image, kodim15: Image.Image) -> None:
    shared = FaceEncoder(threads=2)
    images = [astronaut, kodim15, ImageOps.mirror(astronaut), ImageOps.mirror(kodim15)]
    expected = shared.encode_images(images)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for _ in range(2):
                results[worker] = shared.encode_images(images)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 3
    for vectors in results.values():
        np.testing.assert_array_equal(vectors, expected)
