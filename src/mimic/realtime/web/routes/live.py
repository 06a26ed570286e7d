"""The live view: ``GET /api/info`` (what the page needs to start), ``GET /api/reactions/<class>/<image|sound>`` (a
reaction's files), ``WS /ws/live`` (the page's camera frames in, their faces out) and ``WS /ws/source`` (the server's
own source, annotated)."""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, WebSocket
from fastapi.responses import FileResponse

import mimic
from mimic.realtime.web.deps import State

router = APIRouter()


@router.get("/api/info")
async def info(state: State) -> dict:
    cfg, sessions = state.cfg, state.sessions
    r, s = cfg.reactions, cfg.smoothing
    reactions = {"enabled": bool(r.enabled), "hold_s": r.hold_s, "cooldown_s": r.cooldown_s,
                 "popup_s": r.popup_s, "skip": list(r.skip), "popups": bool(r.popups), "sound": bool(r.sound),
                 "volume": r.volume}  # fmt: skip
    return {
        "version": mimic.__version__,
        "model": sessions.default.to_json(),
        "classes": sessions.default.classes,
        "source": "browser" if sessions.source is None else "server",
        "reactions": reactions,
        "max_frame_bytes": int(cfg.ui.max_frame_bytes),
        "jpeg_quality": int(cfg.ui.jpeg_quality),
        "smoothing": {"enabled": bool(s.enabled), "half_life": s.half_life, "margin": s.margin},
    }


@router.get("/api/reactions/{label}/{part}")
async def reaction_file(label: str, part: str, state: State) -> FileResponse:
    parts = {"image": 0, "sound": 1}
    path = state.sessions.assets.get(label, (None, None))[parts[part]] if part in parts else None
    if path is None:
        raise HTTPException(404, f"no reaction {part} for {label!r}")
    return FileResponse(path)


@router.websocket("/ws/live")
async def live(ws: WebSocket, state: State) -> None:
    await ws.accept()
    await state.sessions.serve(ws, state.sessions.answer_frames)


@router.websocket("/ws/source")
async def server_source(ws: WebSocket, state: State) -> None:
    sessions = state.sessions
    await ws.accept()
    if sessions.source is None or sessions.source_busy:
        why = "source=browser: the page sends the frames" if sessions.source is None else "another page shows it"
        await ws.send_text(json.dumps({"error": f"the server reads no source here ({why})"}))
        await ws.close()
        return
    sessions.source_busy = True
    try:
        await sessions.serve(ws, sessions.stream_source)
    finally:
        sessions.source_busy = False
