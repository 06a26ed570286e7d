"""The one base of every user-facing error: a mistake in the user's input (a path, a setting, a file) whose message
says what to do. The command-line entry points (`mimic.cli.user_errors`) print it and exit 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input with a message that names the file, row or setting and says what to do."""
