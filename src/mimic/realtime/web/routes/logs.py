"""The CSV logs, one per connection (and per model switch): ``GET /api/logs`` lists them, ``GET /api/logs/<name>``
gives one and ``GET /api/log.csv`` the newest, whole rows only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from mimic.realtime.web.deps import State
from mimic.realtime.web.sessions import LogFile

router = APIRouter()


def _csv(entry: LogFile) -> Response:
    data = entry.csv.path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]  # whole rows only, should a frame's write be under way
    disposition = f'attachment; filename="{entry.csv.path.name}"'
    return Response(data, media_type="text/csv", headers={"Content-Disposition": disposition})


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
    if name not in state.sessions.logs:
        raise HTTPException(404, f"no log named {name!r}: GET /api/logs lists them")
    return _csv(state.sessions.logs[name])
