"""The ``clip`` encoder: images and texts in one vector space, from a CLIP model you provide.

No package ships CLIP weights, so the model is a folder the ``clip_model_path``
setting names (``SPYGLASS_CLIP_MODEL_PATH``), exported once on a machine with
internet access (docs/encoders-images.md has the commands). Two layouts are read:

* flat, as clip-as-service uses: ``visual.onnx``, ``textual.onnx``,
  ``tokenizer.json`` and a ``config.json`` holding ``image_size`` and
  optionally ``embed_dim``, ``image_mean``, ``image_std``, ``context_length``,
  ``resize_mode``, ``interpolation``, ``pad_id``;
* Immich's export of open_clip models: ``visual/model.onnx``,
  ``visual/preprocess_cfg.json``, ``textual/model.onnx``,
  ``textual/tokenizer.json`` and open_clip's model ``config.json``.

The visual graph takes float pixels ``(batch, 3, size, size)``, the textual one
token ids ``(batch, context_length)`` (int32 or int64, plus an optional
``attention_mask``); each returns one ``(batch, dim)`` embedding. A fixed batch
axis of 1 is run row by row. Images are prepared as OpenAI's CLIP and open_clip
do: shortest side resized to ``image_size`` (bicubic), centre crop, ``/ 255``,
then the CLIP mean and std. Texts are lower-cased, tokenised with the
tokenizer's BPE, wrapped in ``<|startoftext|>`` ... ``<|endoftext|>``, truncated
and padded to ``context_length`` as ``open_clip.tokenize`` does. Outputs are
L2-normalised, so a text's cosine to an image ranks images for that text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from spyglass.encoders.base import Encoder
from spyglass.encoders.image import check_images
from spyglass.encoders.onnx import cpu_session
from spyglass.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from PIL import Image

    from spyglass.settings import Settings

SETTING = "clip_model_path (SPYGLASS_CLIP_MODEL_PATH)"
#: OpenAI CLIP's pixel statistics, used by most CLIP models and the default here.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_LENGTH = 77
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
RESIZE_MODES = frozenset({"shortest", "squash"})
INTERPOLATIONS = frozenset({"bicubic", "bilinear"})
#: Intra-op threads of one model call, 1 for the reason ``text.DEFAULT_THREADS`` gives.
DEFAULT_THREADS = 1
#: Most inputs per model call (bounds the memory of one call).
IMAGE_CHUNK = 16
TEXT_CHUNK = 64


@dataclass(frozen=True)
class ClipFiles:
    """Where the parts of a CLIP model folder are; ``preprocess`` only in Immich's layout."""

    visual: Path
    textual: Path
    tokenizer: Path
    config: Path
    preprocess: Path | None = None


@dataclass(frozen=True)
class ClipConfig:
    """How inputs are prepared for the graphs, from ``config.json`` (and preprocess_cfg)."""

    image_size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    context_length: int = CONTEXT_LENGTH
    embed_dim: int | None = None
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    pad_id: int = 0


class ClipEncoder(Encoder):
    """CLIP embeddings of images and texts, comparable with each other; unit rows, float32.

    ``model_path`` is the model folder (see the module docstring); ``None`` or a
    folder without the files raises ``ConfigError`` naming the setting.
    ``threads`` is onnxruntime's intra-op thread count per call (default 1). The
    sessions and tokenizer are made once here; both graphs are run once on a
    blank input, so a model that does not fit this code fails at start-up, and
    ``dim`` is the length of what they return. Encoding only reads them, so
    several threads may encode at once.
    """

    name = "clip"
    inputs = frozenset({"image", "text"})
    metric = "cosine"

    @classmethod
    def from_settings(cls, settings: Settings) -> ClipEncoder:
        path = settings.clip_model_path
        return cls(model_path=None if path is None else str(path), threads=settings.encoder_threads)

    def __init__(self, model_path: str | None = None, threads: int | None = None) -> None:
        threads = DEFAULT_THREADS if threads is None else threads
        if threads < 1:
            raise ConfigError(f"encoder threads must be at least 1, not {threads}")
        files = locate(model_path)
        self.config = load_config(files)
        self._tokenizer = load_tokenizer(files.tokenizer)
        self._start = _token_id(self._tokenizer, START_TOKEN, files.tokenizer)
        self._end = _token_id(self._tokenizer, END_TOKEN, files.tokenizer)
        self._visual = _Graph(files.visual, threads)
        self._textual = _Graph(files.textual, threads)
        self.dim = self._probe_dim(files)

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Embed texts: shape ``(len(batch), dim)``, float32, unit rows, input order."""
        texts = _check_texts(batch)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), TEXT_CHUNK):
            ids, mask = self.tokenize(texts[start : start + TEXT_CHUNK])
            out[start : start + len(ids)] = _normalise(self._textual.run(ids, mask))
        return out

    def encode_images(self, batch: Sequence[Image.Image]) -> np.ndarray:
        """Embed images: shape ``(len(batch), dim)``, float32, unit rows, input order."""
        images = check_images(batch)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), IMAGE_CHUNK):
            chunk = images[start : start + IMAGE_CHUNK]
            pixels = np.stack([preprocess(image, self.config) for image in chunk])
            out[start : start + len(chunk)] = _normalise(self._visual.run(pixels))
        return out

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, both ``(len(texts), context_length)`` int64.

        Each row is ``<|startoftext|>``, the text's tokens, ``<|endoftext|>``, then
        ``pad_id``; a text too long keeps its first ``context_length - 2`` tokens.
        """
        length = self.config.context_length
        cleaned = [" ".join(text.split()).lower() for text in texts]
        encodings = self._tokenizer.encode_batch(cleaned, add_special_tokens=False)
        ids = np.full((len(texts), length), self.config.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            tokens = [self._start, *encoding.ids[: length - 2], self._end]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask

    def _probe_dim(self, files: ClipFiles) -> int:
        """The embedding length both graphs return for a blank input; they must agree."""
        size = self.config.image_size
        try:
            visual = self._visual.run(np.zeros((1, 3, size, size), dtype=np.float32))
            textual = self._textual.run(*self.tokenize([""]))
        except Exception as exc:  # onnxruntime's own exception types: the config does not fit
            raise ConfigError(
                f"{SETTING}: the model does not take the inputs its config describes"
                f" (image_size {size}, context_length "
                f"{self.config.context_length}): {exc}"
            ) from exc
        if visual.ndim != 2 or textual.ndim != 2:
            raise ConfigError(
                f"{SETTING}: the graphs must return (batch, dim) embeddings, "
                f"not {visual.shape} and {textual.shape}"
            )
        dim = int(visual.shape[1])
        expected = [("textual graph", int(textual.shape[1]))]
        if self.config.embed_dim is not None:
            expected.append((f"{files.config.name} embed_dim", self.config.embed_dim))
        for what, value in expected:
            if value != dim:
                raise ConfigError(f"{SETTING}: the visual graph returns {dim}-d, {what} {value}")
        return dim


class _Graph:
    """One onnxruntime session and how to feed it: which inputs, which dtype, what batch."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        self.session = cpu_session(path, threads, SETTING)
        inputs = self.session.get_inputs()
        masks = [i for i in inputs if i.name == "attention_mask"]
        main = [i for i in inputs if i.name != "attention_mask"]
        if len(main) != 1:
            names = [i.name for i in inputs]
            raise ConfigError(f"{path}: expected one input (and attention_mask), not {names}")
        self.input = main[0].name
        self.mask = masks[0].name if masks else None
        self.dtype = _NUMPY_TYPES.get(main[0].type)
        if self.dtype is None:
            raise ConfigError(f"{path}: input {self.input!r} has unsupported type {main[0].type}")
        self.mask_dtype = _NUMPY_TYPES.get(masks[0].type, np.int64) if masks else np.int64
        batch = main[0].shape[0] if main[0].shape else None
        self.one_at_a_time = batch == 1
        if isinstance(batch, int) and batch != 1:
            raise ConfigError(f"{path}: batch axis fixed at {batch}; export it dynamic or as 1")
        self.output = self.session.get_outputs()[0].name

    def run(self, array: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The first output for ``array`` (and ``mask`` when the graph takes one), float32."""
        if self.one_at_a_time and len(array) > 1:
            rows = [
                self.run(array[i : i + 1], None if mask is None else mask[i : i + 1])
                for i in range(len(array))
            ]
            return np.concatenate(rows)
        feeds = {self.input: array.astype(self.dtype, copy=False)}
        if self.mask is not None:
            if mask is None:
                mask = np.ones(array.shape[:2], dtype=np.int64)
            feeds[self.mask] = mask.astype(self.mask_dtype, copy=False)
        (out,) = self.session.run([self.output], feeds)
        return np.asarray(out, dtype=np.float32)


_NUMPY_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def locate(model_path: str | None) -> ClipFiles:
    """The files of the model folder ``model_path``, or ``ConfigError`` naming the setting."""
    if model_path is None:
        raise ConfigError(
            f"the clip encoder needs a CLIP model: set {SETTING} to a folder holding "
            "visual.onnx, textual.onnx, tokenizer.json and config.json (docs/encoders-images.md)"
        )
    root = Path(model_path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{SETTING}: {root} is not a folder")
    if (root / "visual" / "model.onnx").is_file():  # Immich's layout
        files = ClipFiles(
            visual=root / "visual" / "model.onnx",
            textual=root / "textual" / "model.onnx",
            tokenizer=root / "textual" / "tokenizer.json",
            config=root / "config.json",
            preprocess=root / "visual" / "preprocess_cfg.json",
        )
    else:
        files = ClipFiles(
            visual=root / "visual.onnx",
            textual=root / "textual.onnx",
            tokenizer=root / "tokenizer.json",
            config=root / "config.json",
        )
    required = (files.visual, files.textual, files.tokenizer, files.config)
    missing = [str(path.relative_to(root)) for path in required if not path.is_file()]
    if missing:
        raise ConfigError(
            f"{SETTING}: {root} has no {', '.join(missing)} (see docs/encoders-images.md)"
        )
    return files


def load_config(files: ClipFiles) -> ClipConfig:
    """The preprocessing settings: flat ``config.json`` keys first, then open_clip's."""
    raw = _read_json(files.config)
    pre = _read_json(files.preprocess) if files.preprocess and files.preprocess.is_file() else {}
    vision = raw.get("vision_cfg") or {}
    text = raw.get("text_cfg") or {}
    where = files.config

    def pick(*values: Any) -> Any:
        return next((v for v in values if v is not None), None)

    size = pick(raw.get("image_size"), pre.get("size"), vision.get("image_size"))
    if size is None:
        raise ConfigError(f"{where}: no image_size")
    config = ClipConfig(
        image_size=_square(size, where),
        mean=_triple(pick(raw.get("image_mean"), pre.get("mean"), OPENAI_MEAN), "mean", where),
        std=_triple(pick(raw.get("image_std"), pre.get("std"), OPENAI_STD), "std", where),
        context_length=_positive(
            pick(raw.get("context_length"), text.get("context_length"), CONTEXT_LENGTH),
            "context_length",
            where,
        ),
        embed_dim=_positive(raw["embed_dim"], "embed_dim", where) if "embed_dim" in raw else None,
        resize_mode=pick(raw.get("resize_mode"), pre.get("resize_mode"), "shortest"),
        interpolation=pick(raw.get("interpolation"), pre.get("interpolation"), "bicubic"),
        pad_id=_count(pick(raw.get("pad_id"), text.get("pad_id"), 0), "pad_id", where),
    )
    if config.resize_mode not in RESIZE_MODES:
        raise ConfigError(f"{where}: resize_mode {config.resize_mode!r} is not supported")
    if config.interpolation not in INTERPOLATIONS:
        raise ConfigError(f"{where}: interpolation {config.interpolation!r} is not supported")
    if config.context_length < 2:
        raise ConfigError(f"{where}: context_length must be at least 2")
    if min(config.std) <= 0:
        raise ConfigError(f"{where}: image_std must be positive")
    return config


def preprocess(image: Image.Image, config: ClipConfig) -> np.ndarray:
    """The visual graph's input for one image: ``(3, size, size)`` float32.

    ``shortest``: the shorter side is resized to ``size`` (the longer one to
    ``int(size * long / short)``), then the centre ``size`` x ``size`` is cut
    with torchvision's rounding; ``squash``: resized to ``size`` x ``size``. Then
    ``/ 255`` and ``(x - mean) / std`` per channel, channels first.
    """
    from PIL import Image

    filters = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
    resample = filters[config.interpolation]
    size = config.image_size
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    width, height = rgb.size
    if config.resize_mode == "squash":
        new_width, new_height = size, size
    elif width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    if (new_width, new_height) != (width, height):
        rgb = rgb.resize((new_width, new_height), resample)
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    cropped = rgb.crop((left, top, left + size, top + size))
    pixels = np.asarray(cropped, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer with its own padding and truncation off (``tokenize`` does both)."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception
        raise ConfigError(f"cannot load tokenizer {path}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _token_id(tokenizer: Tokenizer, token: str, path: Path) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ConfigError(f"{path}: no {token} token; is this a CLIP tokenizer?")
    return int(token_id)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = (vectors / norms).astype(np.float32, copy=False)
    return out


def _check_texts(batch: Sequence[str]) -> list[str]:
    """``batch`` as a list of str, or ``InvalidRequest`` naming the first bad entry."""
    if isinstance(batch, str | bytes):
        raise InvalidRequest("texts must be a list of strings, not a single string", field="text")
    texts = list(batch)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"text {i} is {type(text).__name__}, not a string", field="text")
    return texts


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return value


def _square(value: Any, where: Path) -> int:
    """An image size given as ``224`` or ``[224, 224]``; non-square sizes are refused."""
    if isinstance(value, list | tuple) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    return _positive(value, "image_size", where)


def _positive(value: Any, key: str, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key} must be a positive integer, not {value!r}")
    return value


def _count(value: Any, key: str, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {key} must be a non-negative integer, not {value!r}")
    return value


def _triple(value: Any, key: str, where: Path) -> tuple[float, float, float]:
    """Three per-channel numbers (mean or std)."""
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise ConfigError(f"{where}: image {key} must be three numbers, not {value!r}")
