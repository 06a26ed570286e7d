"""Fine-tuning jobs (`mimic.jobs`): ``GET /api/finetune/options?model=<id>`` (what a job of that model may set, and
whether FER2013 is on disk), ``POST /api/finetune`` (JSON ``{"model": id, "epochs": int, "freeze": [module names],
"fer2013": bool | null}``, every field optional, typed and range-checked: starts a job, ``{"id": job, ...}``; 409
while one runs), ``GET /api/finetune`` (the jobs, newest first), ``GET /api/finetune/<job>`` (one) and ``DELETE
/api/finetune/<job>`` (cancels it; 409 when it has ended). A job's ``base`` and, once done, ``model`` are entries of
the model picker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mimic.errors import UserError
from mimic.jobs import MAX_EPOCHS, JobConflict
from mimic.realtime.web.deps import State, WebState
from mimic.realtime.web.errors import parse_json

router = APIRouter()


class FinetuneSettings(BaseModel):
    """The settings a client may send for a job; nothing else is accepted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, max_length=64)
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    freeze: list[str] | None = Field(None, max_length=16)
    fer2013: bool | None = None


def settings_of(body: Any) -> FinetuneSettings:
    """The settings in a request's JSON body (none: every default); a `UserError` naming each problem."""
    try:
        return FinetuneSettings.model_validate(body if body is not None else {})
    except ValidationError as e:
        problems = [f"{'.'.join(str(x) for x in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors()]
        raise UserError("fine-tuning settings: " + "; ".join(problems)) from None


def known_job(job: str, state: State) -> str:
    """The path's job id, when it names a job folder; 404 for anything else."""
    if not state.jobs.exists(job):
        raise HTTPException(404, f"no fine-tuning job {job!r}")
    return job


Job = Annotated[str, Depends(known_job)]


def public(status: dict[str, Any], state: WebState) -> dict[str, Any]:
    """A job's status as a client sees it: its models as the picker's entries, never paths."""
    models = {key: state.catalog.describe(status[key]) for key in ("base", "model") if key in status}
    return {**status, **models}


@router.get("/api/finetune/options")
def options(state: State, model: str | None = None) -> dict:
    entry = state.catalog.get(model) if model is not None else state.sessions.default
    classes, parts = state.catalog.trainable(entry)
    return {"model": entry.id, **state.jobs.options(classes, parts)}


@router.post("/api/finetune")
async def start_job(request: Request, state: State) -> dict:
    try:
        body = parse_json(await request.body())
    except ValueError as e:
        raise UserError(f'send the settings as a JSON object, e.g. {{"epochs": 6}} ({e})') from None
    return await run_in_threadpool(start, settings_of(body), state)


def start(settings: FinetuneSettings, state: WebState) -> dict:
    """Start a job from the settings' model (default: the one new connections start with) on the photos taken."""
    entry = state.catalog.get(settings.model) if settings.model is not None else state.sessions.default
    classes, parts = state.catalog.trainable(entry)
    photos = state.captures.folders()
    try:
        job = state.jobs.start(entry.path, entry.id, classes, parts, photos, **settings.model_dump(exclude={"model"}))
    except JobConflict as e:
        raise HTTPException(409, str(e)) from None
    return {"id": job, **public(state.jobs.status(job), state)}


@router.get("/api/finetune")
def list_jobs(state: State) -> dict:
    return {"jobs": [public(state.jobs.status(j), state) for j in state.jobs.ids()]}


@router.get("/api/finetune/{job}")
def get_job(job: Job, state: State) -> dict:
    return public(state.jobs.status(job), state)


@router.delete("/api/finetune/{job}")
def cancel_job(job: Job, state: State) -> dict:
    try:
        return public(state.jobs.cancel(job), state)
    except JobConflict as e:
        raise HTTPException(409, str(e)) from None
