"""Decoding untrusted image bytes into an RGB picture, within size and pixel limits.

Every image a client sends goes through :func:`decode_image` (or
:func:`decode_base64_image` for JSON bodies) before an encoder sees it. The rules:

* Only JPEG, PNG, WebP and GIF, recognised by their magic bytes. Other formats are
  refused by name, and Pillow's other parsers never run on client data.
* The pixel count is read from the header and checked before any pixel is
  decoded, so a decompression bomb (a few KB that expand to gigabytes) never
  allocates. The file's plugin class is constructed directly rather than through
  ``Image.open``, whose own bomb check reads the process-global
  ``Image.MAX_IMAGE_PIXELS``; that global is never touched here, but Pillow's
  ``DecompressionBombError`` (and the warning, when warnings are errors) is still
  turned into :class:`PayloadTooLarge` should it fire first.
* The image must decode completely: a truncated file is an error (this relies on
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` being left off, as Pillow ships it).
* The EXIF orientation is applied, animations give their first frame, and every
  mode (greyscale, palette, alpha, CMYK, 16-bit) becomes 8-bit RGB, with
  transparency composited on white.

Anything Pillow raises becomes :class:`InvalidRequest` naming the field, so a bad
upload is a 4xx problem, never a 500. Decoding is CPU-bound and blocking: call it
from a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct

import numpy as np
from PIL import (
    GifImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
)

from spyglass.errors import InvalidRequest, PayloadTooLarge

#: The formats accepted, with the Pillow class that parses each.
FORMATS: dict[str, type[ImageFile.ImageFile]] = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "GIF": GifImagePlugin.GifImageFile,
}

#: Magic bytes of formats refused by name, so the message can say what was sent.
_OTHER_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "TIFF"),
    (0, b"MM\x00+", "TIFF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"8BPS", "PSD"),
    (0, b"%PDF", "PDF"),
    (0, b"qoif", "QOI"),
    (0, b"\xff\x0a", "JPEG XL"),
    (4, b"JXL ", "JPEG XL"),
    (4, b"jP  ", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
)

_WHITE = (255, 255, 255, 255)
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_FORMAT_LIST = "JPEG, PNG, WebP or GIF"


def sniff_format(data: bytes) -> str | None:
    """The accepted format ``data`` starts like (``"JPEG"``...), or ``None``."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _other_format(data: bytes) -> str | None:
    head = data[:64]
    for offset, magic, name in _OTHER_FORMATS:
        if head[offset : offset + len(magic)] == magic:
            return name
    text = head.lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in data[:1024]):
        return "SVG"
    return None


def decode_image(
    data: bytes,
    *,
    field: str,
    max_bytes: int,
    max_pixels: int,
    min_side: int = 2,
) -> Image.Image:
    """Decode ``data`` into a new, fully loaded RGB image, upright per its EXIF.

    Raises :class:`PayloadTooLarge` when ``data`` is longer than ``max_bytes`` or
    the header claims more than ``max_pixels`` pixels (checked before decoding),
    and :class:`InvalidRequest` for empty data, a format other than JPEG, PNG,
    WebP or GIF, a truncated or corrupt file, or a side shorter than ``min_side``
    pixels. Both name ``field``.
    """
    if not data:
        raise InvalidRequest("the image is empty (0 bytes)", field=field)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"the image is {len(data)} bytes; the most is {max_bytes}", field=field
        )
    fmt = sniff_format(data)
    if fmt is None:
        other = _other_format(data)
        if other is not None:
            raise InvalidRequest(
                f"{other} images are not supported; send {_FORMAT_LIST}", field=field
            )
        raise InvalidRequest(f"not an image: send {_FORMAT_LIST}", field=field)

    if fmt == "WEBP":
        # Pillow's WebP reader allocates the whole canvas as it opens the file.
        size = webp_size(data)
        if size is None:
            raise InvalidRequest("the WEBP header is corrupt", field=field)
        _check_pixels(*size, max_pixels=max_pixels, field=field)
    try:
        source = FORMATS[fmt](io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"the {fmt} image is too large: {exc}", field=field) from exc
    except Exception as exc:
        raise InvalidRequest(f"the {fmt} header is corrupt: {exc}", field=field) from exc

    with source:
        width, height = source.size
        _check_pixels(width, height, max_pixels=max_pixels, field=field)
        if min(width, height) < min_side:
            raise InvalidRequest(
                f"the image is {width}x{height}; each side must be at least {min_side} pixels",
                field=field,
            )
        try:
            source.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"the {fmt} image is too large: {exc}", field=field) from exc
        except MemoryError as exc:
            raise PayloadTooLarge("the image is too large to decode", field=field) from exc
        except Exception as exc:
            raise InvalidRequest(
                f"the {fmt} image is truncated or corrupt: {exc}", field=field
            ) from exc
        image = _upright(source)
        try:
            return to_rgb(image)
        except Exception as exc:
            raise InvalidRequest(
                f"the {fmt} image has a mode that cannot be converted to RGB ({image.mode})",
                field=field,
            ) from exc


def _check_pixels(width: int, height: int, *, max_pixels: int, field: str) -> None:
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} ({width * height} pixels); "
            f"the most is {max_pixels} pixels",
            field=field,
        )


def webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file's first chunk declares, or ``None`` if unreadable."""
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a" and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _upright(image: Image.Image) -> Image.Image:
    """A copy of ``image`` turned as its EXIF orientation says.

    A damaged EXIF block is common in camera files whose pixels are fine, so it
    costs the rotation (the copy is left as it is), not the upload.
    """
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image.copy()


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, transparency composited on white.

    An RGB image without transparency is returned as it is; others are converted.
    16-bit greyscale is scaled down (Pillow's own conversion clips at 255, which
    turns most 16-bit pictures white).
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        grey = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def decode_base64_image(
    text: str,
    *,
    field: str,
    max_bytes: int,
    max_pixels: int,
    min_side: int = 2,
) -> Image.Image:
    """Decode an image sent as base64 text, plain or as a ``data:image/...;base64,`` URL:
    :func:`base64_image_bytes`, then :func:`decode_image`."""
    data = base64_image_bytes(text, field=field, max_bytes=max_bytes)
    return decode_image(
        data, field=field, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side
    )


def base64_image_bytes(text: str, *, field: str, max_bytes: int) -> bytes:
    """The file bytes of an image sent as base64 text, plain or as a data URL.

    Line breaks and other whitespace are ignored, missing ``=`` padding is
    tolerated and the URL-safe alphabet (``-_``) is accepted. The decoded size is
    worked out from the text's length and checked against ``max_bytes`` before
    anything is decoded.
    """
    payload = text
    if text[:5].lower() == "data:":
        header, comma, payload = text.partition(",")
        params = header[5:].split(";")
        media_type = params[0].strip().lower()
        if not comma or "base64" not in (p.strip().lower() for p in params[1:]):
            raise InvalidRequest(
                "a data URL must be base64: data:image/png;base64,...", field=field
            )
        if media_type and not media_type.startswith("image/"):
            raise InvalidRequest(f"the data URL holds {media_type}, not an image", field=field)

    whitespace = sum(payload.count(c) for c in " \t\r\n\f\v")
    encoded = len(payload) - whitespace
    if encoded * 3 // 4 - 2 > max_bytes:
        raise PayloadTooLarge(
            f"the image is about {encoded * 3 // 4} bytes; the most is {max_bytes}", field=field
        )
    if whitespace:
        payload = "".join(payload.split())
    if "-" in payload or "_" in payload:
        payload = payload.translate(_URLSAFE)
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"not valid base64: {exc}", field=field) from exc


_URLSAFE = str.maketrans("-_", "+/")
