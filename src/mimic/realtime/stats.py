"""What a realtime run measured: per-stage seconds per frame, loop time, frames per second and label switches
(flicker), for the overlay's frames/s, the run's last line and the benchmarks (`scripts/bench/benchmark_realtime.py`
reads every face's per-frame probabilities from `Stats.streams`)."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mimic.realtime.result import FrameResult
from mimic.realtime.sources import Captured

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
    classified_ahead: int = 0  # frames the reader thread classified (`read_ahead`), not the loop
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
        if captured.classify_s is not None:  # classified on the reader thread
            stages["classify"] = captured.classify_s
            self.classified_ahead += 1
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
