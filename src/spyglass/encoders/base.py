"""The encoder contract: turn a batch of inputs into vectors of a fixed dimension."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from spyglass.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL import Image

    from spyglass.settings import Settings


class Encoder:
    """Turns inputs of one or more modalities into float32 vectors.

    ``name`` is the registry name a collection refers to (``"text"``); ``dim`` is
    the length of every vector it returns; ``inputs`` names what items and
    queries of its collections may carry (``"text"``, ``"image"``); ``metric`` is
    the metric its vectors are meant for, used when a collection names none.

    Implementations load their model files once, in ``__init__``, and must be
    safe to call from several threads at once. Each ``encode_*`` method returns
    an array of shape ``(len(batch), dim)``, dtype float32, one row per input in
    order; an empty batch returns shape ``(0, dim)``. Inputs the encoder cannot
    use raise ``InvalidRequest``.
    """

    name: str = ""
    dim: int = 0
    inputs: frozenset[str] = frozenset({"text"})
    metric: str = "cosine"
    reranks: frozenset[str] = frozenset()
    """The query kinds (``"colors"``...) whose hits :meth:`rerank` reorders by a finer
    measure than the index's; searches of those kinds fetch more candidates."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoder:
        """The encoder as this server's settings configure it (threads, model paths)."""
        return cls(threads=settings.encoder_threads or 1)  # type: ignore[call-arg]

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Vectors for texts."""
        raise InvalidRequest(f"the {self.name} encoder does not take text", field="text")

    def encode_images(self, batch: Sequence[Image.Image]) -> np.ndarray:
        """Vectors for decoded RGB images."""
        raise InvalidRequest(f"the {self.name} encoder does not take images", field="image")

    def encode_palette(
        self, colors: Sequence[str], weights: Sequence[float] | None, field: str = "colors"
    ) -> np.ndarray:
        """The vector of a palette query: hex colors with optional weights, shape (1, dim)."""
        raise InvalidRequest(f"the {self.name} encoder does not take colors", field=field)

    def rerank(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray | None:
        """Distances (lower is closer) of indexed ``candidates`` to ``query`` by a finer
        measure than the index's, or None when this encoder has no such measure."""
        return None


class WrappedEncoder(Encoder):
    """An encoder in front of another (batching, metering): it looks like ``inner`` and
    passes every call on; subclasses override the calls they change."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.inputs = inner.inputs
        self.metric = inner.metric
        self.reranks = inner.reranks

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        return self.inner.encode(batch)

    def encode_images(self, batch: Sequence[Image.Image]) -> np.ndarray:
        return self.inner.encode_images(batch)

    def encode_palette(
        self, colors: Sequence[str], weights: Sequence[float] | None, field: str = "colors"
    ) -> np.ndarray:
        return self.inner.encode_palette(colors, weights, field)

    def rerank(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray | None:
        return self.inner.rerank(query, candidates)

    def __getattr__(self, name: str) -> Any:
        """Anything else (``max_tokens``, ``token_spans``...) is the inner encoder's."""
        if name == "inner":  # not set yet (during __init__ or unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)
