"""The colour histogram: 8 x 12 x 12 = 1,152 soft bins over CIE Lab.

Bins. Each Lab axis is cut into equal bins over a fixed range (:data:`BINS`,
:data:`RANGES`): L* [0, 100] in 8, a* [-86, 98] in 12, b* [-108, 95] in 12, which
covers every sRGB colour. Bin ``i`` of an axis with range ``[lo, hi]`` and ``n``
bins has width ``w = (hi - lo) / n`` and centre ``lo + (i + 0.5) * w``. The
flattened index of bin ``(l, a, b)`` is ``(l * 12 + a) * 12 + b`` (C order).

Soft assignment (tri-linear). On each axis a value ``x`` sits at the continuous
bin coordinate ``t = (x - lo) / w - 0.5`` (so ``t = i`` exactly at centre ``i``),
clipped to ``[0, n - 1]``: values beyond the outermost centres go wholly to the
outermost bin. With ``i0 = min(floor(t), n - 2)`` and ``f = t - i0``, the value
gives ``1 - f`` to bin ``i0`` and ``f`` to bin ``i0 + 1``. A pixel's unit mass
is split over the 8 surrounding bin centres by the product of its three axis
weights, so a colour moving smoothly moves the histogram smoothly, and the
histogram of a uniform-colour image has its mass at the bins around that colour.

Images are first shrunk so their longer side is at most :data:`MAX_SIDE` pixels
with Pillow's BILINEAR filter (antialiased: when downscaling Pillow widens the
filter to the whole footprint). Measured on the 11 shared photos: 2.1 ms a photo
against 5.3 ms for LANCZOS, and the histograms differ from LANCZOS' by 3% of the
mass (L1, mean), less than shrinking itself moves them (8% from full size: it
averages neighbouring pixels' colours). Smaller images are used as
they are. The histogram is L1-normalised: it sums to 1.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from spyglass.color.lab import srgb_to_lab_planes
from spyglass.errors import InvalidRequest

#: Bins per axis: L*, a*, b*.
BINS = (8, 12, 12)
#: The value range each axis' bins cover: L*, a*, b*.
RANGES = ((0.0, 100.0), (-86.0, 98.0), (-108.0, 95.0))
#: Number of bins, the histogram's length.
SIZE = BINS[0] * BINS[1] * BINS[2]
#: Longest image side, in pixels, a histogram is computed at.
MAX_SIDE = 256

_LO = np.array([lo for lo, _ in RANGES], dtype=np.float32)
_WIDTH = np.array(
    [(hi - lo) / n for (lo, hi), n in zip(RANGES, BINS, strict=True)], dtype=np.float32
)
_TOP = np.array([n - 1 for n in BINS], dtype=np.float32)
_STRIDES = (BINS[1] * BINS[2], BINS[2], 1)


def bin_centres() -> np.ndarray:
    """Lab centre of every bin, shape ``(1152, 3)`` float64, in flattened-index order."""
    axes = [
        lo + (np.arange(n) + 0.5) * (hi - lo) / n for (lo, hi), n in zip(RANGES, BINS, strict=True)
    ]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)


def soft_histogram(lab: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Tri-linear soft histogram of ``(n, 3)`` Lab colours, shape ``(1152,)`` float64.

    Each colour adds its weight (1 when ``weights`` is None) split over its 8
    surrounding bins as the module docstring describes; the result is not
    normalised. See :func:`soft_histogram_planes` for the work.
    """
    planes = np.asarray(lab, dtype=np.float32).reshape(-1, 3).T
    return soft_histogram_planes(planes, weights)


def soft_histogram_planes(planes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """:func:`soft_histogram` of Lab given as ``(3, n)`` planes (L, a, b), float32.

    Per axis, the lower bin and the fraction towards the upper one are computed
    for all colours at once; then one ``np.bincount`` per corner of the 2 x 2 x 2
    cell adds the product of the three axis weights at the corner's flattened
    index. Eight passes over the colours, no loop over them.
    """
    n = planes.shape[1]
    base = np.zeros(n, dtype=np.intp)
    axis_weights: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(3):
        t = planes[k] - _LO[k]
        t *= np.float32(1.0) / _WIDTH[k]
        t -= np.float32(0.5)
        np.clip(t, np.float32(0.0), _TOP[k], out=t)
        low = np.minimum(np.floor(t), _TOP[k] - np.float32(1.0))
        upper = t - low
        axis_weights.append((np.float32(1.0) - upper, upper))
        base += low.astype(np.intp) * _STRIDES[k]
    if weights is not None:
        mass = np.asarray(weights, dtype=np.float32).ravel()
        axis_weights[0] = (axis_weights[0][0] * mass, axis_weights[0][1] * mass)
    hist = np.zeros(SIZE, dtype=np.float64)
    for dl in (0, 1):
        for da in (0, 1):
            wla = axis_weights[0][dl] * axis_weights[1][da]
            for db in (0, 1):
                offset = dl * _STRIDES[0] + da * _STRIDES[1] + db
                hist += np.bincount(
                    base + offset, weights=wla * axis_weights[2][db], minlength=SIZE
                )
    return hist


def shrink(image: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    """``image`` as RGB with its longer side at most ``max_side`` (BILINEAR), aspect kept."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def histogram(image: Image.Image) -> np.ndarray:
    """The L1-normalised Lab histogram of an image, shape ``(1152,)`` float64, sums to 1.

    The image is shrunk to :data:`MAX_SIDE` first (see :func:`shrink`); an image
    with no pixels raises ``InvalidRequest``.
    """
    if image.width == 0 or image.height == 0:
        raise InvalidRequest("the image has no pixels", field="image")
    pixels = np.asarray(shrink(image), dtype=np.uint8).reshape(-1, 3)
    return normalise(soft_histogram_planes(srgb_to_lab_planes(pixels)))


def normalise(hist: np.ndarray) -> np.ndarray:
    """``hist`` divided by its sum (L1), as float64."""
    values = np.asarray(hist, dtype=np.float64)
    total = values.sum()
    if not total > 0:
        raise ValueError("a histogram with no mass cannot be normalised")
    out: np.ndarray = values / total
    return out


def hellinger(hist: np.ndarray) -> np.ndarray:
    """The Hellinger embedding of L1 histograms: their element-wise square root, float32.

    For L1-normalised ``p`` and ``q``, ``|sqrt(p) - sqrt(q)|^2 = 2 - 2 * BC(p, q)``
    (BC the Bhattacharyya coefficient), so L2 search over these unit vectors ranks
    by Hellinger distance. Works on one histogram or a ``(n, 1152)`` stack.
    """
    out: np.ndarray = np.sqrt(np.maximum(np.asarray(hist, dtype=np.float64), 0.0)).astype(
        np.float32
    )
    return out


def from_hellinger(vectors: np.ndarray) -> np.ndarray:
    """L1 histograms back from Hellinger vectors (squared, renormalised), float64."""
    squared = np.square(np.asarray(vectors, dtype=np.float64))
    totals = squared.sum(axis=-1, keepdims=True)
    out: np.ndarray = squared / np.where(totals > 0, totals, 1.0)
    return out
