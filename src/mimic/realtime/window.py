"""The OpenCV front-end of the realtime app (``python realtime.py``, ``ui=window``): the loop that reads a frame,
steps the pipeline, draws, shows or records (`run`), the live window, the recorder of the annotated video, and the
camera thumbnails of ``--list-cameras``. They render frames the overlay has drawn on; the pipeline knows nothing of
them.

`run` builds everything from a composed conf/realtime.yaml and the model file alone. With ``pipeline=true`` the next
frame is read, its faces detected and cropped for the net on a worker thread while this one is classified and drawn
(`mimic.realtime.sources.read_ahead`; from a file, that thread also classifies frames while the loop is behind). The
loop stops at the end of a video or folder, after ``max_frames``, on ``q`` / ESC, when the window is closed, on Ctrl-C
or SIGTERM, and when a camera stops delivering frames; in every case the CSV keeps every row written so far and the
recording is closed properly. Nothing the user made is overwritten: a log or recording whose path exists gets a new
numbered name (`mimic.io.new_file`). Without a display the run goes headless.

Windows opened here are destroyed one by one (never ``destroyAllWindows``, which can hang on macOS), and a window is
only opened where there is a display to open it on (`has_display`): Qt aborts the whole process otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig, OmegaConf

from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import for_photos
from mimic.io import new_file
from mimic.models.bundled import resolve_ckpt
from mimic.realtime import overlay
from mimic.realtime.overlay import FONT
from mimic.realtime.pipeline import Pipeline, predictor_from_config, run_dir
from mimic.realtime.sources import (
    CameraInfo,
    FrameSource,
    ImageFolderSource,
    list_cameras,
    open_source,
    read_ahead,
)
from mimic.realtime.stats import Stats

log = logging.getLogger(__name__)

QUIT_KEYS = (ord("q"), ord("Q"), 27)


def has_display() -> bool:
    """Whether a window can open: macOS and Windows always have a display; elsewhere (X11 or Wayland) ``$DISPLAY``
    or ``$WAYLAND_DISPLAY`` must name one, unless Qt is told to draw off screen."""
    if sys.platform in ("darwin", "win32"):
        return True
    offscreen = os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal"))
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or offscreen)


GUI_FIX = 'pip uninstall -y opencv-python-headless && pip install --force-reinstall --no-deps "opencv-python>=4.8,<5"'


def has_gui() -> bool:
    """Whether this cv2 can open windows. The headless build (opencv-python-headless, which albumentations pulls in
    and which shares the cv2 folder with opencv-python) says ``GUI: NONE`` in its build information, and its
    ``cv2.imshow`` raises "The function is not implemented"."""
    found = re.search(r"^\s*GUI:[ \t]*(\S*)", cv2.getBuildInformation(), re.MULTILINE)
    return found is None or found.group(1).upper() != "NONE"


def require_gui() -> None:
    """Stop with the fix before a window opens on a cv2 without GUI support."""
    if not has_gui():
        raise UserError(
            f"display: OpenCV {cv2.__version__} at {Path(cv2.__file__).parent} is the headless build (no GUI support), "
            f"so it cannot open a window. Fix: {GUI_FIX}, or run without a window: display=false"
        )


class Window:
    """The live view: ``show(frame, wait_s)`` shows a frame and handles keys for at least ``wait_s`` seconds; it
    returns False once the user pressed q or ESC or closed the window."""

    def __init__(self, name: str) -> None:
        require_gui()
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
    require_gui()
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


# ---- the window loop (`python realtime.py`, ui=window) ------------------------------------------------------
def _display(cfg: DictConfig) -> bool:
    if not cfg.display:
        return False
    if has_display():
        require_gui()  # before the reaction pop-ups' process opens the first window
        return True
    log.warning(
        "no display ($DISPLAY and $WAYLAND_DISPLAY are unset): running headless, as with display=false "
        "(no window, no reaction pop-ups)"
    )
    return False


def list_cameras_of(cfg: DictConfig) -> None:
    """``list_cameras=true`` / ``--list-cameras``: print what each camera index gives and, with a display, show one
    frame of each labelled with its index."""
    cams = list_cameras(int(cfg.camera.probe), cfg.camera.backend)
    if not cams:
        print(f"no camera opened at indices 0-{int(cfg.camera.probe) - 1}")
        return
    print("index  size        fps    backend   name")
    for c in cams:
        print(f"{c.index:<6} {f'{c.width}x{c.height}':<11} {c.fps:<6.1f} {c.backend:<9} {c.name}")
    if _display(cfg):
        show_cameras(cams)


def _load(cfg: DictConfig) -> tuple[Any, Any, FrameSource]:
    """Predictor, detector and source; torch and the model load on a thread while the camera opens."""
    if cfg.get("cv_threads") is not None:
        cv2.setNumThreads(int(cfg.cv_threads))
    with ThreadPoolExecutor(1, thread_name_prefix="mimic-load") as pool:
        loading = pool.submit(predictor_from_config, cfg)
        try:
            detector = load_detector(cfg.detector)
            source = open_source(cfg.source, OmegaConf.to_container(cfg.camera, resolve=True), cfg.folder_fps)
            if isinstance(source, ImageFolderSource):
                for_photos(detector)  # unrelated photos: no search near the last photo's faces
        except BaseException:
            loading.result()  # a bad checkpoint is reported before a missing camera or detector model
            raise
        try:
            return loading.result(), detector, source
        except BaseException:
            source.close()
            raise


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[threading.Event]:
    """An event SIGTERM sets (in the main thread), so that a kill ends the run as ``q`` does."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _recorder(cfg: DictConfig, source: FrameSource, stack: contextlib.ExitStack) -> Recorder | None:
    if not cfg.record:
        return None
    return stack.enter_context(contextlib.closing(Recorder(new_file(cfg.record, "record", "realtime.mp4"), source.fps)))


def run(cfg: DictConfig, record: bool = False) -> Stats:
    """Run the window loop from a composed conf/realtime.yaml (``ui=window``); returns what it measured
    (``record``: with every face's per-frame probabilities, `Stats.streams`)."""
    stats = Stats(record=record)
    if cfg.get("list_cameras"):
        list_cameras_of(cfg)
        return stats
    log_path, record = cfg.log.path if cfg.log.enabled else None, cfg.record
    if log_path and record and Path(log_path).expanduser().resolve() == Path(record).expanduser().resolve():
        raise UserError(
            f"log.path={log_path} and record={record} name the same file: the CSV log and the video each need their "
            f"own. Name another file for one of them, e.g. record=out.mp4."
        )
    display, timer = _display(cfg), time.perf_counter
    predictor, detector, source = _load(cfg)
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        recorder = _recorder(cfg, source, stack)
        log_path = (
            new_file(cfg.log.path or run_dir() / "faces.csv", "log.path", "faces.csv") if cfg.log.enabled else None
        )
        model = resolve_ckpt(cfg.get("ckpt")).name
        pipeline = Pipeline.from_config(
            cfg, predictor, detector, log_path, model, popups=display and cfg.reactions.popups
        )
        stack.enter_context(contextlib.closing(pipeline))
        window = stack.enter_context(contextlib.closing(Window(str(cfg.overlay.window)))) if display else None
        stats.csv, stats.video = str(pipeline.log.path) if pipeline.log else "", str(recorder.path) if recorder else ""
        log.info("%s: %s -> %s", source.description, cfg.ckpt or "the bundled model", stats.csv or "(no log)")
        reader = read_ahead(source, pipeline.detect, bool(cfg.pipeline), predictor.inputs, predictor.run)
        frames = stack.enter_context(contextlib.closing(reader))
        stop = stack.enter_context(_sigterm_stops())
        pace = 1.0 / source.fps if cfg.pace and source.fps else 0.0
        draw = display or recorder is not None or bool(cfg.overlay.headless_draw)
        names, show_fps, bars, max_frames = pipeline.class_names, cfg.overlay.fps, cfg.overlay.bars, cfg.max_frames
        try:
            for captured in frames:
                frame = captured.frame
                result = pipeline.step(frame, captured.time, captured.detections, captured.inputs, probs=captured.probs)
                t_draw = timer()
                if draw:
                    overlay.draw(frame, result.faces, names, stats.fps if show_fps else None, bars)
                t_show = timer()
                for label in (face.reaction for face in result.faces if face.reaction):
                    pipeline.reactions.play(label)
                if recorder is not None:
                    recorder.write(frame)
                wait = max(0.0, pace - (timer() - stats.last))
                if window is not None and not window.show(frame, wait):
                    break
                if window is None and wait:
                    time.sleep(wait)
                stats.add(captured, result, draw=t_show - t_draw, show=timer() - t_show)
                if stop.is_set() or stats.frames == max_frames:
                    break
        except KeyboardInterrupt:
            log.info("interrupted: stopping")
        stats.wall_s = time.monotonic() - pipeline.t_start
    print(stats.summary())
    return stats
