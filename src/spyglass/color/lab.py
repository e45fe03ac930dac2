"""sRGB <-> CIE L*a*b* (D65) conversion, vectorised over any number of colours.

The colour encoder bins colours in Lab because Euclidean distance there roughly
follows perceived difference, which is what both the histogram's soft assignment
and the earth mover's cost between bins rely on. The conversion is the standard
one: IEC 61966-2-1 sRGB transfer curve, the sRGB primaries' RGB -> XYZ matrix, and
CIE 1976 L*a*b* relative to the D65 white that matrix maps sRGB white to (its row
sums), so that every grey has a* = b* = 0 exactly.
"""

from __future__ import annotations

import numpy as np

#: Linear sRGB -> CIE XYZ (D65), IEC 61966-2-1.
RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
XYZ_TO_RGB = np.linalg.inv(RGB_TO_XYZ)
#: The reference white: XYZ of sRGB (1, 1, 1), about (0.95047, 1.0, 1.08883).
WHITE = RGB_TO_XYZ.sum(axis=1)

_DELTA = 6.0 / 29.0


def _linear_lut() -> np.ndarray:
    """Linear-light value of each 8-bit sRGB code, 0-255 (the exact transfer curve)."""
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


#: ``LINEAR[code]`` is the linear-light value of the 8-bit sRGB ``code``.
LINEAR = _linear_lut()
# XYZ / white as three sums of table look-ups: _XYZN_LUT[i, c, code] is row i of the
# white-scaled RGB -> XYZ matrix times the linear value of ``code`` in channel c. This
# replaces a per-pixel 3 x 3 product (no BLAS call, whose threads fight on busy cores).
_XYZN_LUT = ((RGB_TO_XYZ / WHITE[:, None])[:, :, None] * LINEAR[None, None, :]).astype(np.float32)
_SMALL = np.float32(_DELTA**3)
_SLOPE = np.float32(1.0 / (3 * _DELTA**2))
_OFFSET = np.float32(4.0 / 29.0)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Lab of 8-bit sRGB colours: ``(..., 3)`` uint8 in, ``(..., 3)`` float32 out.

    L* is in [0, 100]; for sRGB colours a* lies in about [-86.2, 98.2] and b* in
    about [-107.9, 94.5], the ranges the histogram bins span.
    """
    codes = np.asarray(rgb)
    lab = srgb_to_lab_planes(codes.reshape(-1, 3) if codes.size else codes.reshape(0, 3))
    return np.ascontiguousarray(lab.T).reshape(codes.shape)


def srgb_to_lab_planes(rgb: np.ndarray) -> np.ndarray:
    """Lab of ``(n, 3)`` uint8 sRGB colours as three planes: ``(3, n)`` float32 (L, a, b).

    The layout the histogram wants (each axis contiguous). Computed in float32,
    accurate to about 1e-4 in Lab, which is plenty for binning.
    """
    codes = np.asarray(rgb)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != 3:
        raise ValueError(f"expected (n, 3) uint8 sRGB, got {codes.dtype} {codes.shape}")
    r, g, b = codes[:, 0], codes[:, 1], codes[:, 2]
    f = np.empty((3, len(codes)), dtype=np.float32)
    for i in range(3):
        xyzn = _XYZN_LUT[i, 0][r] + _XYZN_LUT[i, 1][g] + _XYZN_LUT[i, 2][b]
        f[i] = np.where(xyzn > _SMALL, np.cbrt(xyzn), xyzn * _SLOPE + _OFFSET)
    lab = np.empty_like(f)
    np.multiply(f[1], np.float32(116.0), out=lab[0])
    lab[0] -= np.float32(16.0)
    np.subtract(f[0], f[1], out=lab[1])
    lab[1] *= np.float32(500.0)
    np.subtract(f[1], f[2], out=lab[2])
    lab[2] *= np.float32(200.0)
    return lab


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """8-bit sRGB of Lab colours, ``(..., 3)`` in and out; out-of-gamut colours are clipped.

    Used to show histogram bins as colours: a bin centre may lie outside the sRGB
    gamut (a saturated a*/b* at a low L*), and then each channel is clipped to
    [0, 1] in linear light, which keeps the hue roughly and stays printable.
    """
    values = np.asarray(lab, dtype=np.float64)
    fy = (values[..., 0] + 16.0) / 116.0
    f = np.stack([fy + values[..., 1] / 500.0, fy, fy - values[..., 2] / 200.0], axis=-1)
    xyzn = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0))
    linear = np.clip((xyzn * WHITE) @ XYZ_TO_RGB.T, 0.0, 1.0)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    out: np.ndarray = np.rint(encoded * 255.0).astype(np.uint8)
    return out
