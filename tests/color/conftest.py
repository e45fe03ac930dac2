"""Real colour photos from the shared data, for the colour tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "photos" / "color"


def photo_paths() -> list[Path]:
    paths = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    assert len(paths) >= 11, f"expected the shared colour photos in {PHOTOS}"
    return paths


def load(name: str) -> Image.Image:
    with Image.open(PHOTOS / name) as image:
        return image.convert("RGB")


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    """Every shared colour photo, decoded to RGB, by file name."""
    return {p.name: load(p.name) for p in photo_paths()}
