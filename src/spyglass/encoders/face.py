"""The ``face`` encoder: dlib's HOG face detector and its 128-d ResNet face descriptor.

Three dlib models, loaded once: the frontal face detector built into dlib (HOG
features + a linear classifier), the 5-point landmark model and the ResNet
``dlib_face_recognition_resnet_model_v1`` of the ``face-recognition-models``
package (both from the ``face`` extra). A face is found by the detector, its eyes
and nose located by the landmarks, cropped and aligned to 150x150, and mapped to
128 numbers. Two photos of one person are usually within a Euclidean distance of
0.6 of each other (dlib's threshold), so the vectors are returned as dlib gives
them, not normalised (their length is about 1.4-1.5), and the metric is ``l2``.

The 5-point landmarks, not the 68-point ones: they are what dlib's own face
recognition example aligns with, a tenth of the size (9 MB vs 100 MB in every
worker) and load in 0.1 s instead of 1 s.

Photos are detected on a copy scaled down to at most :data:`MAX_DETECT_SIDE`
pixels on the long side (the time of the HOG scan grows with the pixel count),
then landmarks and descriptors are computed on the full-size photo.
"""

from __future__ import annotations

import importlib
import importlib.util
import queue
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from spyglass.encoders.base import Encoder
from spyglass.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from PIL import Image

#: What a missing dependency of this encoder tells the user.
EXTRA_HINT = "the face encoder needs the 'face' extra: pip install 'spyglass[face]'"
#: The data-only package that ships dlib's model files.
MODELS_PACKAGE = "face_recognition_models"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: Longest side, in pixels, of the copy a photo is searched for faces on. With the
#: default ``upsample=1`` the detector finds faces down to about 40 pixels of that
#: copy, i.e. 1/16 of the photo's long side. Measured on the 2-core machine, one
#: thread, upsample 1: the scan takes 54 ms at 480x360, 95 ms at 640x480, 151 ms at
#: 800x600 and 239 ms at 1024x768, and the descriptor 75-80 ms more, so 1024 would
#: spend the 300 ms budget; on augmented copies of the test faces (0.2-1.1k px,
#: benchmarks/faces.py --sweep) 800 or 1024 found 86% of the faces, 640 84%, 480
#: 85%. 640x480 is also a common webcam frame, scanned at full size.
MAX_DETECT_SIDE = 640
#: Parallel calls one encoder serves (each has its own detector and ResNet, which
#: dlib does not allow to be shared by threads). One, as for the text encoder: the
#: server runs several worker processes, each with its own encoder. dlib's detector
#: lets other threads run, its ResNet holds the GIL: two callers on one encoder
#: with 2 threads made 10.3 photos/s against 7.5 with 1 (measured, 2 cores).
DEFAULT_THREADS = 1
#: Two faces whose sides differ by less than this factor count as the same size
#: when picking the largest (see ``_largest_first``).
SAME_SIZE = 0.8
#: Space kept around a detected face, in face widths per side, when it is cut out
#: of the full-size photo for the landmarks and the aligned chip: the chip adds a
#: quarter of the face per side and may be rotated, 0.75 covers both.
CROP_MARGIN = 0.75


@dataclass(frozen=True)
class FaceBox:
    """Where a face is, in pixels of the photo given (right and bottom exclusive).

    Clipped to the photo. ``score`` is the detector's confidence: above 0 by
    construction, about 1-1.5 for a clear frontal face, under 0.5 for faces it
    barely finds (and for the occasional face-like pattern it mistakes).
    """

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class Face:
    """A detected face and its 128-d descriptor (float32, length about 1.4-1.5)."""

    box: FaceBox
    vector: np.ndarray


def require(module: str) -> ModuleType:
    """``module`` imported, or ``ConfigError`` naming the ``face`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(EXTRA_HINT) from exc


def models_dir(package: str = MODELS_PACKAGE) -> Path:
    """The ``models`` folder of ``package``, found without importing it.

    face-recognition-models 0.3.0 imports ``pkg_resources`` when imported, which
    setuptools 81 and later no longer ship; its files are all this needs.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise ConfigError(EXTRA_HINT) from exc
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(EXTRA_HINT)
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (LANDMARKS_FILE, DESCRIPTOR_FILE):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder / name} is missing; {EXTRA_HINT}")
    return folder


class FaceEncoder(Encoder):
    """Faces in photos to 128-d dlib descriptors, compared by Euclidean distance.

    ``threads`` is how many calls may run at once (default :data:`DEFAULT_THREADS`):
    each gets its own detector and ResNet from a pool, because both keep per-call
    state inside the dlib object (the detector its scanned image, the network its
    layer outputs); the landmark model is read-only and shared. Further callers
    wait for a free pair, so any number of threads may call one encoder.
    ``upsample`` is how many times the detector doubles the (scaled) photo before
    scanning: 0 finds faces from 80 pixels, 1 from 40, each step costs about 4x.
    ``jitters`` > 1 averages the descriptors of that many randomly shifted, zoomed
    and mirrored crops: steadier vectors for ``jitters`` times the time, but no
    longer the same on every call. ``max_side`` bounds the detection copy
    (default :data:`MAX_DETECT_SIDE`).
    """

    name = "face"
    dim = 128
    inputs = frozenset({"image"})
    metric = "l2"

    def __init__(
        self,
        threads: int | None = None,
        upsample: int = 1,
        jitters: int = 1,
        max_side: int | None = None,
    ) -> None:
        threads = DEFAULT_THREADS if threads is None else threads
        if threads < 1:
            raise ConfigError(f"encoder threads must be at least 1, not {threads}")
        if not 0 <= upsample <= 3:
            raise ConfigError(f"face upsample must be 0 to 3, not {upsample}")
        if jitters < 1:
            raise ConfigError(f"face jitters must be at least 1, not {jitters}")
        self.max_side = MAX_DETECT_SIDE if max_side is None else max_side
        if self.max_side < 80:
            raise ConfigError(f"face max_side must be at least 80 pixels, not {self.max_side}")
        self.upsample = upsample
        self.jitters = jitters
        dlib = require("dlib")
        folder = models_dir()
        try:
            self._landmarks = dlib.shape_predictor(str(folder / LANDMARKS_FILE))
            pairs = [
                (
                    dlib.get_frontal_face_detector(),
                    dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_FILE)),
                )
                for _ in range(threads)
            ]
        except RuntimeError as exc:  # dlib's load errors
            raise ConfigError(f"cannot load the dlib face models in {folder}: {exc}") from exc
        self._rectangle = dlib.rectangle
        self._shapes = dlib.full_object_detections
        self._pool: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        for pair in pairs:
            self._pool.put(pair)

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """The faces in ``image``, largest first; faces within 20% of each other's
        size by detector score, so a clear face beats a face-like pattern."""
        with self._models() as (detector, _):
            return [found.box for found in self._detect(detector, _rgb(image))]

    def encode_faces(self, image: Image.Image, all_faces: bool = False) -> list[Face]:
        """The largest face of ``image`` with its descriptor, or every face (largest
        first) with ``all_faces``; an empty list when there is none."""
        image = _rgb(image)
        with self._models() as (detector, model):
            found = self._detect(detector, image)
            if not all_faces:
                found = found[:1]
            if not found:
                return []
            vectors = self._describe(model, image, found)
        return [Face(box=f.box, vector=v) for f, v in zip(found, vectors, strict=True)]

    def encode_images(self, batch: Sequence[Image.Image]) -> np.ndarray:
        """The descriptor of the largest face of each image: shape ``(len(batch), 128)``.

        An image without a face raises ``InvalidRequest`` (field ``image``): an item
        or query must show a face. Identification wants ``no_face`` instead and calls
        :meth:`encode_faces`.
        """
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        for i, image in enumerate(batch):
            faces = self.encode_faces(image)
            if not faces:
                where = "the image" if len(batch) == 1 else f"image {i}"
                raise InvalidRequest(f"no face found in {where}", field="image")
            out[i] = faces[0].vector
        return out

    @contextmanager
    def _models(self) -> Iterator[tuple[Any, Any]]:
        """A detector and ResNet no other thread uses until the block ends."""
        pair = self._pool.get()
        try:
            yield pair
        finally:
            self._pool.put(pair)

    def _detect(self, detector: Any, image: Image.Image) -> list[_Found]:
        """The faces of an RGB ``image``, largest first, found on a scaled-down copy."""
        width, height = image.size
        scale = min(1.0, self.max_side / max(width, height))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = image.resize(size, _bilinear(), reducing_gap=2.0)
            scale_x, scale_y = size[0] / width, size[1] / height
        else:
            small, scale_x, scale_y = image, 1.0, 1.0
        rects, scores, _ = detector.run(_pixels(small), self.upsample, 0.0)
        found: list[_Found] = []
        for rect, score in zip(rects, scores, strict=True):
            left, top = rect.left() / scale_x, rect.top() / scale_y
            right, bottom = (rect.right() + 1) / scale_x, (rect.bottom() + 1) / scale_y
            box = FaceBox(
                left=min(max(round(left), 0), width),
                top=min(max(round(top), 0), height),
                right=min(max(round(right), 0), width),
                bottom=min(max(round(bottom), 0), height),
                score=float(score),
            )
            found.append(_Found(box, (left, top, right, bottom)))
        return _largest_first(found)

    def _describe(
        self, model: Any, image: Image.Image, found: Sequence[_Found]
    ) -> list[np.ndarray]:
        """The descriptors of ``found`` faces, in one batched ResNet call.

        Landmarks and the aligned 150x150 chip come from the full-size photo, but
        only from a crop around each face (:data:`CROP_MARGIN`), so a 12-megapixel
        photo is not copied whole into an array. The crop starts on multiples of
        64 pixels, so dlib's image pyramid samples the same pixels as on the whole
        photo: the vectors are bit-identical to the uncropped ones (checked on the
        astronaut at 512 to 3024 px).
        """
        crops: list[np.ndarray] = []
        shapes: list[Any] = []
        for face in found:
            left, top, right, bottom = face.rect
            margin = CROP_MARGIN * max(right - left, bottom - top)
            x0 = max(0, int(left - margin) // 64 * 64)
            y0 = max(0, int(top - margin) // 64 * 64)
            x1 = min(image.width, int(right + margin) + 1)
            y1 = min(image.height, int(bottom + margin) + 1)
            crop = _pixels(image.crop((x0, y0, x1, y1)))
            rect = self._rectangle(
                round(left - x0), round(top - y0), round(right - x0) - 1, round(bottom - y0) - 1
            )
            group = self._shapes()
            group.append(self._landmarks(crop, rect))
            crops.append(crop)
            shapes.append(group)
        batches = model.compute_face_descriptor(crops, shapes, self.jitters)
        return [np.asarray(batch[0], dtype=np.float32) for batch in batches]


@dataclass(frozen=True)
class _Found:
    """A face as reported and as dlib found it (unclipped, in full-size pixels)."""

    box: FaceBox
    rect: tuple[float, float, float, float]


def _largest_first(found: Sequence[_Found]) -> list[_Found]:
    """``found`` ordered by size, faces of about the same size by detector score.

    The detector scans an image pyramid whose levels are 5/6 apart, so its boxes
    come in steps of 20% and two faces within :data:`SAME_SIZE` of each other are
    the same size as far as it can tell. Among those the higher score goes first:
    the astronaut's mission patch, taken for a face at score 0.1, is sometimes a
    pixel larger than her face (score 1.2) and would otherwise be "the" face.
    """
    rest = sorted(found, key=lambda f: (_side(f), f.box.score), reverse=True)
    ordered: list[_Found] = []
    while rest:
        floor = _side(rest[0]) * SAME_SIZE
        best = max((f for f in rest if _side(f) >= floor), key=lambda f: f.box.score)
        ordered.append(best)
        rest.remove(best)
    return ordered


def _side(found: _Found) -> float:
    left, top, right, bottom = found.rect
    return max(right - left, bottom - top)


def _rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB mode (grayscale, palette and RGBA photos are converted)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def _pixels(image: Image.Image) -> np.ndarray:
    """An RGB ``image`` as the C-contiguous ``(height, width, 3)`` uint8 array dlib reads."""
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _bilinear() -> Any:
    from PIL import Image

    return Image.Resampling.BILINEAR
