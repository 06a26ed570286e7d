"""The web front-end of the realtime app: ``python realtime.py ui=web`` serves a page (``static/``) that sends the
browser's camera frames over a WebSocket to the same per-frame pipeline the OpenCV window runs, one per connection.

`server` holds the FastAPI app (`server.create_app`) and `serve`, which runs it on uvicorn. Importing this package
loads neither FastAPI nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig


def serve(cfg: DictConfig) -> None:
    """Serve the page for a composed conf/realtime.yaml with ``ui=web`` until Ctrl-C or SIGTERM."""
    from mimic.realtime.web.server import serve as _serve

    _serve(cfg)
