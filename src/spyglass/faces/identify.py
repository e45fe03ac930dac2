"""Who is in a photo: the decision made from the distances to a collection's faces.

A collection of faces holds one or more descriptors per person, each item labelled
with the person's name. To identify a photo, its largest face is encoded and the
collection searched (metric ``l2``); :func:`identify` turns the nearest hits into
an :class:`Identification`.

The nearest descriptor decides, not a vote over the k nearest: with the one to
five photos a person is usually enrolled with, a vote counts photos rather than
likeness (someone enrolled with ten photos would outvote a closer match enrolled
with one), and the nearest distance is also the one dlib's 0.6 threshold was
calibrated for (two photos of the same person, not a person's average).

``similarity`` is ``1 - distance`` clipped to [0, 1], the same function for every
request and collection whatever its threshold: 1.0 for identical descriptors,
0.4 at dlib's 0.6, 0.0 from a distance of 1 on (photos of two different people
are typically 0.7-1.0 apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

#: dlib's distance under which two descriptors are taken to be the same person
#: (99.38% accurate on the LFW benchmark, according to dlib).
DEFAULT_THRESHOLD = 0.6

Status = Literal["success", "unknown", "no_face"]


@dataclass(frozen=True)
class Identification:
    """The answer for one photo.

    ``success``: ``person`` is the nearest enrolled person, within the threshold.
    ``unknown``: a face, but nobody within the threshold (or nobody enrolled);
    ``person`` is None, ``distance`` and ``similarity`` still describe the nearest
    face when there is one. ``no_face``: no face in the photo; everything None.
    """

    status: Status
    person: str | None
    similarity: float | None
    distance: float | None


#: The answer for a photo without a face.
NO_FACE = Identification(status="no_face", person=None, similarity=None, distance=None)


def similarity(distance: float) -> float:
    """``1 - distance`` clipped to [0, 1] (see the module docstring)."""
    return min(1.0, max(0.0, 1.0 - distance))


def identify(
    distances: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
) -> Identification:
    """The person whose descriptor is nearest, if within ``threshold``, else unknown.

    ``distances`` are the Euclidean distances from the photo's face to enrolled
    descriptors (any order; a store's ``l2`` score is minus this distance) and
    ``labels`` the person of each. A distance equal to the threshold matches, as
    in dlib's and face_recognition's comparisons. No distances (an empty
    collection) is ``unknown``.
    """
    values = np.asarray(distances, dtype=np.float64).reshape(-1)
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} distances but {len(labels)} labels")
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"face threshold must be a positive number, not {threshold}")
    if len(values) == 0:
        return Identification(status="unknown", person=None, similarity=None, distance=None)
    nearest = int(np.argmin(values))
    distance = float(values[nearest])
    if distance <= threshold:
        return Identification(
            status="success",
            person=labels[nearest],
            similarity=similarity(distance),
            distance=distance,
        )
    return Identification(
        status="unknown", person=None, similarity=similarity(distance), distance=distance
    )
