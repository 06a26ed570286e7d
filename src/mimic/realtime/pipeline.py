"""The realtime app's per-frame work, apart from any window: a frame in, a plain `FrameResult` out.

`Pipeline.step(frame, t)` finds the faces (with its detector, or takes the ones given), crops them for the net (or
takes the crops given), tracks them, classifies them in one batch, smooths each face's probabilities and label,
decides which reactions fire and writes the frame's CSV rows. Front-ends render the result: the OpenCV window
(`mimic.realtime.window`) or the web page (`mimic.realtime.web`). A pipeline holds the state of one stream and nothing
global, so a server runs one per connection; `Pipeline.from_config` builds all of one, for either front-end, from
conf/realtime.yaml and a predictor (`predictor_from_config`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import Detection, FaceDetector
from mimic.models.predictor import Predictor, open_model
from mimic.realtime.csvlog import CsvLog
from mimic.realtime.reactions import Reactions
from mimic.realtime.result import Face, FrameResult
from mimic.realtime.smoothing import LabelSmoother
from mimic.realtime.tracker import IoUTracker


def predictor_from_config(cfg: DictConfig, ckpt: str | Path | None = None) -> Predictor:
    """The predictor of the model file ``ckpt`` (default: the run's ``ckpt=``, the bundled model when null) with the
    run's ``threads`` and ``predictor.*`` settings."""
    p = cfg.predictor
    return open_model(ckpt or cfg.get("ckpt"), cfg.threads, p.tta_flip, p.calibrated, p.backend)


def run_dir() -> Path:
    """This run's folder: Hydra's output folder under ``@hydra.main``, else (tests, benchmarks) a new
    ``outputs/realtime/runs/<time>``."""
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        return Path("outputs") / "realtime" / "runs" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")


def _build(node: DictConfig, **kwargs: Any) -> Any:
    """The object of a config block with a ``_target_`` and an ``enabled`` switch (not an argument). ``kwargs`` (the
    model's class names, file names) go to the constructor as Python values after the config is built: never merged
    into the config, where OmegaConf would resolve them and Hydra instantiate what they name."""
    make = instantiate({k: v for k, v in node.items() if k != "enabled"}, _partial_=True, _convert_="all")
    return make(**kwargs)


class Pipeline:
    """Tracker, per-face smoothers, reactions' timing and the CSV log of one stream of frames.

    ``detector``: finds the faces when `step` is given none (`detect` runs it on every ``detect_every``-th frame and
    keeps the last faces in between; ``faces="largest"`` keeps the largest face, else the ``max_faces`` largest).
    ``smoother``: makes one `LabelSmoother` per face. ``reactions`` and ``log`` are optional."""

    def __init__(
        self,
        predictor: Any,
        detector: FaceDetector | None = None,
        tracker: IoUTracker | None = None,
        smoother: Callable[[], LabelSmoother] = LabelSmoother,
        reactions: Reactions | None = None,
        log: CsvLog | None = None,
        faces: str = "all",
        max_faces: int = 8,
        detect_every: int = 1,
    ) -> None:
        if faces not in ("all", "largest"):
            raise UserError(f"faces must be 'all' or 'largest', got {faces!r}")
        self.predictor, self.detector, self.reactions, self.log = predictor, detector, reactions, log
        self.class_names: list[str] = list(predictor.class_names)
        self.tracker = tracker or IoUTracker()
        self.smoother = smoother
        smoother()  # a bad smoothing setting fails now, not at the first face
        self.keep = 1 if faces == "largest" else int(max_faces)
        self.detect_every = int(detect_every)
        self.smoothers: dict[int, LabelSmoother] = {}
        self.detections: list[Detection] = []
        self.detected = 0
        self.frames = 0
        self.t_start = time.monotonic()

    @classmethod
    def from_config(
        cls,
        cfg: DictConfig,
        predictor: Any,
        detector: FaceDetector | None = None,
        log_path: str | Path | None = None,
        model: str = "",
        popups: bool | None = None,
        players: bool = True,
    ) -> Pipeline:
        """All of a pipeline from a composed conf/realtime.yaml and a predictor: the detector (``cfg.detector``,
        unless given), tracker, smoothing, reactions and, when ``log_path`` is given, the CSV log there, its rows
        naming ``model``. Reactions are built when ``reactions.enabled`` and they show pictures (``popups``, default
        ``reactions.popups``) or play sounds; ``players=False``: the front-end shows and plays them itself (the web
        page). `close` closes the log and the reactions' players."""
        names, r = list(predictor.class_names), cfg.reactions
        popups = bool(r.popups) if popups is None else popups
        tracker, smoother = instantiate(cfg.tracker), instantiate(cfg.smoothing)
        reactions = log = None
        try:
            if r.enabled and (popups or r.sound):
                reactions = _build(r, class_names=names, popups=popups, players=players)
            if log_path is not None:
                log = _build(cfg.log, path=log_path, class_names=names, model=model)
            detector = detector or load_detector(cfg.detector)
            return cls(
                predictor, detector, tracker, smoother, reactions, log, cfg.faces, cfg.max_faces, cfg.detect_every
            )
        except BaseException:
            for part in (log, reactions):
                if part is not None:
                    part.close()
            raise

    def close(self) -> None:
        """Close the CSV log and the reactions' players (the pipeline processes no more frames)."""
        for part in (self.log, self.reactions):
            if part is not None:
                part.close()

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """The faces to track in ``frame``, largest first."""
        if self.detected % self.detect_every == 0:
            found = sorted(self.detector.detect(frame), key=lambda d: (-d.area, -d.score))
            self.detections = found[: self.keep]
        self.detected += 1
        return self.detections

    def step(
        self,
        frame: np.ndarray,
        t: float,
        detections: list[Detection] | None = None,
        inputs: np.ndarray | None = None,
        scale: float = 1.0,
        probs: np.ndarray | None = None,
    ) -> FrameResult:
        """Process one BGR frame at media time ``t`` (seconds); ``detections``: its faces, found elsewhere,
        ``inputs``: the net's input for them (`Predictor.inputs`), and ``probs``: their probabilities
        (`Predictor.run`), each made elsewhere (a reader thread) or else here. ``scale``: the
        frame is the one sent shrunk by this (the web server's large frames): boxes and landmarks are given, and
        logged, in the pixels of the frame sent."""
        timer = time.perf_counter
        seconds, t0 = {}, timer()
        if detections is None:
            detections, inputs = self.detect(frame), None
            seconds["detect"] = timer() - t0
        if inputs is None:
            t0 = timer()
            inputs = self.predictor.inputs(frame, detections)
            seconds["crop"] = timer() - t0
        t1 = timer()
        tracks, ended = self.tracker.update(detections, frame)  # every track ends at a scene cut
        for face_id in ended:
            self.smoothers.pop(face_id, None)
            if self.reactions is not None:
                self.reactions.forget(face_id)
        if probs is None:
            probs = self.predictor.run(inputs)  # tracks are in detection order
        t2 = timer()
        faces = []
        for track, detection, p in zip(tracks, detections, probs, strict=True):
            if track.id not in self.smoothers:
                self.smoothers[track.id] = self.smoother()
            shown, smoothed = self.smoothers[track.id].update(p, t)
            raw, label = int(np.argmax(p)), self.class_names[shown]
            fired = self.reactions.update(track.id, label, t) if self.reactions is not None else None
            raw_label, conf = self.class_names[raw], float(smoothed[shown])
            box, marks = track.box, getattr(detection, "landmarks", None)
            if scale != 1.0:
                box = tuple(round(v / scale) for v in box)
                marks = [(x / scale, y / scale) for x, y in marks] if marks else marks
            faces.append(
                Face(track.id, box, track.score, marks, p, raw_label, float(p[raw]), smoothed, label, conf, fired)
            )
        timestamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
        result = FrameResult(self.frames, t, timestamp, round(time.monotonic() - self.t_start, 4), faces, seconds)
        t3 = timer()
        if self.log is not None:
            self.log.write(result)
        seconds.update(classify=t2 - t1, smooth=t3 - t2, log=timer() - t3)
        self.frames += 1
        return result
