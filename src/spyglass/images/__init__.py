"""Safe image input: decoding untrusted bytes and, when enabled, fetching them by URL.

:func:`decode_image` and :func:`decode_base64_image` turn a multipart upload or a
base64 string into an RGB ``PIL.Image`` within the ``max_image_bytes`` and
``max_image_pixels`` settings; :func:`fetch_image` downloads image bytes from a
public http(s) URL (only when the ``image_urls`` setting is on) and refuses
private, loopback and link-local addresses. All three are blocking: the HTTP layer
calls them from a worker thread. Everything a client can get wrong raises
``InvalidRequest`` or ``PayloadTooLarge`` naming the field.
"""

from __future__ import annotations

from spyglass.images.decode import FORMATS, decode_base64_image, decode_image, to_rgb
from spyglass.images.fetch import fetch_image

__all__ = ["FORMATS", "decode_base64_image", "decode_image", "fetch_image", "to_rgb"]
