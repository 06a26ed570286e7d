"""What the realtime pipeline makes of a frame, as plain data: `Face` and `FrameResult`, their CSV rows and JSON.

Every front-end renders these (the OpenCV window draws them, the web page gets their JSON) and the CSV log writes
their rows, so a face's fields are named and rounded in one place.

CSV columns: ``timestamp`` (ISO 8601, local time with offset), ``mono_s`` (monotonic seconds since the run started),
``media_s`` (the frame's time in the video, or since the camera opened), ``frame``, ``face_id``, ``x, y, w, h``,
``det_score``, ``raw_label``, ``raw_conf`` (the model's top class and probability for this frame), ``label``, ``conf``
(the smoothed, shown label and its smoothed probability), ``reaction`` (the class whose reaction fired on this row,
else empty), ``model`` (the model that made the row: its file's name; the web page's model name) and ``p_<class>`` for
every class (the model's probabilities for this frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# fmt: off
BASE_COLUMNS = [
    "timestamp", "mono_s", "media_s", "frame", "face_id", "x", "y", "w", "h",
    "det_score", "raw_label", "raw_conf", "label", "conf", "reaction", "model",
]
# fmt: on


def columns(class_names: Sequence[str]) -> list[str]:
    """The CSV log's header for a model with ``class_names``."""
    return [*BASE_COLUMNS, *(f"p_{c}" for c in class_names)]


def _probs(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 4) for name, v in zip(names, values, strict=True)}


@dataclass
class Face:
    """One face in one frame: its id (kept across frames), box, detector score and landmarks (YuNet's five points,
    None from Haar), the model's probabilities for this frame (class order) with their top class, the smoothed
    probabilities with the shown label, and the reaction that fired for it, if any."""

    id: int
    box: tuple[int, int, int, int]
    score: float
    landmarks: Sequence[tuple[float, float]] | None
    probs: np.ndarray
    raw_label: str
    raw_conf: float
    smoothed: np.ndarray
    label: str
    conf: float
    reaction: str | None = None

    def to_json(self, class_names: Sequence[str]) -> dict[str, Any]:
        return {
            "id": self.id,
            "box": [int(v) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]
            if self.landmarks
            else None,
            "label": self.label,
            "confidence": round(self.conf, 4),
            "raw_label": self.raw_label,
            "probs": _probs(class_names, self.probs),
            "smoothed": _probs(class_names, self.smoothed),
            "reaction": self.reaction,
        }


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

    def csv_rows(self, model: str = "") -> list[list]:
        """One row per face, in `columns` order; ``model`` names the model that made them."""
        when = [self.timestamp, self.mono_s, round(self.time, 4), self.index]
        return [
            [*when, f.id, *f.box, round(f.score, 4), f.raw_label, round(f.raw_conf, 4), f.label, round(f.conf, 4)]
            + [f.reaction or "", model, *(round(float(v), 4) for v in f.probs)]
            for f in self.faces
        ]
