"""Faces: enroll people in an organization's face collection and identify photos.

A face collection is a collection with the ``face`` encoder; one per
organization. Enrolling stores one item per photo (the largest face), with the
person's name as the payload's ``person``, so a person may have many photos.
Identifying compares each face with its nearest enrolled faces: ``success``
within the threshold (``face_threshold``, or the request's ``threshold``),
``unknown`` beyond it, ``no_face`` when the photo has none.

``POST /upload`` is the original face-recognition API's route, for its clients:
the organization's collection is ``organize_name``, and a ``session_id`` ties
frames of one camera together so that a person is ``confirmed_person`` once
seen in ``face_session_needed`` of the last ``face_session_window`` frames.
Sessions live in the worker that saw them (one worker, or sticky sessions, for
confirmation to count every frame).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from spyglass.auth.tenancy import collection_for
from spyglass.engine import Engine
from spyglass.errors import InvalidRequest, ProblemError
from spyglass.faces.identify import NO_FACE, Identification, identify
from spyglass.faces.sessions import SessionTracker
from spyglass.images import decode_image
from spyglass.routes.deps import engine, run
from spyglass.routes.uploads import Upload, read_upload
from spyglass.schema import UpsertOut
from spyglass.stores.base import Query

router = APIRouter(tags=["faces"])

NEAREST = 5
"""Enrolled faces fetched per face identified (the nearest decides)."""


class FaceOut(BaseModel):
    status: str = Field(description="success, unknown or no_face.")
    person: str | None = None
    similarity: float | None = Field(None, description="1 - distance, clipped to [0, 1].")
    distance: float | None = Field(None, description="Euclidean distance to the nearest face.")
    box: dict[str, int] | None = Field(None, description="left, top, right, bottom in pixels.")


class IdentifyOut(BaseModel):
    status: str = Field(description="The largest face's status.")
    person: str | None = None
    similarity: float | None = None
    distance: float | None = None
    faces: list[FaceOut] = Field(default_factory=list, description="Every face identified.")


class UploadOut(BaseModel):
    status: str
    person: str | None = None
    confirmed_person: str | None = None
    similarity: float | None = None
    session_id: str


@dataclass(frozen=True)
class _Found:
    identification: Identification
    box: dict[str, int] | None


@router.post("/collections/{name}/faces", response_model=UpsertOut)
async def enroll(
    name: str,
    request: Request,
    person: Annotated[str, Form(min_length=1, max_length=256, description="The person's name.")],
    file: Annotated[list[UploadFile], File(description="One or more photos of the person.")],
) -> UpsertOut:
    """Enroll a person from photos; each photo's largest face becomes one item."""
    uploads = []
    for i, part in enumerate(file):
        data = await read_upload(request, part, f"file[{i}]")
        digest = hashlib.sha256(data).hexdigest()[:16]
        payload = {"person": person, "file_name": part.filename or digest, "size_bytes": len(data)}
        uploads.append(Upload(id=f"{person}/{digest}", image=data, payload=payload))
    version = await run(request, engine(request).upsert, name, uploads)
    return UpsertOut(upserted=len({u.id for u in uploads}), version=version)


@router.post("/collections/{name}/identify", response_model=IdentifyOut)
async def identify_photo(
    name: str,
    request: Request,
    file: Annotated[UploadFile, File(description="The photo.")],
    all_faces: Annotated[
        bool, Form(description="Identify every face, not only the largest.")
    ] = False,
    threshold: Annotated[float | None, Form(gt=0, le=2)] = None,
) -> IdentifyOut:
    """Who is in the photo."""
    data = await read_upload(request, file, "file")
    found = await run(request, _identify, engine(request), name, data, all_faces, threshold)
    first = found[0].identification
    return IdentifyOut(
        status=first.status,
        person=first.person,
        similarity=first.similarity,
        distance=first.distance,
        faces=[_face_out(f) for f in found if f.box is not None],
    )


@router.post("/upload", response_model=UploadOut, tags=["compatibility: face-recognition API"])
async def upload(
    request: Request,
    file: Annotated[UploadFile, File(description="A camera frame or photo.")],
    organize_name: Annotated[str, Form(description="The organization (its face collection).")],
    session_id: Annotated[str | None, Form(description="Frames of one camera session.")] = None,
) -> UploadOut:
    """The original client's identify call, with confirmation over a session's frames."""
    data = await read_upload(request, file, "file")
    try:
        name = collection_for(request, organize_name)
        found = await run(request, _identify, engine(request), name, data, False, None)
    except ProblemError as exc:
        if exc.field == "name":
            exc.field = "organize_name"
        raise
    first = found[0].identification
    sessions: SessionTracker = request.app.state.face_sessions
    seen = sessions.observe(name, session_id, first.person)
    return UploadOut(
        status=first.status,
        person=first.person,
        confirmed_person=seen.confirmed_person,
        similarity=first.similarity,
        session_id=seen.session_id,
    )


def sessions_for(engine: Engine) -> SessionTracker:
    """The face session tracker of one worker, sized by the settings."""
    settings = engine.settings
    return SessionTracker(
        window=settings.face_session_window,
        needed=settings.face_session_needed,
        ttl_seconds=settings.face_session_ttl,
        max_sessions=settings.face_sessions,
    )


def _identify(
    engine: Engine, name: str, data: bytes, all_faces: bool, threshold: float | None
) -> list[_Found]:
    """Each face found, largest first, with who it is; one ``no_face`` when none."""
    info = engine.get_collection(name)
    if info.spec.encoder != "face":
        raise InvalidRequest(
            f"collection {name!r} uses the {info.spec.encoder!r} encoder, not 'face'",
            field="name",
        )
    encoder: Any = engine.encoder("face", name)
    settings = engine.settings
    image = decode_image(
        data, field="file", max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
    )
    faces = encoder.encode_faces(image, all_faces=all_faces)
    if not faces:
        return [_Found(NO_FACE, None)]
    if threshold is None:
        threshold = info.spec.options.get("threshold", engine.settings.face_threshold)
    limit = float(threshold)
    results = engine.store.search(name, [Query(vector=face.vector, k=NEAREST) for face in faces])
    found = []
    for face, hits in zip(faces, results, strict=True):
        people = [str(hit.payload.get("person", hit.id)) for hit in hits]
        who = identify([-hit.score for hit in hits], people, limit)
        box = face.box
        found.append(
            _Found(
                who, {"left": box.left, "top": box.top, "right": box.right, "bottom": box.bottom}
            )
        )
    return found


def _face_out(found: _Found) -> FaceOut:
    who = found.identification
    return FaceOut(
        status=who.status,
        person=who.person,
        similarity=who.similarity,
        distance=who.distance,
        box=found.box,
    )
