"""What the command-line entry points share: user mistakes end in one clear message and exit code 2, never a
traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from hydra.errors import InstantiationException

from mimic.errors import UserError


def _user_error(exc: BaseException | None) -> BaseException | None:
    """The user mistake behind ``exc`` (looking through Hydra's instantiation wrapper), or None for a bug."""
    while exc is not None:
        if isinstance(exc, UserError | FileNotFoundError):
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
