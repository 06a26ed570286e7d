"""The web app's one error convention: what a client is answered for an exception, over HTTP (`main`'s exception
handlers) and over a WebSocket (`sessions`) alike.

- `UserError` (a setting, a model file, a photo, a class name: the user's to fix): 400 with its message.
- `HTTPException`: its own status (404 nothing by that name, 409 a conflict, 413 too large, 422 nothing usable).
- A request FastAPI could not validate: 422 naming the field.
- Anything else is a bug: 500, its traceback in the server's log.

The body is always ``{"error": message}``. JSON a client sends is parsed by `parse_json`, which bounds its size and
depth first (Python's parser recurses: 100,000 nested brackets are a RecursionError).
"""

from __future__ import annotations

import json
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


MAX_JSON_BYTES = 65536  # a JSON body or text message: settings and names, never data
MAX_JSON_DEPTH = 32


def json_depth(text: str | bytes) -> int:
    """How deeply ``text``'s arrays and objects nest (brackets inside strings do not count)."""
    data = text.encode() if isinstance(text, str) else text
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_json(text: str | bytes) -> Any:
    """A client's JSON, parsed only when it is at most `MAX_JSON_BYTES` long and nests at most `MAX_JSON_DEPTH`
    deep; `ValueError` saying why not (and for JSON that does not parse)."""
    if len(text) > MAX_JSON_BYTES:
        raise ValueError(f"JSON of {len(text):,} bytes is over the limit of {MAX_JSON_BYTES:,}")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} deep is refused")
    return json.loads(text)
