"""The web app's one error convention: what a client is answered for an exception, over HTTP (`main`'s exception
handlers) and over a WebSocket (`sessions`) alike.

- `UserError` (a setting, a model file, a photo, a class name: the user's to fix): 400 with its message.
- `HTTPException`: its own status (404 nothing by that name, 409 a conflict, 413 too large, 422 nothing usable).
- A request FastAPI could not validate: 422 naming the field.
- Anything else is a bug: 500, its traceback in the server's log.

The body is always ``{"error": message}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from mimic.errors import UserError

log = logging.getLogger(__name__)


def error_answer(error: Exception) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of ``error``."""
    if isinstance(error, HTTPException):
        return error.status_code, {"error": str(error.detail)}
    if isinstance(error, RequestValidationError):
        where = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:]) or 'body'}: {e['msg']}" for e in error.errors())
        return 422, {"error": f"bad request: {where}"}
    if isinstance(error, UserError):
        return 400, {"error": str(error)}
    log.error("error in a request", exc_info=error)
    return 500, {"error": "internal error: the server's log has the details"}
