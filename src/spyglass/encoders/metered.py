"""Every model call of an encoder, timed and counted for ``/metrics``.

A :class:`MeteredEncoder` sits right on the model: under the micro-batcher, so
what it reports is each real model call (its batch size and how long it took),
not each request's wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from spyglass.encoders.base import Encoder, WrappedEncoder

if TYPE_CHECKING:
    from PIL import Image

#: Called with (encoder name, inputs in the call, seconds the call took).
OnCall = Callable[[str, int, float], None]


class MeteredEncoder(WrappedEncoder):
    """``encoder``, with ``on_call`` told about each model call."""

    def __init__(self, encoder: Encoder, on_call: OnCall) -> None:
        super().__init__(encoder)
        self.on_call = on_call

    def _timed(self, size: int, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = call()
        self.on_call(self.name, size, time.perf_counter() - started)
        return result

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        rows: np.ndarray = self._timed(len(batch), lambda: self.inner.encode(batch))
        return rows

    def encode_images(self, batch: Sequence[Image.Image]) -> np.ndarray:
        rows: np.ndarray = self._timed(len(batch), lambda: self.inner.encode_images(batch))
        return rows

    def encode_palette(
        self, colors: Sequence[str], weights: Sequence[float] | None, field: str = "colors"
    ) -> np.ndarray:
        rows: np.ndarray = self._timed(1, lambda: self.inner.encode_palette(colors, weights, field))
        return rows

    def encode_faces(self, image: Image.Image, all_faces: bool = False) -> Any:
        """The face encoder's detect-and-embed call (one image)."""
        inner: Any = self.inner
        return self._timed(1, lambda: inner.encode_faces(image, all_faces=all_faces))
