"""What the command-line entry points share: user mistakes end in one clear message and exit code 2, never a
traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from hydra.errors import InstantiationException


class UserError(Exception):
    """A mistake in the user's input (a path, a setting, a file) with a message that says what to do."""


# Error classes of mimic's modules that count as user mistakes. A module not imported yet cannot have raised its
# error, so it is not imported here either (importing mimic.data would pull in Lightning: slow, and the realtime
# app's startup time counts).
_USER_ERROR_CLASSES = {
    "mimic.data.base": "DataError",
    "mimic.labels": "UnknownClassError",
    "mimic.models.checkpoint": "CheckpointError",
    "mimic.models.weights": "WeightsError",
}


def _user_error(exc: BaseException) -> BaseException | None:
    loaded = [getattr(sys.modules[m], name) for m, name in _USER_ERROR_CLASSES.items() if m in sys.modules]
    kinds = (UserError, FileNotFoundError, *loaded)
    while exc is not None:
        if isinstance(exc, kinds):
            return exc
        exc = exc.__cause__ if isinstance(exc, InstantiationException) else None
    return None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn user mistakes raised inside the block into ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except Exception as e:
        found = _user_error(e)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        sys.exit(2)
