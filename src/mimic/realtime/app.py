"""``realtime.py``: the demo loop around the pipeline: read a frame, step the pipeline, draw, show or record.

`run` builds everything from a composed conf/realtime.yaml and the checkpoint alone. With ``pipeline=true`` the next
frame is read, its faces detected and cropped for the net on a worker thread while this one is classified and drawn
(`mimic.realtime.sources.read_ahead`). The loop stops at the end of a video or folder, after ``max_frames``, on ``q``
/ ESC, when the window is closed, on Ctrl-C or SIGTERM, and when a camera stops delivering frames; in every case the
CSV keeps every row written so far and the recording is closed properly. Nothing the user made is overwritten: a log
or recording whose path exists gets a new numbered name (`new_file`). Without a display the run goes headless.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mimic.errors import UserError
from mimic.faces import for_photos, load_detector
from mimic.io import new_file
from mimic.models.bundled import resolve_ckpt
from mimic.realtime import overlay
from mimic.realtime.pipeline import FrameResult, Pipeline
from mimic.realtime.sources import Captured, FrameSource, ImageFolderSource, list_cameras, open_source, read_ahead
from mimic.realtime.window import Recorder, Window, has_display, show_cameras

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "crop", "classify", "smooth", "log", "draw", "show")


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
    csv: str = ""  # the log's path
    video: str = ""  # the recording's path
    fps: float = 0.0  # moving average, for the overlay
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.perf_counter)
    labels: dict[int, tuple[str, str]] = field(default_factory=dict)  # face id -> last (raw, shown) label
    record: bool = False  # keep every face's per-frame probabilities (benchmarks; grows with the run, so off live)
    streams: dict[int, tuple[list[float], list[Any]]] = field(default_factory=dict)  # id -> (media times, probs)

    def add(self, captured: Captured, result: FrameResult, **seconds: float) -> None:
        """Count a processed frame; ``seconds``: the front-end's own stages."""
        now = time.perf_counter()
        stages = {"decode": captured.decode_s, "detect": captured.detect_s, **result.seconds, **seconds}
        if captured.crop_s is not None:
            stages["crop"] = captured.crop_s
        for name, value in stages.items():
            self.stages[name].append(value)
        if self.frames:
            self.loop.append(now - self.last)
            rate = 1 / max(1e-6, now - self.last)
            self.fps = 0.9 * self.fps + 0.1 * rate if self.fps else rate
        else:
            log.info("first frame processed %.2f s after the app started", time.monotonic() - self.started)
        self.last = now
        self.frames += 1
        self.rows += len(result.faces)
        self.media_s = result.time
        for face in result.faces:
            raw, shown = self.labels.get(face.id, (face.raw_label, face.label))
            self.switches_raw += raw != face.raw_label
            self.switches_shown += shown != face.label
            self.labels[face.id] = (face.raw_label, face.label)
            if self.record:
                times, probs = self.streams.setdefault(face.id, ([], []))
                times.append(result.time)
                probs.append(face.probs)

    def summary(self) -> str:
        fps = self.frames / self.wall_s if self.wall_s else 0.0
        where = (f" in {self.csv}" if self.csv else "") + (f"; video in {self.video}" if self.video else "")
        return f"{self.frames} frames in {self.wall_s:.1f} s ({fps:.1f} frames/s), {self.rows} face rows{where}"


def _display(cfg: DictConfig) -> bool:
    if not cfg.display:
        return False
    if has_display():
        return True
    log.warning(
        "no display ($DISPLAY and $WAYLAND_DISPLAY are unset): running headless, as with display=false "
        "(no window, no reaction pop-ups)"
    )
    return False


def _list_cameras(cfg: DictConfig) -> None:
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


def load_predictor(cfg: DictConfig, ckpt: str | Path | None = None) -> Any:
    """The predictor of the model file ``ckpt`` (default: the run's ``ckpt=``) with the run's predictor settings."""
    from mimic.realtime.predictor import Predictor

    p, ckpt = cfg.predictor, resolve_ckpt(ckpt or cfg.get("ckpt"))
    return Predictor(ckpt, cfg.threads, p.tta_flip, p.calibrated, p.get("backend", "torch"))


def _load(cfg: DictConfig) -> tuple[Any, Any, FrameSource]:
    """Predictor, detector and source; torch and the model load on a thread while the camera opens."""
    if cfg.get("cv_threads") is not None:
        cv2.setNumThreads(int(cfg.cv_threads))
    with ThreadPoolExecutor(1, thread_name_prefix="mimic-load") as pool:
        loading = pool.submit(load_predictor, cfg)
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


def _build(node: DictConfig, **kwargs: Any) -> Any:
    """The object of a config block with a ``_target_`` and an ``enabled`` switch (not an argument). ``kwargs`` (the
    model's class names, file names) go to the constructor as Python values after the config is built: never merged
    into the config, where OmegaConf would resolve them and Hydra instantiate what they name."""
    make = instantiate({k: v for k, v in node.items() if k != "enabled"}, _partial_=True, _convert_="all")
    return make(**kwargs)


def _run_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not running under @hydra.main (tests, benchmark): make our own run folder
        return Path("outputs") / "realtime" / "runs" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")


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


def _pipeline(cfg: DictConfig, predictor: Any, detector: Any, display: bool, stack: contextlib.ExitStack) -> Pipeline:
    """The pipeline with its CSV log and reactions, which ``stack`` closes."""
    names, r = predictor.class_names, cfg.reactions
    csv = reactions = None
    if cfg.log.enabled:
        path = new_file(cfg.log.path or _run_dir() / "faces.csv", "log.path", "faces.csv")
        model = resolve_ckpt(cfg.get("ckpt")).name
        csv = stack.enter_context(contextlib.closing(_build(cfg.log, path=path, class_names=names, model=model)))
    if r.enabled and (display and r.popups or r.sound):
        reactions = stack.enter_context(contextlib.closing(_build(r, class_names=names, popups=display and r.popups)))
    return Pipeline.from_config(cfg, predictor, detector, reactions, csv)


def _recorder(cfg: DictConfig, source: FrameSource, stack: contextlib.ExitStack) -> Recorder | None:
    if not cfg.record:
        return None
    return stack.enter_context(contextlib.closing(Recorder(new_file(cfg.record, "record", "realtime.mp4"), source.fps)))


def run(cfg: DictConfig, record: bool = False) -> Stats:
    """Run the app from a composed conf/realtime.yaml; returns what it measured (``record``: with every face's
    per-frame probabilities, `Stats.streams`)."""
    stats = Stats(record=record)
    if cfg.get("list_cameras"):
        _list_cameras(cfg)
        return stats
    if cfg.get("ui") and cfg.ui.name == "web":
        from mimic.realtime.web import serve

        serve(cfg)
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
        pipeline = _pipeline(cfg, predictor, detector, display, stack)
        window = stack.enter_context(contextlib.closing(Window(str(cfg.overlay.window)))) if display else None
        stats.csv, stats.video = str(pipeline.log.path) if pipeline.log else "", str(recorder.path) if recorder else ""
        log.info("%s: %s -> %s", source.description, cfg.ckpt or "the bundled model", stats.csv or "(no log)")
        reader = read_ahead(source, pipeline.detect, bool(cfg.pipeline), predictor.inputs)
        frames = stack.enter_context(contextlib.closing(reader))
        stop = stack.enter_context(_sigterm_stops())
        pace = 1.0 / source.fps if cfg.pace and source.fps else 0.0
        draw = display or recorder is not None or bool(cfg.overlay.headless_draw)
        names, show_fps, bars, max_frames = pipeline.class_names, cfg.overlay.fps, cfg.overlay.bars, cfg.max_frames
        try:
            for captured in frames:
                frame = captured.frame
                result = pipeline.step(frame, captured.time, captured.detections, captured.inputs)
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
