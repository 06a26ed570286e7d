"""What every face detector shares: a frame in, `Detection`s (boxes, scores, landmarks) out.

- ``Detection(box=(x, y, w, h), score, landmarks)``: box in frame pixels (ints); five landmarks from YuNet, None from
  Haar; score is "higher is surer", in [0, 1] for YuNet and the number of merged neighbour windows for Haar (so not
  comparable across detectors).
- `FaceDetector`: the interface (``detect(frame) -> list[Detection]`` and a ``config``); `largest_face` picks the face
  to use, `for_photos` sets a video detector to scan every image in full.
- `FullEvery`, `downscale`, `to_gray`, `to_bgr`, `detector_config`: the pieces the detectors are built from.

The detectors: `mimic.yunet.YuNetDetector` (the default) and `mimic.haar.HaarDetector`; `mimic.detectors.load_detector`
makes one from its config in conf/detector/.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` (x, y, w, h) in frame pixels, the detector's confidence ``score`` and, from YuNet, five
    ``landmarks`` (x, y) in frame pixels in YuNet's order: the person's right eye (on the image's left side when the
    face looks at the camera), left eye, nose tip, right mouth corner, left mouth corner. None from Haar."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


class FaceDetector(Protocol):
    """Anything with ``detect(frame_bgr) -> list[Detection]`` (uint8 BGR or gray frame, boxes in its pixels) and a
    ``config`` (its class, settings and model file's sha256) that results cached from it are keyed on."""

    config: dict[str, Any]

    def detect(self, frame: np.ndarray) -> list[Detection]: ...


def for_photos(detector: FaceDetector) -> FaceDetector:
    """``detector`` set to scan every image in full (``full_every=1``): for unrelated photos, where a search near the
    last image's faces would look for faces that are not there."""
    if getattr(detector, "full_every", 1) != 1:
        detector.full_every = 1
    return detector


def for_stream(detector: FaceDetector) -> FaceDetector:
    """A detector for another stream of frames that shares ``detector``'s model (a net is loaded once, however many
    streams): a copy that knows nothing of the frames before. The copies must run on one thread, as the web server's
    connections do: a model is not thread-safe."""
    twin = copy.copy(detector)
    if isinstance(twin, FullEvery):
        twin.forget()
    return twin


def largest_face(detections: Sequence[Detection]) -> Detection | None:
    """The detection with the largest box (ties: the higher score), or None when there is none."""
    return max(detections, key=lambda d: (d.area, d.score), default=None)


def downscale(frame: np.ndarray, max_width: int | None, max_side: int | None = None) -> tuple[np.ndarray, float]:
    """``frame`` shrunk to at most ``max_width`` pixels wide and ``max_side`` pixels on its longer side, and the
    factor that maps its pixels back."""
    h, w = frame.shape[:2]
    scale = min(1.0, max_width / w if max_width else 1.0, max_side / max(h, w) if max_side else 1.0)
    if scale >= 1.0:
        return frame, 1.0
    width = max(1, round(w * scale))
    small = cv2.resize(frame, (width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, w / width


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A BGR, BGRA or gray frame as gray."""
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """A BGR, BGRA or gray frame as BGR."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return frame if frame.shape[2] == 3 else cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)


class FullEvery:
    """``full_every``, the detectors' shortcut for video: only every N-th call (and any call that knows no face or
    loses one) scans the whole frame (``_full``); the calls between look only near the faces found on the call
    before (``_near``)."""

    full_every: int
    _calls: int
    _last: list[Detection]

    def forget(self) -> None:
        """Know nothing of the frames before: the next call scans in full (a new stream of frames)."""
        self._calls, self._last = 0, []

    def detect(self, frame: np.ndarray) -> list[Detection]:
        self._calls += 1
        if self.full_every > 1 and self._last and self._calls % self.full_every:
            found = self._near(frame, self._last)
            if len(found) == len(self._last):
                self._last = found
                return found
        self._last = self._full(frame)
        return self._last


def detector_config(detector: object, keys: str) -> dict[str, Any]:
    """A detector's ``config``: its class and its attributes named in ``keys`` (its settings, its model's sha256)."""
    cls = type(detector)
    return {"_target_": f"{cls.__module__}.{cls.__name__}", **{k: getattr(detector, k) for k in keys.split()}}
