"""Encoders turn text (and, later, images, colors, faces) into vectors.

``ENCODERS`` maps the name a collection uses to the class that implements it;
``"none"`` means the client brings its own vectors.
"""

from __future__ import annotations

from typing import Any

from spyglass.encoders.base import Encoder
from spyglass.encoders.text import TextEncoder
from spyglass.errors import ConfigError

ENCODERS: dict[str, type[Encoder]] = {"text": TextEncoder}


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


__all__ = ["ENCODERS", "Encoder", "TextEncoder", "create_encoder"]
