"""Encoders turn text, images, color palettes and faces into vectors (or have a remote
embeddings API do it).

``ENCODERS`` maps the name a collection uses to the class that implements it;
``"none"`` means the client brings its own vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spyglass.encoders.base import Encoder
from spyglass.encoders.clip import ClipEncoder
from spyglass.encoders.color import ColorEncoder
from spyglass.encoders.face import FaceEncoder
from spyglass.encoders.image import ImageEncoder
from spyglass.encoders.remote import RemoteEncoder
from spyglass.encoders.text import TextEncoder
from spyglass.encoders.text_fast import FastTextEncoder
from spyglass.errors import ConfigError

if TYPE_CHECKING:
    from spyglass.settings import Settings

ENCODERS: dict[str, type[Encoder]] = {
    encoder.name: encoder
    for encoder in (
        TextEncoder,
        FastTextEncoder,
        ImageEncoder,
        ClipEncoder,
        ColorEncoder,
        FaceEncoder,
        RemoteEncoder,
    )
}


def create_encoder(name: str, **options: Any) -> Encoder:
    """A new, loaded encoder of the registered ``name``, built with ``options``.

    Loading reads model files, so callers keep the result and share it between
    threads rather than calling this per request.
    """
    cls = ENCODERS.get(name)
    if cls is None:
        known = ", ".join(sorted(ENCODERS))
        raise ConfigError(f"unknown encoder {name!r}; known encoders: {known}")
    return cls(**options)


def load_encoder(name: str, settings: Settings) -> Encoder:
    """The encoder ``name`` configured by ``settings``; ``ConfigError`` if it cannot load."""
    cls = ENCODERS.get(name)
    if cls is None:
        known = ", ".join(sorted(ENCODERS))
        raise ConfigError(f"unknown encoder {name!r}; known encoders: {known}")
    return cls.from_settings(settings)


__all__ = [
    "ENCODERS",
    "ClipEncoder",
    "ColorEncoder",
    "Encoder",
    "FaceEncoder",
    "FastTextEncoder",
    "ImageEncoder",
    "RemoteEncoder",
    "TextEncoder",
    "create_encoder",
    "load_encoder",
]
