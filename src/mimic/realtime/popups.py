"""Reaction pop-up windows, shown by a small child process that runs its own GUI event loop.

Why a process: a GUI toolkit paints a new window only while its event loop runs, and the app's loop spends nearly all
its time detecting and classifying between two short ``waitKey`` calls. With Qt under Xvfb a pop-up opened from such
a busy loop was often never painted at all. The child (``python -m mimic.realtime.popups``) does nothing but show
pictures, so it always paints them, and it never slows the loop down. It reads one JSON command per line on stdin
and exits when stdin closes, so it cannot outlive the app, even one that was killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

MOVE_AFTER_S = 0.5


class PopupWindows:
    """The app's side: ``show(name, image_path, seconds)`` opens (or refreshes) a pop-up, never blocking."""

    def __init__(self, position: Sequence[int] | None = None) -> None:
        self.position = list(position) if position else None
        self.proc: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", "mimic.realtime.popups"], stdin=subprocess.PIPE, text=True, bufsize=1
        )

    def show(self, name: str, image_path: str | os.PathLike, seconds: float) -> None:
        if self.proc is None:
            return
        try:
            command = {"name": name, "image": str(image_path), "seconds": seconds, "position": self.position}
            self.proc.stdin.write(json.dumps(command) + "\n")
        except (BrokenPipeError, OSError, ValueError):
            log.warning("the pop-up window process has stopped (no display?): reactions show no pictures")
            self.proc = None

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self.proc.stdin.close()  # the child's signal to close its windows and exit
        try:
            self.proc.wait(3.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _read_commands(commands: queue.Queue) -> None:
    for line in sys.stdin:
        with contextlib.suppress(json.JSONDecodeError):
            commands.put(json.loads(line))
    commands.put(None)


def main() -> None:
    """The child: show pictures as commanded, close each when its time is up, exit when stdin closes."""
    import cv2  # start-up: the child imports its GUI library itself (see the module docstring)

    commands: queue.Queue = queue.Queue()
    threading.Thread(target=_read_commands, args=(commands,), daemon=True).start()
    open_until: dict[str, float] = {}
    moves: list[tuple[float, str, list[int]]] = []
    running = True
    while running:
        while not commands.empty():  # this loop is the only reader
            command = commands.get()
            if command is None:
                running = False
                break
            image = cv2.imread(command["image"], cv2.IMREAD_COLOR)
            if image is None:
                continue
            name, position = command["name"], command.get("position")
            if name not in open_until:
                cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
                if position:
                    # Moved only once painted: Qt (xcb, no window manager) may never paint a window moved right
                    # after it opens, while a painted window keeps its picture when moved.
                    moves.append((time.monotonic() + MOVE_AFTER_S, name, position))
            cv2.imshow(name, image)
            open_until[name] = time.monotonic() + float(command["seconds"])
        now = time.monotonic()
        for move in [m for m in moves if m[0] <= now]:
            moves.remove(move)
            if move[1] in open_until:
                cv2.moveWindow(move[1], *move[2])
        for name in [n for n, until in open_until.items() if now >= until]:
            del open_until[name]
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(name)
        cv2.waitKey(30)
    for name in open_until:  # one by one, never destroyAllWindows (it can hang on macOS)
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(name)
    with contextlib.suppress(cv2.error):
        cv2.waitKey(1)


if __name__ == "__main__":
    main()
