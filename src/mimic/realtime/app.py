"""The realtime loop: read a frame, find the faces, classify them in one batch, smooth, react, log, draw, show.

``realtime.py`` (Hydra, conf/realtime.yaml) calls `run`. Everything is rebuilt from the checkpoint alone. The loop
stops at the end of a video or folder, after ``max_frames``, on ``q`` / ESC, when the window is closed, on Ctrl-C or
SIGTERM, and when a camera stops delivering frames; in every case the CSV keeps every row written so far, the
recording is closed properly and the windows opened here are destroyed one by one (never ``destroyAllWindows``,
which can hang on macOS).
"""

from __future__ import annotations

import contextlib
import logging
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

from mimic.cli import UserError
from mimic.realtime import overlay
from mimic.realtime.csvlog import CsvLog, now_iso
from mimic.realtime.detectors import Detection, make_detector
from mimic.realtime.reactions import NEW_WINDOW_SETTLE_MS
from mimic.realtime.smoothing import LabelSmoother
from mimic.realtime.sources import FrameSource, list_cameras, open_source
from mimic.realtime.tracker import IoUTracker

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "classify", "smooth", "log", "draw", "show")


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


class App:
    """The parts of one run, and ``step(frame)`` for one frame. `run` builds it from the config."""

    def __init__(
        self,
        cfg: DictConfig,
        predictor: Any,
        detector: Any,
        source: FrameSource,
        csv: CsvLog | None,
        reactions: Any | None,
    ) -> None:
        self.predictor, self.detector, self.source = predictor, detector, source
        self.csv, self.reactions = csv, reactions
        self.class_names = predictor.class_names
        self.tracker = IoUTracker(cfg.tracker.iou_threshold, cfg.tracker.max_missed)
        # plain values: reading an OmegaConf node costs microseconds, too much to do per frame
        self.detect_every, self.max_faces = max(1, int(cfg.detect_every)), int(cfg.max_faces)
        self.largest = cfg.faces == "largest"
        self.smoothing = {k: cfg.smoothing[k] for k in ("alpha", "margin", "enabled")}
        self.show_fps, self.bars = bool(cfg.overlay.fps), bool(cfg.overlay.bars)
        self.draw_always = bool(cfg.overlay.get("headless_draw", False))
        self.faces: dict[int, _Face] = {}
        self.stats = Stats()
        self.detections: list[Detection] = []
        self.fps = 0.0
        self.t_start = time.monotonic()

    def step(self, frame: np.ndarray, annotate: bool) -> tuple[np.ndarray, list[overlay.FaceView]]:
        """Detect, classify, smooth, react, log (and draw on ``frame`` when ``annotate``) for the source's frame."""
        st, timer = self.stats.stages, time.perf_counter
        t0 = timer()
        if self.source.index % self.detect_every == 0:
            dets = self.detector.detect(frame)
            if self.largest:
                dets = dets and [max(dets, key=lambda d: (d.area, d.score))]
            self.detections = sorted(dets, key=lambda d: -d.area)[: self.max_faces]
        tracks, ended = self.tracker.update(self.detections)
        for face_id in ended:
            self.faces.pop(face_id, None)
            if self.reactions is not None:
                self.reactions.forget(face_id)
        t1 = timer()
        probs = self.predictor.predict(frame, [t.box for t in tracks])
        t2 = timer()
        rows, views = [], []
        index, media = self.source.index, self.source.time
        stamp, mono = now_iso(), round(time.monotonic() - self.t_start, 4)
        for track, p in zip(tracks, probs, strict=True):
            face = self.faces.get(track.id) or self.faces.setdefault(track.id, _Face(LabelSmoother(**self.smoothing)))
            shown, smoothed = face.smoother.update(p)
            raw = int(np.argmax(p))
            self.stats.switches_raw += face.raw is not None and raw != face.raw
            self.stats.switches_shown += face.shown is not None and shown != face.shown
            face.raw, face.shown = raw, shown
            label = self.class_names[shown]
            fired = self.reactions.update(track.id, label, media) if self.reactions is not None else None
            self.stats.reactions += fired is not None
            rows.append(
                [
                    stamp,
                    mono,
                    round(media, 4),
                    index,
                    track.id,
                    *track.box,
                    round(track.score, 4),
                    self.class_names[raw],
                    round(float(p[raw]), 4),
                    label,
                    round(float(smoothed[shown]), 4),
                    fired or "",
                    *(round(float(v), 4) for v in p),
                ]
            )
            views.append(overlay.FaceView(track.id, track.box, label, float(smoothed[shown]), smoothed))
        t3 = timer()
        if self.csv is not None:
            self.csv.write_frame(rows)
        self.stats.rows += len(rows)
        t4 = timer()
        if annotate or self.draw_always:
            overlay.draw(frame, views, self.class_names, self.fps if self.show_fps else None, self.bars)
        t5 = timer()
        for name, a, b in (
            ("detect", t0, t1),
            ("classify", t1, t2),
            ("smooth", t2, t3),
            ("log", t3, t4),
            ("draw", t4, t5),
        ):
            st[name].append(b - a)
        return frame, views


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

    ckpt = Path(str(cfg.ckpt)).expanduser()
    if not ckpt.is_file():
        raise UserError(f"checkpoint not found: {ckpt}. Pass the .ckpt file a training run printed on its last line.")

    def load_predictor():  # torch and the model load in the background while the camera opens
        from mimic.realtime.predictor import Predictor

        return Predictor(
            ckpt, threads=cfg.threads, tta_flip=cfg.predictor.tta_flip, calibrated=cfg.predictor.calibrated
        )

    detector = make_detector(OmegaConf.to_container(cfg.detector, resolve=True))
    with ThreadPoolExecutor(1, thread_name_prefix="mimic-load") as pool:
        loading = pool.submit(load_predictor)
        try:
            source = open_source(cfg.source, OmegaConf.to_container(cfg.camera, resolve=True), cfg.folder_fps)
        except BaseException:
            loading.result()  # a bad checkpoint is reported before a missing camera
            raise
        try:
            predictor = loading.result()
        except BaseException:
            source.close()
            raise
    run_dir = _run_dir()
    csv_path = Path(cfg.log.path).expanduser() if cfg.log.get("path") else run_dir / "faces.csv"
    csv = CsvLog(csv_path, predictor.class_names) if cfg.log.enabled else None
    reactions = None
    display = bool(cfg.display)
    r = cfg.reactions
    if r.enabled and (display and r.popups or r.sound):
        from mimic.realtime.assets import default_assets
        from mimic.realtime.reactions import Reactions

        reactions = Reactions(
            predictor.class_names,
            default_assets(predictor.class_names, r.assets_dir),
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
    app = App(cfg, predictor, detector, source, csv, reactions)
    stats = app.stats
    stats.csv = str(csv_path) if csv is not None else ""
    log.info("%s: %s -> %s", source.description, cfg.ckpt, stats.csv or "(no log)")

    stop = threading.Event()
    previous_handler = _stop_on_sigterm(stop)
    window, window_open = str(cfg.overlay.window), False
    recorder = Recorder(cfg.record, source.fps) if cfg.record else None
    pace = 1.0 / source.fps if cfg.pace and source.fps else 0.0
    max_frames = int(cfg.max_frames) if cfg.get("max_frames") else None
    timer = time.perf_counter
    last = timer()
    try:
        while not stop.is_set() and (max_frames is None or stats.frames < max_frames):
            t0 = timer()
            frame = source.read()
            if frame is None:
                break
            stats.stages["decode"].append(timer() - t0)
            frame, _ = app.step(frame, annotate=display or recorder is not None)
            t5 = timer()
            if recorder is not None:
                recorder.write(frame)
            if display:
                settle = 0
                if not window_open:  # resizable; sized once here (AUTOSIZE windows sometimes never paint under Xvfb)
                    cv2.namedWindow(window, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
                    cv2.resizeWindow(window, frame.shape[1], frame.shape[0])
                    window_open, settle = True, NEW_WINDOW_SETTLE_MS
                cv2.imshow(window, frame)
                if reactions is not None:
                    settle = max(settle, reactions.tick())
                wait = max(1, int((pace - (timer() - last)) * 1000)) if pace else 1
                key = cv2.waitKey(max(wait, settle)) & 0xFF
                if key in (ord("q"), ord("Q"), 27) or not window_visible(window):
                    window_open = window_visible(window)
                    break
            elif pace:
                time.sleep(max(0.0, pace - (timer() - last)))
            now = timer()
            stats.stages["show"].append(now - t5)
            stats.loop.append(now - last if stats.frames else now - t0)
            app.fps = 1.0 / max(1e-6, now - last) if app.fps == 0 else 0.9 * app.fps + 0.1 / max(1e-6, now - last)
            last = now
            if stats.frames == 0:
                stats.first_frame_s = time.monotonic() - t_run
                log.info("first frame processed %.2f s after the app started", stats.first_frame_s)
            stats.frames += 1
            stats.media_s = source.time
    except KeyboardInterrupt:
        log.info("interrupted: stopping")
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        stats.wall_s = time.monotonic() - app.t_start
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
