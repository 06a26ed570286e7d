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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import mimic
from mimic.errors import UserError
from mimic.realtime.web.deps import WebState, authorize
from mimic.realtime.web.errors import MAX_JSON_BYTES, MAX_JSON_DEPTH, error_answer, json_depth
from mimic.realtime.web.routes import captures, finetune, live, logs, models

STATIC = Path(__file__).resolve().parent / "static"


class BoundedBodies:
    """ASGI middleware: a request's body is read whole, up to a limit, before the app sees it: a JSON body at most
    `MAX_JSON_BYTES` long and `MAX_JSON_DEPTH` deep (400), any other body (a photo) at most ``max_bytes`` (413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        is_json = kind == b"application/json" or kind.endswith(b"+json")
        limit = MAX_JSON_BYTES if is_json else self.max_bytes
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                what = "a JSON body" if is_json else "a request's body"
                return await refuse(send, 413, f"{what} of more than {limit:,} bytes is refused")
        if is_json and json_depth(body) > MAX_JSON_DEPTH:
            return await refuse(send, 400, f"JSON nested more than {MAX_JSON_DEPTH} deep is refused")
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def refuse(send: Send, status: int, error: str) -> None:
    await JSONResponse({"error": error}, status)({"type": "http"}, None, send)


async def error_response(request: Request, error: Exception) -> JSONResponse:
    status, body = error_answer(error)
    return JSONResponse(body, status, headers=getattr(error, "headers", None))


async def page() -> FileResponse:
    if not (STATIC / "index.html").is_file():
        raise HTTPException(404, f"the page's files are missing from {STATIC}: reinstall mimic")
    return FileResponse(STATIC / "index.html")


async def openapi(request: Request) -> JSONResponse:
    """The API's OpenAPI schema: behind the token, as the API is."""
    return JSONResponse(request.app.openapi())


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

    app = FastAPI(
        title="mimic", version=mimic.__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.web = state
    app.add_middleware(BoundedBodies, max_bytes=int(cfg.ui.max_frame_bytes) + 65536)  # a photo and its form
    for error in (StarletteHTTPException, RequestValidationError, UserError, Exception):
        app.add_exception_handler(error, error_response)
    app.add_api_route("/", page, include_in_schema=False)
    app.add_api_route("/openapi.json", openapi, include_in_schema=False, dependencies=[Depends(authorize)])
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    for routes in (live, models, logs, captures, finetune):
        app.include_router(routes.router, dependencies=[Depends(authorize)])
    return app
