"""The CSV logs, one per connection (another when it switches to a model with other classes): ``GET /api/logs``
lists the newest ``ui.max_logs``, ``GET /api/logs/<name>`` gives one and ``GET /api/log.csv`` the newest, whole rows
only; ``DELETE /api/logs/<name>`` deletes a finished one's file (409 while its connection writes it). A file deleted
from disk answers 404."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from mimic.realtime.web.deps import State
from mimic.realtime.web.sessions import LogFile

router = APIRouter()


def _csv(entry: LogFile) -> Response:
    name = entry.csv.path.name
    try:
        data = entry.csv.path.read_bytes()
    except FileNotFoundError:
        raise HTTPException(404, f"log {name} is no longer on disk") from None
    data = data[: data.rfind(b"\n") + 1]  # whole rows only, should a frame's write be under way
    return Response(data, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _listed(name: str, state: State) -> LogFile:
    if name not in state.sessions.logs:
        raise HTTPException(404, f"no log named {name!r}: GET /api/logs lists them")
    return state.sessions.logs[name]


@router.get("/api/log.csv")
async def latest_log(state: State) -> Response:
    if not state.sessions.logs:
        raise HTTPException(404, "no log yet: a log starts with each connection (and log.enabled=true)")
    return _csv(list(state.sessions.logs.values())[-1])


@router.get("/api/logs")
async def logs(state: State) -> dict:
    return {"logs": [entry.to_json() for entry in state.sessions.logs.values()]}


@router.get("/api/logs/{name}")
async def one_log(name: str, state: State) -> Response:
    return _csv(_listed(name, state))


@router.delete("/api/logs/{name}")
async def delete_log(name: str, state: State) -> dict:
    return state.sessions.delete_log(_listed(name, state).csv.path.name)
