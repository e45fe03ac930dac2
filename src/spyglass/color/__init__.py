"""Colour search: Lab histograms of images and palettes, and their EMD reranking.

``lab`` converts sRGB to CIE Lab, ``histogram`` bins colours into the 1,152-bin
soft histogram, ``palette`` turns hex-colour queries into histograms (and
histograms back into dominant colours), ``rerank`` orders candidates by a
Sinkhorn earth mover's distance. The ``color`` encoder
(:mod:`spyglass.encoders.color`) puts them together.
"""

from __future__ import annotations

from spyglass.color.histogram import SIZE, bin_centres, from_hellinger, hellinger, histogram
from spyglass.color.palette import DominantColor, dominant_colors, parse_palette
from spyglass.color.rerank import sinkhorn_rerank

__all__ = [
    "SIZE",
    "DominantColor",
    "bin_centres",
    "dominant_colors",
    "from_hellinger",
    "hellinger",
    "histogram",
    "parse_palette",
    "sinkhorn_rerank",
]
