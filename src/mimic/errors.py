"""The one base of every user-facing error: a mistake in the user's input (a path, a setting, a file) whose message
says what to do. The command-line entry points (`mimic.cli.user_errors`) print it and exit 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input with a message that names the file, row or setting and says what to do."""


def said(error: BaseException, last: bool = False, limit: int = 300) -> str:
    """What a library's ``error`` says, for a `UserError` that quotes it: its message's first line (``last``: its last
    one, where OpenCV puts what went wrong), at most ``limit`` characters, or its type's name when it says nothing."""
    lines = str(error).strip().splitlines()
    return lines[-1 if last else 0][:limit] if lines else type(error).__name__
