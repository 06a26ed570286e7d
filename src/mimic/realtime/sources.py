"""Where frames come from: a webcam by index, a video file, or a folder of images, behind one ``read()``.

`open_source` picks the kind from the ``source`` setting (an int or a digit string is a camera index, a folder is an
image folder, anything else a video file). ``read()`` returns the next BGR frame, or None when the source has ended;
a camera that stops delivering frames is retried a few times first. `list_cameras` probes indices so a user can
see which camera is which (a laptop often has a phone's camera at index 0). `read_ahead` reads and detects the next
frame on a worker thread while the caller works on this one.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mimic.errors import UserError
from mimic.faces import Detection
from mimic.io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (a missing camera index prints several) inside the block."""
    before = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(before)


def _backend(name: str | None) -> int:
    if not name:
        return cv2.CAP_ANY
    value = getattr(cv2, f"CAP_{str(name).upper()}", None)
    if value is None:
        raise UserError(f"camera.backend: unknown OpenCV backend {name!r} (e.g. v4l2, avfoundation, dshow, msmf)")
    return int(value)


class FrameSource:
    """Base of the three sources: ``read()`` -> BGR frame or None at the end; ``time`` is the last frame's time in
    the media (seconds: video position, or seconds since the camera opened); ``index`` counts frames read."""

    description = "frames"
    fps: float | None = None
    live = False  # a camera: frames come at its pace, and a frame read ahead is a frame shown late
    index, time = -1, 0.0

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _CaptureSource(FrameSource):
    """Frames from ``cv2.VideoCapture``: a failed read is retried ``retries`` times, ``retry_wait`` s apart."""

    retries, retry_wait = 3, 0.0

    def _grab(self) -> np.ndarray | None:
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_wait)
            ok, frame = self.cap.read()
            if ok:
                return frame
        return None

    def close(self) -> None:
        self.cap.release()


class CameraSource(_CaptureSource):
    """A webcam by index. Opening checks that a frame actually arrives; a camera that stops mid-run is retried
    ``retries`` times, ``retry_wait`` seconds apart, before ``read()`` reports the end."""

    live = True

    def __init__(
        self,
        index: int = 0,
        width: int | None = 640,
        height: int | None = 480,
        fps: float | None = None,
        backend: str | None = None,
        retries: int = 5,
        retry_wait: float = 0.2,
        probe: int = 10,
    ) -> None:
        self.retries, self.retry_wait = retries, retry_wait
        self.description = f"camera {index}"
        with quiet_opencv():
            self.cap = cv2.VideoCapture(int(index), _backend(backend))
            wanted = {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height, cv2.CAP_PROP_FPS: fps}
            for prop, value in wanted.items():
                if value:
                    self.cap.set(prop, float(value))
            opened, self._first = self.cap.read()  # (False, None) from a camera that did not open
        if not opened:
            self.cap.release()
            others = [c.index for c in list_cameras(probe) if c.index != index] if probe else []
            raise UserError(
                f"could not open camera {index} (indices tried: {index}"
                + (f", then 0-{probe - 1} to look for others" if probe else "")
                + "). "
                + (
                    f"Cameras that do open: {', '.join(map(str, others))}; pass source=<index>. "
                    if others
                    else "No camera opened at any of them: check it is connected and that this program may use it. "
                )
                + "`python realtime.py --list-cameras` lists them; source= also takes a video file or image folder."
            )
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or None
        self._start = time.monotonic()

    def read(self) -> np.ndarray | None:
        frame, self._first = self._first, None
        if frame is None:
            frame = self._grab()
        if frame is None:
            log.warning("%s stopped delivering frames (%d retries): stopping", self.description, self.retries)
            return None
        self.index += 1
        self.time = time.monotonic() - self._start
        return frame


class VideoSource(_CaptureSource):
    """A video file, read to its end (an unreadable frame is retried 3 times, then treated as the end)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.description = str(self.path)
        if not self.path.is_file():
            raise UserError(
                f"source: no such file or folder: {self.path} (source= takes a camera index, a video "
                f"file or a folder of images)"
            )
        with quiet_opencv():
            self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            raise UserError(f"source: OpenCV cannot read {self.path} as a video")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or None

    def read(self) -> np.ndarray | None:
        frame = self._grab()
        if frame is not None:
            self.index += 1
            self.time = self.index / self.fps if self.fps else self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
        return frame


class ImageFolderSource(FrameSource):
    """The images of a folder in name order, one frame each; ``fps`` sets their media time. Unreadable files are
    skipped with a warning."""

    def __init__(self, path: str | Path, fps: float = 1.0) -> None:
        self.path = Path(path).expanduser()
        self.description = f"images in {self.path}"
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise UserError(f"source: {self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps = fps
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                log.warning("skipping %s: not an image OpenCV can read", path)
                continue
            self.index += 1
            self.time = self.index / self.fps
            return frame
        return None


def open_source(source: int | str | Path, camera: dict | None = None, folder_fps: float = 1.0) -> FrameSource:
    """A camera index (int or digit string), a video file or an image folder -> its `FrameSource`."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return CameraSource(int(source), **(camera or {}))
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps=folder_fps)
    return VideoSource(path)


@dataclass(frozen=True)
class CameraInfo:
    """What `list_cameras` found at one index."""

    index: int
    width: int
    height: int
    fps: float
    backend: str
    name: str
    frame: np.ndarray


def _device_name(index: int) -> str:
    if sys.platform.startswith("linux"):
        name = Path(f"/sys/class/video4linux/video{index}/name")
        with contextlib.suppress(OSError):
            return name.read_text().strip()
    return ""


def list_cameras(max_index: int = 10, backend: str | None = None) -> list[CameraInfo]:
    """Every camera index below ``max_index`` that opens and delivers a frame, with its size, fps and name."""
    found = []
    with quiet_opencv():
        for index in range(max_index):
            if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
                continue  # opening a missing V4L2 device is slow and noisy
            cap = cv2.VideoCapture(index, _backend(backend))
            try:
                ok, frame = cap.read()
                if ok:
                    fps, backend, (h, w) = cap.get(cv2.CAP_PROP_FPS) or 0.0, cap.getBackendName(), frame.shape[:2]
                    found.append(CameraInfo(index, w, h, fps, backend, _device_name(index), frame))
            finally:
                cap.release()
    return found


FILE_READ_AHEAD = 4  # frames of a video file or folder read and detected ahead of the one being classified
# frames waiting for the caller before the reader thread classifies too: 2 rather than 1, so that a reader ahead for a
# moment (quick looks between full scans) keeps its time for the next scan (benchmark_analyze.py: int8 on the
# two-three clip 265 frames/s at 1, 280-320 at 2 or 3; float 145 at 1, 147-160 at 2 or 3)
BEHIND = 2


@dataclass
class Captured:
    """A frame as `read_ahead` hands it over: its media time, its faces, the net's input for them (None: not made),
    their probabilities when the reader thread classified them too (None: the caller classifies), and the seconds
    reading, detecting, cropping and classifying took."""

    frame: np.ndarray
    time: float
    detections: list[Detection]
    decode_s: float
    detect_s: float
    inputs: np.ndarray | None = None
    crop_s: float | None = None
    probs: np.ndarray | None = None
    classify_s: float | None = None


def read_ahead(
    source: FrameSource,
    detect: Callable[[np.ndarray], list[Detection]],
    ahead: bool = True,
    crop: Callable[[np.ndarray, list[Detection]], np.ndarray] | None = None,
    classify: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[Captured]:
    """The frames of ``source`` with their faces and, with ``crop`` (`Predictor.inputs`), the net's input for them,
    until it ends. With ``ahead``, frame N+1 (of a file or folder, up to N+`FILE_READ_AHEAD`) is read, detected and
    cropped on a worker thread while the caller classifies and draws frame N (OpenCV and onnxruntime release the
    GIL, so the two overlap on two cores); closing the iterator waits for those reads, so the source may be closed
    after it. A source is read on past its end by at most that many calls to ``read``, which keep returning None.

    ``classify`` (`Predictor.run`, with ``crop``): the worker thread also classifies a frame of a file or folder
    whenever `BEHIND` earlier ones are already waiting for the caller. The caller is then the slower of the two, and the
    worker would otherwise wait for it; so each thread takes what the other cannot, and both cores stay busy
    whichever stage is the heavier (a crowd's many faces to classify, or a full scan's detection). Frames still come
    out in order; the detector, which follows faces from frame to frame, still runs on the one worker thread."""
    steal = classify is not None and crop is not None and ahead and not source.live
    waiting = [0]  # frames captured and not yet taken by the caller
    lock = threading.Lock()

    def capture() -> Captured | None:
        t0 = time.perf_counter()
        frame = source.read()
        if frame is None:
            return None
        t1 = time.perf_counter()
        detections = detect(frame)
        t2 = time.perf_counter()
        if crop is None:
            return Captured(frame, source.time, detections, t1 - t0, t2 - t1)
        inputs = crop(frame, detections)
        t3 = time.perf_counter()
        captured = Captured(frame, source.time, detections, t1 - t0, t2 - t1, inputs, t3 - t2)
        with lock:
            behind, waiting[0] = waiting[0] >= BEHIND, waiting[0] + 1
        if steal and behind:
            captured.probs = classify(inputs)
            captured.classify_s = time.perf_counter() - t3
        return captured

    if not ahead:
        while (captured := capture()) is not None:
            yield captured
        return
    # a camera's next frame only; a file's next few, so that a slow detection (a full scan among quick looks) is
    # absorbed by the frames read before it rather than stalling the caller
    depth = 1 if source.live else FILE_READ_AHEAD
    with ThreadPoolExecutor(1, thread_name_prefix="mimic-reader") as pool:
        pending = collections.deque(pool.submit(capture) for _ in range(depth))
        while (captured := pending.popleft().result()) is not None:
            with lock:
                waiting[0] -= 1
            pending.append(pool.submit(capture))
            yield captured
