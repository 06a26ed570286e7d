"""The OpenCV front-ends of the realtime app: the live window, the recorder of the annotated video, and the camera
thumbnails of ``--list-cameras``. They render frames the overlay has drawn on; the pipeline knows nothing of them.

Windows opened here are destroyed one by one (never ``destroyAllWindows``, which can hang on macOS), and a window is
only opened where there is a display to open it on (`has_display`): Qt aborts the whole process otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from mimic.errors import UserError
from mimic.realtime.overlay import FONT
from mimic.realtime.sources import CameraInfo

log = logging.getLogger(__name__)

QUIT_KEYS = (ord("q"), ord("Q"), 27)


def has_display() -> bool:
    """Whether a window can open: macOS and Windows always have a display; elsewhere (X11 or Wayland) ``$DISPLAY``
    or ``$WAYLAND_DISPLAY`` must name one, unless Qt is told to draw off screen."""
    if sys.platform in ("darwin", "win32"):
        return True
    offscreen = os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal"))
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or offscreen)


class Window:
    """The live view: ``show(frame, wait_s)`` shows a frame and handles keys for at least ``wait_s`` seconds; it
    returns False once the user pressed q or ESC or closed the window."""

    def __init__(self, name: str) -> None:
        self.name, self.opened = name, False

    def visible(self) -> bool:
        try:
            return cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:  # Qt drops its GUI receiver when the last window closes
            return False

    def show(self, frame: np.ndarray, wait_s: float = 0.0) -> bool:
        settle = 0
        if not self.opened:  # resizable, sized to the frame once
            cv2.namedWindow(self.name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
            cv2.resizeWindow(self.name, frame.shape[1], frame.shape[0])
            # let the GUI map, size and paint the new window before the loop keeps it busy: Qt (xcb, no window
            # manager) was seen to never paint a window whose first events waited too long
            self.opened, settle = True, 300
        cv2.imshow(self.name, frame)
        key = cv2.waitKey(max(1, int(wait_s * 1000), settle)) & 0xFF
        if key in QUIT_KEYS or not self.visible():
            self.opened = self.visible()
            return False
        return True

    def close(self) -> None:
        if self.opened:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.name)
        for _ in range(3):  # let the GUI backend process the destroy events (macOS needs this to not hang)
            with contextlib.suppress(cv2.error):
                cv2.waitKey(1)


class Recorder:
    """Writes annotated frames to the new video file ``path`` (.mp4: mp4v, .avi: MJPG), sized by the first frame."""

    def __init__(self, path: str | os.PathLike, fps: float | None) -> None:
        self.path, self.fps = Path(path), float(fps or 30.0)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.size = (frame.shape[1], frame.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise UserError(f"record: OpenCV cannot write a video to {self.path} (use a .mp4 or .avi path)")
        if (frame.shape[1], frame.shape[0]) != self.size:  # image folders: frames of any size
            frame = cv2.resize(frame, self.size)
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def show_cameras(cameras: list[CameraInfo]) -> None:
    """One frame of each camera side by side, labelled with its index, until a key is pressed."""
    thumbs = []
    for c in cameras:
        t = cv2.resize(c.frame, (320, int(320 * c.height / c.width)))
        cv2.putText(t, f"source={c.index}", (8, 28), FONT, 0.8, (0, 255, 255), 2, cv2.LINE_AA)
        thumbs.append(cv2.copyMakeBorder(t, 0, max(0, 240 - t.shape[0]), 0, 0, cv2.BORDER_CONSTANT)[:240])
    name = "mimic cameras (any key closes)"
    cv2.imshow(name, np.hstack(thumbs))
    cv2.waitKey(0)
    cv2.destroyWindow(name)
    cv2.waitKey(1)
