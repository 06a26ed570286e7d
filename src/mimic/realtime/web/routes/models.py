"""The model picker: ``GET /api/models`` (every model on offer, by id) and ``POST /api/model`` (switch a live
connection's model, or the one new connections start with)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from mimic.realtime.web.deps import State

router = APIRouter()


class ChooseModel(BaseModel):
    id: str
    connection: int | None = None


@router.get("/api/models")
async def models(state: State) -> dict:
    entries = await asyncio.to_thread(state.catalog.scan)
    return {"models": [e.to_json() for e in entries], "default": state.sessions.default.id}


@router.post("/api/model")
async def choose_model(choice: ChooseModel, state: State) -> dict:
    entry = await asyncio.to_thread(state.catalog.get, choice.id)
    try:
        return await state.sessions.choose(entry, choice.connection)
    except KeyError:
        raise HTTPException(404, f"no live connection {choice.connection}") from None
