"""The demo's color collection: small generated pictures, each painted from one palette.

Real photos would have to ship with the package (or be downloaded); these are drawn
at start-up instead, the same every time: for each named palette a few pictures of
bands, blocks and discs in its colors, in proportions that differ from picture to
picture. That is what color search is about (which pictures hold these colors, in
about these amounts), and a picture searched with a slightly cropped copy of itself
finds itself first, which is what image search needs to show.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

from PIL import Image, ImageDraw

from spyglass.ingest.records import Record

__all__ = ["PALETTES", "swatch_records"]

SIZE = 160
PICTURES_PER_PALETTE = 4

PALETTES: dict[str, tuple[str, ...]] = {
    "sunset": ("#ff5e3a", "#ff9a3c", "#ffd36e", "#6a2c70"),
    "forest": ("#1b4332", "#2d6a4f", "#74c69d", "#6b4f2a"),
    "ocean": ("#03045e", "#0077b6", "#00b4d8", "#caf0f8"),
    "desert": ("#e9c46a", "#f4a261", "#e76f51", "#c9b79c"),
    "lavender": ("#6c4ab6", "#8d72e1", "#b9e0ff", "#f3e8ff"),
    "cherry": ("#9d0208", "#d00000", "#ffccd5", "#ffffff"),
    "citrus": ("#ffea00", "#ffb700", "#80b918", "#f5f5dc"),
    "slate": ("#212529", "#495057", "#adb5bd", "#e9ecef"),
    "mint": ("#2ec4b6", "#cbf3f0", "#ffffff", "#ff9f1c"),
    "autumn": ("#7f4f24", "#bc6c25", "#dda15e", "#606c38"),
    "neon": ("#ff00ff", "#00ffff", "#39ff14", "#111111"),
    "pastel": ("#ffd6e0", "#c1fba4", "#a0c4ff", "#fdffb6"),
}


def swatch_records() -> Iterator[Record]:
    """One record per picture: id ``<palette>-<n>``, the PNG as its image, and a payload
    naming the palette and its colors."""
    for name, colors in PALETTES.items():
        for number in range(PICTURES_PER_PALETTE):
            rng = random.Random(f"{name}-{number}")
            yield Record(
                id=f"{name}-{number}",
                vector=None,
                text=None,
                payload={
                    "palette": name,
                    "colors": list(colors),
                    "file_name": f"{name}-{number}.png",
                },
                image=_png(_picture(colors, number, rng)),
            )


def _picture(colors: tuple[str, ...], style: int, rng: random.Random) -> Image.Image:
    """A picture in ``colors``: bands, blocks, discs or a mix, by ``style``."""
    order = list(colors)
    rng.shuffle(order)
    image = Image.new("RGB", (SIZE, SIZE), order[0])
    draw = ImageDraw.Draw(image)
    if style % 4 == 0:  # horizontal bands of random heights
        y = 0
        for color in order:
            height = rng.randint(SIZE // 8, SIZE // 2)
            draw.rectangle((0, y, SIZE, y + height), fill=color)
            y += height
    elif style % 4 == 1:  # blocks
        for _ in range(12):
            x, y = rng.randrange(SIZE), rng.randrange(SIZE)
            w, h = rng.randint(16, 72), rng.randint(16, 72)
            draw.rectangle((x, y, x + w, y + h), fill=rng.choice(order))
    elif style % 4 == 2:  # discs
        for _ in range(10):
            x, y, r = rng.randrange(SIZE), rng.randrange(SIZE), rng.randint(10, 48)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.choice(order[1:]))
    else:  # vertical bands and a disc
        x = 0
        for color in order:
            width = rng.randint(SIZE // 6, SIZE // 2)
            draw.rectangle((x, 0, x + width, SIZE), fill=color)
            x += width
        draw.ellipse((40, 40, 120, 120), fill=order[-1])
    return image


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
