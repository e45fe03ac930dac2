"""Face identification: the decision per photo and the confirmation per camera session.

Pure building blocks for the face routes; the ``face`` encoder itself lives in
``spyglass.encoders.face``.
"""

from __future__ import annotations

from spyglass.faces.identify import DEFAULT_THRESHOLD, NO_FACE, Identification, identify
from spyglass.faces.sessions import Observation, SessionTracker

__all__ = [
    "DEFAULT_THRESHOLD",
    "NO_FACE",
    "Identification",
    "Observation",
    "SessionTracker",
    "identify",
]
