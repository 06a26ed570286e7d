"""The realtime loop: read a frame, find the faces, classify them in one batch, smooth, react, log, draw, show.

``realtime.py`` (Hydra, conf/realtime.yaml) calls `run`. Everything is rebuilt from the checkpoint alone. With
``pipeline=true`` a reader thread decodes and detects frame N+1 while the loop classifies and draws frame N (OpenCV
and PyTorch both release the GIL, so the two overlap on two cores). The loop
stops at the end of a video or folder, after ``max_frames``, on ``q`` / ESC, when the window is closed, on Ctrl-C or
SIGTERM, and when a camera stops delivering frames; in every case the CSV keeps every row written so far, the
recording is closed properly and the windows opened here are destroyed one by one (never ``destroyAllWindows``,
which can hang on macOS).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig, OmegaConf

from mimic.errors import UserError
from mimic.faces import Detection, make_detector
from mimic.realtime import overlay
from mimic.realtime.csvlog import CsvLog, now_iso
from mimic.realtime.smoothing import LabelSmoother
from mimic.realtime.sources import FrameSource, list_cameras, open_source
from mimic.realtime.tracker import IoUTracker

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "classify", "smooth", "log", "draw", "show")
_END = object()


@dataclass
class Stats:
    """What a run measured: per-stage seconds per frame, loop seconds per frame, label switches (flicker)."""

    frames: int = 0
    rows: int = 0
    media_s: float = 0.0
    wall_s: float = 0.0
    stages: dict[str, deque] = field(default_factory=lambda: {s: deque(maxlen=100_000) for s in STAGES})
    loop: deque = field(default_factory=lambda: deque(maxlen=100_000))
    switches_shown: int = 0  # changes of the shown (smoothed) label of a face
    switches_raw: int = 0  # changes of the raw argmax of a face: what the label would do without smoothing
    reactions: int = 0
    first_frame_s: float | None = None  # seconds from run() to the first processed frame
    csv: str = ""


class _Face:
    """Per face id: its smoother and the last raw / shown labels (for flicker counts)."""

    def __init__(self, smoother: LabelSmoother) -> None:
        self.smoother = smoother
        self.raw: int | None = None
        self.shown: int | None = None


def _run_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not running under @hydra.main (tests, benchmark): make our own run folder
        return Path("outputs") / "realtime" / "runs" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")


class Recorder:
    """Writes annotated frames to a video file (.mp4: mp4v, .avi: MJPG), created with the first frame's size."""

    def __init__(self, path: str, fps: float | None) -> None:
        self.path, self.fps = Path(path).expanduser(), float(fps or 30.0)
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


def show_cameras(cfg: DictConfig) -> list:
    """``list_cameras=true`` / ``--list-cameras``: print what each camera index gives and, with a display, show one
    frame of each labelled with its index until a key is pressed."""
    cams = list_cameras(int(cfg.camera.probe), cfg.camera.backend)
    if not cams:
        print(f"no camera opened at indices 0-{int(cfg.camera.probe) - 1}")
        return cams
    print("index  size        fps    backend   name")
    for c in cams:
        print(f"{c.index:<6} {f'{c.width}x{c.height}':<11} {c.fps:<6.1f} {c.backend:<9} {c.name}")
    if cfg.display:
        thumbs = []
        for c in cams:
            t = cv2.resize(c.frame, (320, int(320 * c.height / c.width)))
            cv2.putText(t, f"source={c.index}", (8, 28), overlay.FONT, 0.8, (0, 255, 255), 2, cv2.LINE_AA)
            thumbs.append(
                cv2.copyMakeBorder(t, 0, 240 - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) if t.shape[0] < 240 else t[:240]
            )
        name = "mimic cameras (any key closes)"
        cv2.imshow(name, np.hstack(thumbs))
        cv2.waitKey(0)
        cv2.destroyWindow(name)
        cv2.waitKey(1)
    return cams


@dataclass
class Captured:
    """A frame and its faces, as the reader hands them to the loop."""

    frame: np.ndarray
    index: int
    time: float  # media seconds
    detections: list[Detection]
    decode_s: float
    detect_s: float


class FrameReader:
    """Reads frames and detects their faces, on a thread (``threaded``) one frame ahead of the loop, or inline.

    ``detect_every``: run the detector on every N-th frame only and reuse its boxes in between. ``largest``: keep the
    largest face only; else the ``max_faces`` largest."""

    def __init__(
        self,
        source: FrameSource,
        detector: Any,
        detect_every: int = 1,
        largest: bool = False,
        max_faces: int = 8,
        threaded: bool = True,
    ) -> None:
        self.source, self.detector = source, detector
        self.detect_every, self.largest, self.max_faces = max(1, detect_every), largest, max_faces
        self.detections: list[Detection] = []
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="mimic-reader", daemon=True) if threaded else None
        if self._thread is not None:
            self._thread.start()

    def _capture(self) -> Captured | None:
        t0 = time.perf_counter()
        frame = self.source.read()
        if frame is None:
            return None
        t1 = time.perf_counter()
        if self.source.index % self.detect_every == 0:
            dets = self.detector.detect(frame)
            if self.largest:
                dets = [max(dets, key=lambda d: (d.area, d.score))] if dets else []
            self.detections = sorted(dets, key=lambda d: -d.area)[: self.max_faces]
        return Captured(frame, self.source.index, self.source.time, self.detections, t1 - t0, time.perf_counter() - t1)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._capture()
            except BaseException as e:  # handed to the loop, which raises it
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(_END if item is None else item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item is None or isinstance(item, BaseException):
                return

    def next(self) -> Captured | None:
        """The next frame with its faces, or None at the end of the source."""
        if self._thread is None:
            return self._capture()
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return None if item is _END else item

    def close(self) -> None:
        """Stop the reader thread (before the source is released: it may be inside ``read``)."""
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            self._thread.join(timeout=5)


class App:
    """The per-run state after detection: tracker, per-face smoothing, reactions, log; ``step`` does one frame."""

    def __init__(self, cfg: DictConfig, predictor: Any, csv: CsvLog | None, reactions: Any | None) -> None:
        self.predictor, self.csv, self.reactions = predictor, csv, reactions
        self.class_names = predictor.class_names
        self.tracker = IoUTracker(cfg.tracker.iou_threshold, cfg.tracker.max_missed)
        # plain values: reading an OmegaConf node costs microseconds, too much to do per frame
        self.smoothing = {k: cfg.smoothing[k] for k in ("alpha", "margin", "enabled")}
        self.show_fps, self.bars = bool(cfg.overlay.fps), bool(cfg.overlay.bars)
        self.draw_always = bool(cfg.overlay.get("headless_draw", False))
        self.faces: dict[int, _Face] = {}
        self.stats = Stats()
        self.fps = 0.0
        self.t_start = time.monotonic()

    def step(self, c: Captured, annotate: bool) -> np.ndarray:
        """Track, classify, smooth, react, log (and draw on the frame when ``annotate``); returns the frame."""
        st, timer = self.stats.stages, time.perf_counter
        t0 = timer()
        tracks, ended = self.tracker.update(c.detections)
        for face_id in ended:
            self.faces.pop(face_id, None)
            if self.reactions is not None:
                self.reactions.forget(face_id)
        probs = self.predictor.predict(c.frame, [t.box for t in tracks])
        t1 = timer()
        rows, views = [], []
        stamp, mono = now_iso(), round(time.monotonic() - self.t_start, 4)
        for track, p in zip(tracks, probs, strict=True):
            face = self.faces.get(track.id) or self.faces.setdefault(track.id, _Face(LabelSmoother(**self.smoothing)))
            shown, smoothed = face.smoother.update(p)
            raw = int(np.argmax(p))
            self.stats.switches_raw += face.raw is not None and raw != face.raw
            self.stats.switches_shown += face.shown is not None and shown != face.shown
            face.raw, face.shown = raw, shown
            label, conf = self.class_names[shown], float(smoothed[shown])
            fired = self.reactions.update(track.id, label, c.time) if self.reactions is not None else None
            self.stats.reactions += fired is not None
            row = [stamp, mono, round(c.time, 4), c.index, track.id, *track.box, round(track.score, 4)]
            row += [self.class_names[raw], round(float(p[raw]), 4), label, round(conf, 4), fired or ""]
            rows.append(row + [round(float(v), 4) for v in p])
            views.append(overlay.FaceView(track.id, track.box, label, conf, smoothed))
        t2 = timer()
        if self.csv is not None:
            self.csv.write_frame(rows)
        self.stats.rows += len(rows)
        t3 = timer()
        if annotate or self.draw_always:
            overlay.draw(c.frame, views, self.class_names, self.fps if self.show_fps else None, self.bars)
        t4 = timer()
        for name, value in (
            ("decode", c.decode_s),
            ("detect", c.detect_s),
            ("classify", t1 - t0),
            ("smooth", t2 - t1),
            ("log", t3 - t2),
            ("draw", t4 - t3),
        ):
            st[name].append(value)
        return c.frame


def window_visible(name: str) -> bool:
    """Whether the window is still open: closing it (or the GUI backend going away with it) ends the run."""
    try:
        return cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error:  # Qt drops its GUI receiver when the last window closes
        return False


def _stop_on_sigterm(stop: threading.Event) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: stop.set())


def _load(cfg: DictConfig) -> tuple[Any, Any, FrameSource]:
    """Predictor, detector and source; torch and the model load on a thread while the camera opens."""
    ckpt = Path(str(cfg.ckpt)).expanduser()
    if not ckpt.is_file():
        raise UserError(f"checkpoint not found: {ckpt}. Pass the .ckpt file a training run printed on its last line.")

    def load_predictor():
        from mimic.realtime.predictor import Predictor

        p = cfg.predictor
        return Predictor(ckpt, threads=cfg.threads, tta_flip=p.tta_flip, calibrated=p.calibrated)

    detector = make_detector(OmegaConf.to_container(cfg.detector, resolve=True))
    with ThreadPoolExecutor(1, thread_name_prefix="mimic-load") as pool:
        loading = pool.submit(load_predictor)
        try:
            source = open_source(cfg.source, OmegaConf.to_container(cfg.camera, resolve=True), cfg.folder_fps)
        except BaseException:
            loading.result()  # a bad checkpoint is reported before a missing camera
            raise
        try:
            return loading.result(), detector, source
        except BaseException:
            source.close()
            raise


def _reactions(cfg: DictConfig, class_names: list[str], display: bool) -> Any | None:
    r = cfg.reactions
    if not r.enabled or not (display and r.popups or r.sound):
        return None
    from mimic.realtime.assets import default_assets
    from mimic.realtime.reactions import Reactions

    return Reactions(
        class_names,
        default_assets(class_names, r.assets_dir),
        per_class=OmegaConf.to_container(r.per_class, resolve=True),
        skip=list(r.skip),
        hold_s=r.hold_s,
        cooldown_s=r.cooldown_s,
        popups=display and r.popups,
        popup_s=r.popup_s,
        popup_position=r.get("popup_position"),
        sound=r.sound,
        volume=r.volume,
    )


def run(cfg: DictConfig) -> Stats:
    """Run the app from a composed conf/realtime.yaml; returns what it measured."""
    t_run = time.monotonic()
    if cfg.get("list_cameras"):
        show_cameras(cfg)
        return Stats()
    if not cfg.get("ckpt"):
        raise UserError(
            "ckpt= is required: the .ckpt file a training run printed on its last line "
            "(python realtime.py ckpt=outputs/train/runs/<time>/checkpoints/<best>.ckpt)"
        )
    if cfg.faces not in ("all", "largest"):
        raise UserError(f"faces must be 'all' or 'largest', got {cfg.faces!r}")
    if cfg.get("cv_threads") is not None:
        cv2.setNumThreads(int(cfg.cv_threads))

    predictor, detector, source = _load(cfg)
    display = bool(cfg.display)
    csv_path = Path(cfg.log.path).expanduser() if cfg.log.get("path") else _run_dir() / "faces.csv"
    csv = CsvLog(csv_path, predictor.class_names) if cfg.log.enabled else None
    reactions = _reactions(cfg, predictor.class_names, display)
    app = App(cfg, predictor, csv, reactions)
    stats = app.stats
    stats.csv = str(csv_path) if csv is not None else ""
    log.info("%s: %s -> %s", source.description, cfg.ckpt, stats.csv or "(no log)")

    stop = threading.Event()
    previous_handler = _stop_on_sigterm(stop)
    window, window_open = str(cfg.overlay.window), False
    recorder = Recorder(cfg.record, source.fps) if cfg.record else None
    pace = 1.0 / source.fps if cfg.pace and source.fps else 0.0
    max_frames = int(cfg.max_frames) if cfg.get("max_frames") else None
    reader = FrameReader(
        source, detector, int(cfg.detect_every), cfg.faces == "largest", int(cfg.max_faces), threaded=bool(cfg.pipeline)
    )
    timer = time.perf_counter
    last = timer()
    try:
        while not stop.is_set() and (max_frames is None or stats.frames < max_frames):
            captured = reader.next()
            if captured is None:
                break
            frame = app.step(captured, annotate=display or recorder is not None)
            t_shown = timer()
            if recorder is not None:
                recorder.write(frame)
            if display:
                settle = 0
                if not window_open:  # resizable, sized to the frame once
                    cv2.namedWindow(window, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
                    cv2.resizeWindow(window, frame.shape[1], frame.shape[0])
                    # let the GUI map, size and paint the new window before the loop keeps it busy: Qt (xcb, no
                    # window manager) was seen to never paint a window whose first events waited too long
                    window_open, settle = True, 300
                cv2.imshow(window, frame)
                wait = max(1, int((pace - (timer() - last)) * 1000)) if pace else 1
                key = cv2.waitKey(max(wait, settle)) & 0xFF
                if key in (ord("q"), ord("Q"), 27) or not window_visible(window):
                    window_open = window_visible(window)
                    break
            elif pace:
                time.sleep(max(0.0, pace - (timer() - last)))
            now = timer()
            stats.stages["show"].append(now - t_shown)
            if stats.frames:
                stats.loop.append(now - last)
                app.fps = 0.9 * app.fps + 0.1 / max(1e-6, now - last) if app.fps else 1.0 / max(1e-6, now - last)
            else:
                stats.first_frame_s = time.monotonic() - t_run
                log.info("first frame processed %.2f s after the app started", stats.first_frame_s)
            last = now
            stats.frames += 1
            stats.media_s = captured.time
    except KeyboardInterrupt:
        log.info("interrupted: stopping")
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        stats.wall_s = time.monotonic() - app.t_start
        reader.close()
        source.close()
        if recorder is not None:
            recorder.close()
        if csv is not None:
            csv.close()
        if reactions is not None:
            reactions.close()
        if window_open:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(window)
        if display:
            for _ in range(3):  # let the GUI backend process the destroy events (macOS needs this to not hang)
                with contextlib.suppress(cv2.error):
                    cv2.waitKey(1)
    fps = stats.frames / stats.wall_s if stats.wall_s else 0.0
    print(
        f"{stats.frames} frames in {stats.wall_s:.1f} s ({fps:.1f} frames/s), {stats.rows} face rows"
        + (f" in {stats.csv}" if stats.csv else "")
        + (f"; video in {cfg.record}" if cfg.record else "")
    )
    return stats
