"""The ``color`` encoder: CIE Lab colour histograms, searched by Hellinger distance.

An image becomes its 1,152-bin soft Lab histogram (:mod:`spyglass.color.histogram`),
a query a palette of hex colours with weights (:mod:`spyglass.color.palette`)
binned the same way. Vectors are the square roots of the L1-normalised
histograms (the Hellinger embedding): unit length, and L2 between them is the
Hellinger distance, so an ordinary L2 ANN index finds candidates. The accurate
mode then reorders the first :attr:`ColorEncoder.rerank_candidates` of them by a
Sinkhorn earth mover's distance in Lab (:meth:`ColorEncoder.rerank`); the fast
mode keeps the ANN order. Pure numpy and Pillow plus POT for the rerank; no model.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from spyglass.color.histogram import SIZE, from_hellinger, hellinger, histogram
from spyglass.color.palette import (
    DominantColor,
    dominant_colors,
    palette_histogram,
    parse_palette,
)
from spyglass.color.rerank import MIN_REG, sinkhorn_rerank
from spyglass.encoders.base import Encoder
from spyglass.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

    from spyglass.settings import Settings

#: ANN candidates the accurate mode reranks (setting ``rerank_candidates``).
DEFAULT_RERANK_CANDIDATES = 200
#: Entropic regularisation of the Sinkhorn rerank, relative to a cost normalised
#: to [0, 1] (setting ``color_sinkhorn_reg``). With 20 iterations its top 10 shares
#: 92.5% with the exact EMD's; 0.05 is blurrier (84%), 0.01 needs 50 iterations to
#: do better (95.5%). Numbers and timings: :mod:`spyglass.color.rerank`.
DEFAULT_SINKHORN_REG = 0.02
#: Sinkhorn iterations of the rerank (setting ``color_sinkhorn_iterations``): at
#: reg 0.02, 20 gets 92.5% where 10 gets 89% and 50 94%, at ~0.8 ms an iteration.
DEFAULT_SINKHORN_ITERATIONS = 20

__all__ = ["ColorEncoder", "DominantColor", "histogram"]


class ColorEncoder(Encoder):
    """Hellinger vectors of Lab colour histograms, 1,152-d float32, for images and palettes.

    ``threads`` is how many images :meth:`encode_images` works on at once (default
    1: a server already encodes from several workers and threads). The other
    arguments configure the accurate mode's rerank. Nothing is loaded and no
    state changes after ``__init__``, so every method is thread-safe.
    """

    name = "color"
    dim = SIZE
    inputs = frozenset({"image", "colors"})
    metric = "l2"
    reranks = frozenset({"colors"})  # a photo query touches ~150 bins: 150 ms, not 20

    @classmethod
    def from_settings(cls, settings: Settings) -> ColorEncoder:
        """Threads from ``encoder_threads``; the rerank from ``rerank_candidates``,
        ``color_sinkhorn_reg`` and ``color_sinkhorn_iterations``."""
        return cls(
            threads=settings.encoder_threads,
            rerank_candidates=settings.rerank_candidates,
            sinkhorn_reg=settings.color_sinkhorn_reg,
            sinkhorn_iterations=settings.color_sinkhorn_iterations,
        )

    def __init__(
        self,
        *,
        threads: int | None = None,
        rerank_candidates: int = DEFAULT_RERANK_CANDIDATES,
        sinkhorn_reg: float = DEFAULT_SINKHORN_REG,
        sinkhorn_iterations: int = DEFAULT_SINKHORN_ITERATIONS,
    ) -> None:
        self.threads = 1 if threads is None else threads
        if self.threads < 1:
            raise ConfigError(f"encoder threads must be at least 1, not {self.threads}")
        if rerank_candidates < 1:
            raise ConfigError(f"rerank_candidates must be at least 1, not {rerank_candidates}")
        if not sinkhorn_reg >= MIN_REG:
            raise ConfigError(f"color_sinkhorn_reg must be at least {MIN_REG}, not {sinkhorn_reg}")
        if sinkhorn_iterations < 1:
            raise ConfigError(
                f"color_sinkhorn_iterations must be at least 1, not {sinkhorn_iterations}"
            )
        self.rerank_candidates = rerank_candidates
        self.sinkhorn_reg = sinkhorn_reg
        self.sinkhorn_iterations = sinkhorn_iterations
        # The rerank's POT takes seconds to import (it loads torch when installed): do it
        # now, beside start-up, rather than in the first color search.
        threading.Thread(target=_import_pot, name="spyglass-pot-import", daemon=True).start()

    def encode_images(self, batch: Sequence[Image.Image]) -> np.ndarray:
        """Hellinger vectors of decoded RGB images: ``(len(batch), 1152)`` float32, unit rows."""
        images = list(batch)
        out = np.empty((len(images), SIZE), dtype=np.float32)
        if self.threads > 1 and len(images) > 1:
            with ThreadPoolExecutor(min(self.threads, len(images))) as pool:
                for row, hist in enumerate(pool.map(histogram, images)):
                    out[row] = hellinger(hist)
        else:
            for row, image in enumerate(images):
                out[row] = hellinger(histogram(image))
        return out

    def encode_palette(
        self,
        colors: Sequence[str],
        weights: Sequence[float] | None = None,
        field: str = "colors",
    ) -> np.ndarray:
        """The Hellinger vector of a palette query, shape ``(1, 1152)`` float32.

        ``colors`` are hex strings (``"#ff8800"``, ``"f80"``...), ``weights`` one
        positive number per colour (None: equal), normalised to sum to 1. A
        mistake raises ``InvalidRequest`` naming the element, e.g. ``colors[1]``
        or ``weights[0]`` (the weights' field is ``field`` with ``colors``
        replaced by ``weights``).
        """
        rgb, mass = parse_palette(colors, weights, field=field)
        return hellinger(palette_histogram(rgb, mass))[None, :]

    def rerank(self, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """EMD-like distances (lower = closer) from a query vector to candidate vectors.

        Both are Hellinger vectors as this encoder makes them (``(1152,)`` or
        ``(1, 1152)``, and ``(n, 1152)``), e.g. the query's and the stored vectors
        of the ANN's first :attr:`rerank_candidates` hits; they are squared back
        into histograms and compared by :func:`~spyglass.color.rerank.sinkhorn_rerank`
        with this encoder's regularisation and iterations. Returns ``(n,)`` float64;
        vectors of another length raise ``ValueError``.
        """
        return sinkhorn_rerank(
            from_hellinger(np.asarray(query).reshape(-1)),
            from_hellinger(np.asarray(candidates).reshape(-1, SIZE)),
            reg=self.sinkhorn_reg,
            iterations=self.sinkhorn_iterations,
        )

    def dominant_colors(self, vector: np.ndarray, count: int = 5) -> list[DominantColor]:
        """The heaviest colours of a stored vector, as ``(hex, weight)``; see
        :func:`~spyglass.color.palette.dominant_colors`."""
        return dominant_colors(from_hellinger(np.asarray(vector).reshape(-1)), count)


def _import_pot() -> None:
    importlib.import_module("ot")
