"""The realtime app's per-frame work, apart from any window: a frame in, a plain `FrameResult` out.

`Pipeline.step(frame, t)` finds the faces (with its detector, or takes the ones given), crops them for the net (or
takes the crops given), tracks them, classifies them in one batch, smooths each face's probabilities and label,
decides which reactions fire and writes the frame's CSV rows. Front-ends render the result: the OpenCV window and the
recorder (`mimic.realtime.window`, driven by `mimic.realtime.app.run`) or a web page. A pipeline holds the state of
one stream and nothing global, so a server runs one per connection; `Pipeline.from_config` builds one from
conf/realtime.yaml and a predictor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from mimic.errors import UserError
from mimic.faces import Detection, FaceDetector, load_detector
from mimic.realtime.csvlog import CsvLog
from mimic.realtime.smoothing import LabelSmoother
from mimic.realtime.tracker import IoUTracker

if TYPE_CHECKING:
    from mimic.realtime.reactions import Reactions


@dataclass
class Face:
    """One face in one frame: its id (kept across frames), box and detector score, the model's probabilities for this
    frame (class order) with their top class, the smoothed probabilities with the shown label, and the reaction that
    fired for it, if any."""

    id: int
    box: tuple[int, int, int, int]
    score: float
    probs: np.ndarray
    raw_label: str
    raw_conf: float
    smoothed: np.ndarray
    label: str
    conf: float
    reaction: str | None = None


@dataclass
class FrameResult:
    """What a pipeline made of one frame: ``index`` counts its frames from 0, ``time`` is media seconds, ``timestamp``
    the wall clock (ISO 8601), ``mono_s`` seconds since the pipeline started; ``seconds`` per stage it ran."""

    index: int
    time: float
    timestamp: str
    mono_s: float
    faces: list[Face]
    seconds: dict[str, float] = field(default_factory=dict)


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
        reactions: Reactions | None = None,
        log: CsvLog | None = None,
    ) -> Pipeline:
        """From a composed conf/realtime.yaml; the detector is built from ``cfg.detector`` unless given."""
        detector = detector or load_detector(cfg.detector)
        tracker, smoother = instantiate(cfg.tracker), instantiate(cfg.smoothing)
        return cls(predictor, detector, tracker, smoother, reactions, log, cfg.faces, cfg.max_faces, cfg.detect_every)

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
    ) -> FrameResult:
        """Process one BGR frame at media time ``t`` (seconds); ``detections``: its faces, found elsewhere, and
        ``inputs``: the net's input for them (`Predictor.inputs`), made elsewhere (a reader thread)."""
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
        tracks, ended = self.tracker.update(detections)
        for face_id in ended:
            self.smoothers.pop(face_id, None)
            if self.reactions is not None:
                self.reactions.forget(face_id)
        probs = self.predictor.run(inputs)  # tracks are in detection order
        t2 = timer()
        faces = []
        for track, p in zip(tracks, probs, strict=True):
            if track.id not in self.smoothers:
                self.smoothers[track.id] = self.smoother()
            shown, smoothed = self.smoothers[track.id].update(p, t)
            raw, label = int(np.argmax(p)), self.class_names[shown]
            fired = self.reactions.update(track.id, label, t) if self.reactions is not None else None
            raw_label, conf = self.class_names[raw], float(smoothed[shown])
            faces.append(
                Face(track.id, track.box, track.score, p, raw_label, float(p[raw]), smoothed, label, conf, fired)
            )
        timestamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
        result = FrameResult(self.frames, t, timestamp, round(time.monotonic() - self.t_start, 4), faces, seconds)
        t3 = timer()
        if self.log is not None:
            self.log.write(result)
        seconds.update(classify=t2 - t1, smooth=t3 - t2, log=timer() - t3)
        self.frames += 1
        return result
