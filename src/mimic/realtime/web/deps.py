"""What every route of the web app depends on: the app's state (`WebState`, built once per app from the config) and
the check that guards every /api and /ws request (`authorize`), as FastAPI dependencies."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, WebSocketException, status
from fastapi.requests import HTTPConnection
from omegaconf import DictConfig, OmegaConf

from mimic.jobs import Jobs, jobs_root
from mimic.realtime.web.captures import Captures
from mimic.realtime.web.catalog import Catalog
from mimic.realtime.web.sessions import Sessions

log = logging.getLogger(__name__)


@dataclass
class WebState:
    """The server's state: the composed config, the token (None: none needed), the models on offer, the live
    connections, the captured photos and the fine-tuning jobs."""

    cfg: DictConfig
    token: str | None
    catalog: Catalog
    sessions: Sessions
    captures: Captures
    jobs: Jobs

    @classmethod
    def from_config(cls, cfg: DictConfig, token: str | None) -> WebState:
        """The state of a composed conf/realtime.yaml with ``ui=web``; a model or pipeline setting that does not work
        is a `UserError` now."""
        catalog = Catalog(cfg)
        ui, personalise = cfg.ui, cfg.ui.personalise
        detector = OmegaConf.to_container(cfg.detector, resolve=True)
        limits = {"max_bytes": int(ui.max_frame_bytes), "max_pixels": int(ui.max_pixels), "max_side": int(ui.max_side)}
        captures = Captures(Path(str(personalise.captures)).expanduser(), detector, **limits)
        jobs = Jobs(jobs_root(cfg), Path(str(personalise.fer2013)).expanduser())
        return cls(cfg, token, catalog, Sessions(cfg, catalog), captures, jobs)


def get_state(connection: HTTPConnection) -> WebState:
    """The state of the app serving ``connection`` (a request or a WebSocket)."""
    return connection.app.state.web


State = Annotated[WebState, Depends(get_state)]  # a route's parameter ``state: State`` is the app's state


def authorize(connection: HTTPConnection) -> None:
    """Every /api and /ws request: a browser's Origin must be this server, and the token must come along when there
    is one (``?token=`` or ``Authorization: Bearer``). A refused WebSocket is closed with code 1008 and the reason."""
    try:
        _check(connection, get_state(connection).token)
    except HTTPException as e:
        if connection.scope["type"] != "websocket":
            raise
        log.warning("WebSocket refused: %s", e.detail)
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION, e.detail[:120]) from None


def _check(connection: HTTPConnection, token: str | None) -> None:
    origin = connection.headers.get("origin")
    if origin and urlsplit(origin).netloc != connection.headers.get("host"):
        raise HTTPException(403, f"requests from pages of other sites are refused (origin {origin})")
    if token is None:
        return
    given = connection.query_params.get("token")
    scheme, _, bearer = connection.headers.get("authorization", "").partition(" ")
    given = given or (bearer.strip() if scheme.lower() == "bearer" else None)
    if not given:
        raise HTTPException(401, "this server needs its token: open the address it printed (…/?token=…)")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(403, "wrong token: open the address the server printed")
