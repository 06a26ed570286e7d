"""The web page's FastAPI app (`create_app`): the app's state, one set of exception handlers (`errors.error_answer`:
`UserError` 400, `HTTPException` its own status, a request FastAPI cannot validate 422, anything else 500 with the
traceback logged), a router per concern (`routes`) behind `deps.authorize`, the page and its static files.

Everything a request can need is imported here, when the server starts, never by a request's thread; torch is
imported only when a model needs it (`catalog`), so a server of an ONNX model runs without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import cv2
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from omegaconf import DictConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

import mimic
from mimic.errors import UserError
from mimic.realtime.web.deps import WebState, authorize
from mimic.realtime.web.errors import error_answer
from mimic.realtime.web.routes import captures, finetune, live, logs, models

STATIC = Path(__file__).resolve().parent / "static"


async def error_response(request: Request, error: Exception) -> JSONResponse:
    status, body = error_answer(error)
    return JSONResponse(body, status, headers=getattr(error, "headers", None))


async def page() -> FileResponse:
    if not (STATIC / "index.html").is_file():
        raise HTTPException(404, f"the page's files are missing from {STATIC}: reinstall mimic")
    return FileResponse(STATIC / "index.html")


def create_app(cfg: DictConfig, token: str | None = None) -> FastAPI:
    """The FastAPI app of a composed conf/realtime.yaml (``ui=web``); ``token``: required on every /api and /ws
    request (default: ``ui.token``). Its `deps.WebState` is ``app.state.web``. A model that cannot load, or a
    pipeline setting that does not work, is a `UserError` now."""
    if cfg.get("cv_threads") is not None:
        cv2.setNumThreads(int(cfg.cv_threads))
    token = token if token is not None else cfg.ui.get("token")
    state = WebState.from_config(cfg, str(token) if token is not None else None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await state.sessions.shutdown()

    app = FastAPI(title="mimic", version=mimic.__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.web = state
    for error in (StarletteHTTPException, RequestValidationError, UserError, Exception):
        app.add_exception_handler(error, error_response)
    app.add_api_route("/", page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    for routes in (live, models, logs, captures, finetune):
        app.include_router(routes.router, dependencies=[Depends(authorize)])
    return app
