"""Colour queries as palettes: hex parsing, the palette's histogram, dominant colours.

A query is a list of hex colours with optional weights. Its histogram is built
the same way as an image's (tri-linear soft assignment in Lab, L1-normalised),
with each colour standing for ``weight`` of the pixels, so "40% red, 60% navy"
is compared like an image that is 40% red and 60% navy. The way back, from a
histogram to a few hex colours, labels results with their dominant colours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from spyglass.color.histogram import bin_centres, normalise, soft_histogram
from spyglass.color.lab import lab_to_srgb, srgb_to_lab
from spyglass.errors import InvalidRequest

#: Most colours one query may name.
MAX_COLORS = 64
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class DominantColor(NamedTuple):
    """One bin of a histogram shown as a colour: its centre as ``#rrggbb``, and its mass."""

    hex: str
    weight: float


def parse_hex(text: object, field: str) -> tuple[int, int, int]:
    """``(r, g, b)`` of ``"#rrggbb"``, ``"rrggbb"``, ``"#rgb"`` or ``"rgb"`` (any case).

    Anything else raises ``InvalidRequest`` with ``field`` as given.
    """
    if not isinstance(text, str):
        raise InvalidRequest(
            f"a colour must be a hex string such as '#ff8800', not {type(text).__name__}",
            field=field,
        )
    digits = text.strip()
    digits = digits[1:] if digits.startswith("#") else digits
    if len(digits) not in (3, 6) or not set(digits) <= _HEX_DIGITS:
        raise InvalidRequest(
            f"{text!r} is not a hex colour: use 3 or 6 hex digits, with or without '#'",
            field=field,
        )
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    value = int(digits, 16)
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def parse_palette(
    colors: Sequence[str],
    weights: Sequence[float] | None = None,
    *,
    field: str = "colors",
    weights_field: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The palette as ``(n, 3)`` uint8 sRGB and weights summing to 1, float64.

    ``weights`` None means equal weights; otherwise one positive, finite number
    per colour. Mistakes raise ``InvalidRequest`` naming the element, e.g. field
    ``"colors[1]"`` or ``"weights[0]"``. ``weights_field`` defaults to ``field``
    with its last ``colors`` replaced by ``weights`` (``"query.colors"`` ->
    ``"query.weights"``).
    """
    wfield = weights_field or _weights_field(field)
    if isinstance(colors, str | bytes) or not isinstance(colors, Sequence):
        raise InvalidRequest("colors must be a list of hex strings", field=field)
    if not colors:
        raise InvalidRequest("name at least one colour", field=field)
    if len(colors) > MAX_COLORS:
        raise InvalidRequest(
            f"at most {MAX_COLORS} colours per query, not {len(colors)}", field=field
        )
    rgb = np.array([parse_hex(c, f"{field}[{i}]") for i, c in enumerate(colors)], dtype=np.uint8)
    if weights is None:
        return rgb, np.full(len(colors), 1.0 / len(colors))
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence):
        raise InvalidRequest("weights must be a list of numbers", field=wfield)
    if len(weights) != len(colors):
        raise InvalidRequest(
            f"{len(weights)} weights for {len(colors)} colours: give one weight per colour",
            field=wfield,
        )
    values = []
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w <= 0:
            raise InvalidRequest(
                f"weight {w!r} must be a finite number above 0", field=f"{wfield}[{i}]"
            )
        values.append(float(w))
    mass = np.array(values, dtype=np.float64)
    mass /= mass.max()  # so that even weights near the float limit sum finitely
    return rgb, mass / mass.sum()


def palette_histogram(rgb: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The L1 histogram of a parsed palette, shape ``(1152,)`` float64, sums to 1."""
    return normalise(soft_histogram(srgb_to_lab(rgb), weights))


def to_hex(rgb: Sequence[int] | np.ndarray) -> str:
    """``#rrggbb`` of one 8-bit colour."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _centre_groups() -> tuple[np.ndarray, tuple[str, ...]]:
    """For each bin, the index of its centre's hex colour in a list of distinct hexes.

    Several dark, saturated bin centres lie outside sRGB and clip to the same hex.
    """
    hexes = [to_hex(c) for c in lab_to_srgb(bin_centres())]
    distinct = tuple(dict.fromkeys(hexes))
    position = {h: i for i, h in enumerate(distinct)}
    return np.array([position[h] for h in hexes], dtype=np.intp), distinct


_GROUP, _GROUP_HEX = _centre_groups()


def dominant_colors(hist: np.ndarray, count: int = 5) -> list[DominantColor]:
    """The ``count`` heaviest colours of an L1 histogram, heaviest first.

    Each is a bin centre converted to sRGB (clipped into the gamut; see
    :func:`~spyglass.color.lab.lab_to_srgb`) with its share of the mass; bins whose
    centres give the same hex count as one. Colours with no mass are left out, so
    a palette of two colours may give fewer than ``count``. With the soft
    assignment, one pure colour shows as its nearest bin centres, heaviest first.
    """
    values = np.asarray(hist, dtype=np.float64).ravel()
    mass = np.bincount(_GROUP, weights=values, minlength=len(_GROUP_HEX))
    order = np.argsort(-mass, kind="stable")[: max(count, 0)]
    return [DominantColor(_GROUP_HEX[i], float(mass[i])) for i in order if mass[i] > 0]


def _weights_field(field: str) -> str:
    head, sep, tail = field.rpartition("colors")
    return f"{head}weights{tail}" if sep else f"{field}.weights"
