"""Decoding untrusted image bytes: real photos, generated edge cases, and hostile files."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from spyglass.errors import InvalidRequest, PayloadTooLarge
from spyglass.images import decode_base64_image, decode_image
from spyglass.images.decode import webp_size
from tests.conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "photos"
COLOR = sorted((PHOTOS / "color").glob("*"))
GREY = sorted((PHOTOS / "grayscale").glob("*"))
MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000


def decode(
    data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, min_side: int = 2
) -> Image.Image:
    return decode_image(
        data, field="image", max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side
    )


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int64)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    with Image.open(PHOTOS / "color" / "skimage_coffee.png") as image:
        return image.convert("RGB")


# real photos


def test_the_shared_photos_are_there() -> None:
    assert any(p.suffix == ".jpg" for p in COLOR) and any(p.suffix == ".png" for p in COLOR)
    assert len(GREY) >= 5


@pytest.mark.parametrize("path", COLOR, ids=lambda p: p.name)
def test_color_photos_decode_to_their_own_pixels(path: Path) -> None:
    image = decode(path.read_bytes())
    with Image.open(path) as reference:
        expected = ImageOps.exif_transpose(reference).convert("RGB")
    assert image.mode == "RGB"
    assert image.size == expected.size
    assert np.array_equal(pixels(image), pixels(expected))


@pytest.mark.parametrize("path", GREY, ids=lambda p: p.name)
def test_greyscale_photos_become_grey_rgb(path: Path) -> None:
    image = decode(path.read_bytes())
    values = pixels(image)
    with Image.open(path) as reference:
        assert reference.mode == "L"
        assert image.size == reference.size
        assert np.array_equal(values[..., 0], pixels(reference))
    assert np.array_equal(values[..., 0], values[..., 1])
    assert np.array_equal(values[..., 0], values[..., 2])


def test_decoding_returns_an_independent_loaded_copy(coffee: Image.Image) -> None:
    image = decode(encoded(coffee, "PNG"))
    assert image.getpixel((10, 10)) == coffee.getpixel((10, 10))
    image.putpixel((0, 0), (1, 2, 3))  # writable, not tied to the source buffer
    assert image.getpixel((0, 0)) == (1, 2, 3)


# the other formats


def test_lossless_webp_keeps_the_pixels(coffee: Image.Image) -> None:
    image = decode(encoded(coffee, "WEBP", lossless=True))
    assert image.mode == "RGB"
    assert np.array_equal(pixels(image), pixels(coffee))


def frames(colors: list[tuple[int, int, int]]) -> list[Image.Image]:
    return [Image.new("RGB", (32, 24), color) for color in colors]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_gives_its_first_frame(fmt: str) -> None:
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    first, *rest = frames([red, green, blue])
    data = encoded(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as animation:
        assert getattr(animation, "n_frames", 1) == 3
    image = decode(data)
    assert image.size == (32, 24)
    r, g, b = image.getpixel((16, 12))  # type: ignore[misc]
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_6_is_applied() -> None:
    wide = Image.new("RGB", (64, 32), (255, 0, 0))
    wide.paste((0, 0, 255), (32, 0, 64, 32))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = decode(encoded(wide, "JPEG", exif=exif, quality=95))
    assert image.size == (32, 64)
    top = image.getpixel((16, 8))
    bottom = image.getpixel((16, 56))
    assert top[0] > 200 and top[2] < 50  # type: ignore[index]
    assert bottom[2] > 200 and bottom[0] < 50  # type: ignore[index]


def test_cmyk_jpeg_becomes_rgb() -> None:
    red_ink = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    image = decode(encoded(red_ink, "JPEG"))
    r, g, b = image.getpixel((8, 8))  # type: ignore[misc]
    assert image.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_rgba_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # invisible red
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    image = decode(encoded(rgba, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 1)) == (255, 0, 0)
    grey = image.getpixel((2, 2))
    assert all(120 <= channel <= 135 for channel in grey)  # type: ignore[union-attr]


def test_grey_with_alpha_is_composited_on_white() -> None:
    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((3, 3), (0, 255))
    image = decode(encoded(la, "PNG"))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((3, 3)) == (0, 0, 0)


def test_palette_transparency_becomes_white() -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255])
    palette.putpixel((0, 0), 1)
    data = encoded(palette, "PNG", transparency=1)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and "transparency" in check.info
    image = decode(data)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((2, 2)) == (255, 0, 0)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.full((8, 8), 32768, dtype=np.uint16)
    values[0, 0] = 65535
    values[0, 1] = 0
    data = encoded(Image.fromarray(values), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I")
    image = decode(data)
    assert image.getpixel((4, 4)) == (128, 128, 128)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (0, 0, 0)


# refusals: 4xx problems, never crashes


def refused(
    data: bytes, kind: type[InvalidRequest] | type[PayloadTooLarge] = InvalidRequest, **limits: int
) -> str:
    with pytest.raises(kind) as info:
        decode(data, **limits)
    assert type(info.value) is kind
    assert info.value.field == "image"
    assert 400 <= info.value.status < 500
    return str(info.value.detail)


def test_empty_data() -> None:
    assert "empty" in refused(b"")


def test_random_bytes() -> None:
    noise = np.random.default_rng(7).bytes(4096)
    assert "not an image" in refused(noise)
    assert "not an image" in refused(b"hello, world")


def test_a_corrupt_header_behind_good_magic_bytes() -> None:
    assert "corrupt" in refused(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert "JPEG" in refused(b"\xff\xd8\xff" + bytes(range(256)))


@pytest.mark.parametrize("path", [COLOR[0], *[p for p in COLOR if p.suffix == ".jpg"][:1]])
def test_a_truncated_photo(path: Path) -> None:
    data = path.read_bytes()
    detail = refused(data[: len(data) // 2])
    assert "truncated" in detail


def test_truncated_images_stay_an_error_in_this_process() -> None:
    # A dependency flipping this global would let cut files through half grey.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_a_one_pixel_image() -> None:
    detail = refused(encoded(Image.new("RGB", (1, 1)), "PNG"))
    assert "1x1" in detail
    assert decode(encoded(Image.new("RGB", (2, 2)), "PNG")).size == (2, 2)
    assert "3x3" in refused(encoded(Image.new("RGB", (3, 3)), "PNG"), min_side=4)


@pytest.mark.parametrize(("fmt", "name"), [("BMP", "BMP"), ("TIFF", "TIFF"), ("ICO", "ICO")])
def test_other_formats_are_refused_by_name(coffee: Image.Image, fmt: str, name: str) -> None:
    detail = refused(encoded(coffee.resize((64, 64)), fmt))
    assert name in detail and "not supported" in detail


def test_svg_is_refused_by_name() -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9"/>'
    assert "SVG" in refused(svg)


def test_more_bytes_than_allowed(coffee: Image.Image) -> None:
    data = encoded(coffee, "PNG")
    detail = refused(data, PayloadTooLarge, max_bytes=len(data) - 1)
    assert str(len(data)) in detail
    assert decode(data, max_bytes=len(data)).size == coffee.size


def test_more_pixels_than_allowed(coffee: Image.Image) -> None:
    data = encoded(coffee, "JPEG")
    detail = refused(data, PayloadTooLarge, max_pixels=600 * 400 - 1)
    assert "600x400" in detail
    assert decode(data, max_pixels=600 * 400).size == (600, 400)


def png_bomb(width: int, height: int) -> bytes:
    """A real 1-bit all-black PNG: width*height pixels in a few hundred KB.

    Rows are compressed 1000 at a time with a full flush, which makes every
    block's output the same, so one block is compressed and repeated.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = 1000
    assert height % rows == 0
    block = b"\x00" * (1 + (width + 7) // 8) * rows
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(height // rows):
        checksum = zlib.adler32(block, checksum)
    stream = (
        b"\x78\xda"
        + piece * (height // rows)
        + compressor.flush(zlib.Z_FINISH)
        + struct.pack(">I", checksum)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", stream)
        + png_chunk(b"IEND", b"")
    )


def test_the_bomb_is_a_valid_png() -> None:
    small = png_bomb(3000, 2000)  # the same construction, small enough to decode
    with Image.open(io.BytesIO(small)) as image:
        image.load()
        assert image.size == (3000, 2000) and image.getextrema() == (0, 0)
    rows = zlib.decompress(small[41:-16])  # checks the stream's adler32 too
    assert rows == bytes(2000 * (1 + 3000 // 8))


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    limit_before = Image.MAX_IMAGE_PIXELS
    bomb = png_bomb(60000, 60000)
    assert len(bomb) < 1_000_000  # 3.6 gigapixels (450 MB of 1-bit rows) in under 1 MB
    idat = bomb[41:-16]
    assert zlib.decompressobj().decompress(idat, 4096) == bytes(4096)  # a real zlib stream
    detail = refused(bomb, PayloadTooLarge)
    # The header check names the size; a failure while decoding would say otherwise.
    assert "60000x60000" in detail and "3600000000 pixels" in detail
    assert Image.MAX_IMAGE_PIXELS == limit_before


def gif(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A one-frame GIF whose frame may claim more room than its logical screen."""
    lzw = b"\x08\x06\x00\x01\x08\x04\x10\x10\x00"  # four pixels of colour 0, as Pillow writes
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", *screen, 0, 0, 0)
        + b","
        + struct.pack("<HHHHB", 0, 0, *frame, 0x80)
        + b"\x00\x00\x00\xff\xff\xff"
        + lzw
        + b";"
    )


def test_a_gif_screen_bomb_is_refused_from_its_header() -> None:
    detail = refused(gif((10000, 10000), (2, 2)), PayloadTooLarge)
    assert "10000x10000" in detail


@pytest.mark.parametrize("frame", [(65535, 65535), (10000, 10000)])
def test_a_gif_frame_that_grows_the_canvas_is_refused(frame: tuple[int, int]) -> None:
    # Pillow checks this growth itself, against its global limit: its
    # DecompressionBombError (or warning) must come out as a 413 too.
    limit_before = Image.MAX_IMAGE_PIXELS
    refused(gif((10, 10), frame), PayloadTooLarge)
    assert Image.MAX_IMAGE_PIXELS == limit_before


def test_a_webp_canvas_bomb_is_refused_before_pillow_opens_it() -> None:
    # Pillow's WebP reader allocates the canvas on open, so the size is read first.
    # This file is only a header: had Pillow opened it, it would be "corrupt".
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x10\x00\x00\x00"
    vp8x += (10000 - 1).to_bytes(3, "little") + (10000 - 1).to_bytes(3, "little")
    header = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x
    assert "10000x10000" in refused(header, PayloadTooLarge)
    assert "corrupt" in refused(header, max_pixels=10**9)


def test_webp_sizes_are_read_from_every_kind_of_header(coffee: Image.Image) -> None:
    small = coffee.resize((300, 200))
    translucent = small.convert("RGBA")
    translucent.putalpha(200)
    kinds = set()
    for image, options in (
        (small, {"lossless": True}),
        (small, {"quality": 80}),
        (translucent, {"quality": 80}),  # lossy with alpha: the extended format
    ):
        data = encoded(image, "WEBP", **options)
        kinds.add(data[12:16])
        assert webp_size(data) == (300, 200)
        assert decode(data).size == (300, 200)
    assert kinds == {b"VP8L", b"VP8 ", b"VP8X"}


def test_a_small_gif_decodes() -> None:
    image = decode(gif((2, 2), (2, 2)))
    assert image.size == (2, 2) and image.mode == "RGB"


# base64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode64(text: str, *, max_bytes: int = MAX_BYTES) -> Image.Image:
    return decode_base64_image(
        text, field="query.image", max_bytes=max_bytes, max_pixels=MAX_PIXELS
    )


def test_base64_plain_and_data_url(coffee: Image.Image) -> None:
    data = encoded(coffee, "PNG")
    for text in (
        b64(data),
        "data:image/png;base64," + b64(data),
        "DATA:image/png;name=coffee.png;base64," + b64(data),
        base64.encodebytes(data).decode("ascii"),  # MIME line breaks
        base64.urlsafe_b64encode(data).decode("ascii").rstrip("="),
    ):
        image = decode64(text)
        assert np.array_equal(pixels(image), pixels(coffee))


def refused64(text: str, kind: type[Exception] = InvalidRequest, max_bytes: int = MAX_BYTES) -> str:
    with pytest.raises(kind) as info:
        decode64(text, max_bytes=max_bytes)
    assert type(info.value) is kind
    assert getattr(info.value, "field", None) == "query.image"
    return str(info.value)


def test_bad_base64() -> None:
    assert "base64" in refused64("this is not base64!")
    assert "base64" in refused64("data:image/png;base64,ab$cd")
    assert "base64" in refused64("QUJD\u00e9")


def test_data_urls_must_be_base64_images(coffee: Image.Image) -> None:
    assert "base64" in refused64("data:image/png,rawbytes")
    assert "text/plain" in refused64("data:text/plain;base64," + b64(b"hello"))
    assert "empty" in refused64("data:image/png;base64,")


def test_base64_of_a_non_image() -> None:
    assert "not an image" in refused64(b64(b"plain text, not a picture"))


def test_base64_size_is_checked_before_decoding() -> None:
    # Not base64 at all, but long: it must be refused as too large, unparsed.
    detail = refused64("!" * 40_000, PayloadTooLarge, max_bytes=1000)
    assert "1000" in detail
    assert "base64" in refused64("!" * 40_000, max_bytes=100_000)


def test_base64_size_limit_is_exact_enough(coffee: Image.Image) -> None:
    data = encoded(coffee, "PNG")
    assert decode64(b64(data), max_bytes=len(data)).size == coffee.size
    refused64(b64(data), PayloadTooLarge, max_bytes=len(data) - 1)


def test_damaged_files_only_ever_raise_problems(coffee: Image.Image) -> None:
    # Seeded mutations of every accepted format: each either decodes to RGB or is a
    # 4xx problem; any other exception escaping would be a 500.
    small = coffee.resize((60, 40))
    seeds = [encoded(small, fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF")]
    seeds.append(encoded(small, "GIF", save_all=True, append_images=[small.rotate(90)]))
    rng = np.random.default_rng(11)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(seeds[rng.integers(len(seeds))])
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(len(data)))
            if rng.random() < 0.7:
                data[at] = int(rng.integers(256))
            else:
                del data[at : at + int(rng.integers(1, 32))]
        try:
            assert decode(bytes(data)).mode == "RGB"
            outcomes["decoded"] += 1
        except (InvalidRequest, PayloadTooLarge) as exc:
            assert exc.field == "image"
            outcomes["refused"] += 1
    assert outcomes["decoded"] > 0 and outcomes["refused"] > 0
