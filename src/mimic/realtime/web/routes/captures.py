"""Photos of your face per class: ``POST /api/captures`` (multipart form: ``class``, ``file`` one JPEG or PNG frame;
422 with ``"face": false`` when the frame has no face, nothing saved), ``GET /api/captures`` (the classes with their
photo counts and file names), ``GET /api/captures/<class>/<file>`` (one photo) and ``DELETE`` of the same (deletes
it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from mimic.errors import UserError
from mimic.realtime.web.deps import State

router = APIRouter()


@router.get("/api/captures")
def list_captures(state: State) -> dict:
    return state.captures.listing()


@router.post("/api/captures")
def add_capture(
    state: State,
    label: Annotated[str, Form(alias="class")] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> JSONResponse:
    if file is None:
        raise UserError("send the photo as the form field 'file'")
    saved = state.captures.save(label, file.file.read())
    return JSONResponse(saved, 200 if saved["face"] else 422)


@router.get("/api/captures/{label}/{file}")
def get_capture(label: str, file: str, state: State) -> FileResponse:
    return FileResponse(state.captures.photo(label, file), headers={"Cache-Control": "no-cache"})


@router.delete("/api/captures/{label}/{file}")
def delete_capture(label: str, file: str, state: State) -> dict:
    return state.captures.delete(label, file)
