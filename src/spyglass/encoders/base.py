"""The encoder contract: turn a batch of inputs into vectors of a fixed dimension."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Encoder:
    """Turns inputs of one modality into float32 vectors.

    ``name`` is the registry name a collection refers to (``"text"``); ``dim`` is
    the length of every vector ``encode`` returns. Implementations load their
    model files once, in ``__init__``, and must be safe to call from several
    threads at once. ``encode`` returns an array of shape ``(len(batch), dim)``,
    dtype float32, one row per input in order; an empty batch returns shape
    ``(0, dim)``. Inputs the encoder cannot use raise ``InvalidRequest``.
    """

    name: str = ""
    dim: int = 0
    modality: str = "text"

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        raise NotImplementedError
