"""HTTP routes of resumable uploads (see exchange.slides.uploads for how they work).

POST   /api/uploads                                 start: files with size and sha256
PUT    /api/uploads/{id}/files/{index}/parts/{n}    one part, raw body
GET    /api/uploads/{id}                            which parts are stored (to resume)
POST   /api/uploads/{id}/complete                   verify, validate, record the slide
DELETE /api/uploads/{id}                            abort: drop every stored byte
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from exchange.slides.uploads import FileSpec, InvalidUpload, Uploads, UploadState
from exchange.web.auth import CurrentUser
from exchange.web.deps import PolicyDep, own_upload
from exchange.web.hub import hub_of
from exchange.web.slides import SlideDetailOut, _detail

router = APIRouter(prefix="/api/uploads", tags=["uploads"])
# An upload of another centre is unknown to the caller (exchange.access.policy): 404.
OWN = [Depends(own_upload)]


def get_uploads(request: Request) -> Uploads:
    return hub_of(request).uploads


UploadsDep = Annotated[Uploads, Depends(get_uploads)]


class FileIn(BaseModel):
    path: str = Field(max_length=1000, description="relative path, e.g. slide/Data0001.dat")
    size: int = Field(ge=0)
    sha256: str = Field(description="SHA-256 of the whole file, 64 hex digits")


class UploadIn(BaseModel):
    centre: str = Field(max_length=32)
    name: str = Field(default="", max_length=500)
    files: list[FileIn] = Field(max_length=100_000)


class FileOut(BaseModel):
    index: int
    path: str
    size: int
    parts: int
    stored: list[int]


class UploadOut(BaseModel):
    id: str
    name: str
    centre: str
    status: str
    error: str | None
    part_size: int
    slide_id: str | None
    files: list[FileOut]


class PartOut(BaseModel):
    number: int
    size: int
    sha256: str


def _out(state: UploadState) -> UploadOut:
    return UploadOut(
        id=state.id,
        name=state.name,
        centre=state.centre,
        status=state.status,
        error=state.error,
        part_size=state.part_size,
        slide_id=state.slide_id,
        files=[
            FileOut(index=f.index, path=f.path, size=f.size, parts=f.parts, stored=list(f.stored))
            for f in state.files
        ],
    )


@router.post("", status_code=201)
async def start_upload(
    body: UploadIn, uploads: UploadsDep, principal: CurrentUser, policy: PolicyDep
) -> UploadOut:
    policy.may_upload(principal, body.centre)
    specs = [FileSpec(f.path, f.size, f.sha256.lower()) for f in body.files]
    state = await run_in_threadpool(uploads.create, body.centre, body.name, specs)
    return _out(state)


@router.get("/{upload_id}", dependencies=OWN)
async def upload_state(upload_id: str, uploads: UploadsDep) -> UploadOut:
    return _out(await run_in_threadpool(uploads.state, upload_id))


@router.put("/{upload_id}/files/{index}/parts/{number}", dependencies=OWN)
async def put_part(
    upload_id: str,
    index: int,
    number: int,
    request: Request,
    uploads: UploadsDep,
    x_part_sha256: Annotated[str | None, Header()] = None,
) -> PartOut:
    expected = await run_in_threadpool(uploads.part_length, upload_id, index, number)
    # Read no more than the part may hold: a client cannot make the hub buffer a whole file.
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > expected:
            raise InvalidUpload(f"part {number} must be {expected} bytes; more were sent")
        chunks.append(chunk)
    data = b"".join(chunks)
    digest = await run_in_threadpool(
        uploads.put_part, upload_id, index, number, data, x_part_sha256
    )
    return PartOut(number=number, size=len(data), sha256=digest)


@router.post("/{upload_id}/complete", dependencies=OWN)
async def complete_upload(upload_id: str, uploads: UploadsDep) -> SlideDetailOut:
    slide = await run_in_threadpool(uploads.complete, upload_id)
    return _detail(slide)


@router.delete("/{upload_id}", status_code=204, dependencies=OWN)
async def abort_upload(upload_id: str, uploads: UploadsDep) -> Response:
    await run_in_threadpool(uploads.abort, upload_id)
    return Response(status_code=204)
