"""A simple IoU tracker: every face keeps an id across frames, so it keeps its own smoothing and its own log rows.

Each frame, detections are matched greedily to the live tracks by box overlap (highest IoU first). A detection that
matches nothing starts a new track with the next id; a track unmatched for more than ``max_missed`` frames ends. At a
scene cut (`SceneCuts`) every track ends, so an id never follows one person into the next shot and on to whoever
stands where they stood.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mimic.faces import Detection, to_gray

THUMB = (32, 18)  # SceneCuts compares frames at this size (width, height): a 640x360 frame's 20x20-pixel blocks
FLAT = 2.0  # grey levels: a thumbnail spread less than this (a black frame) has no structure to compare
REACH = 2  # SceneCuts: thumbnail pixels (40 px of a 640-wide frame) a thing may move between two frames


def _standard(a: np.ndarray) -> np.ndarray | None:
    """``a`` at zero mean and unit spread; None when it is flat (spread under `FLAT` grey levels)."""
    a = a - a.mean()
    spread = float(np.sqrt((a**2).mean()))
    return a / spread if spread >= FLAT else None


class SceneCuts:
    """Tells the cuts of a video from its frames: a cut is a frame whose small grey thumbnail, standardised to zero
    mean and unit spread, correlates with the previous frame's below ``threshold`` however the two are shifted
    against each other by up to `REACH` thumbnail pixels. A person or the camera moving, even fast and close, is
    found again a little further on; a change of brightness or contrast is taken out by the standardising; a fade or
    a dissolve changes the picture a little each frame; a cut replaces it. A flat frame (black, between a fade out
    and a fade in) is compared with nothing. A fraction of a millisecond a frame: the shifted comparisons run only
    when the frames differ."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self._last: np.ndarray | None = None

    def update(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` (BGR or grey) starts a new shot."""
        small = cv2.resize(to_gray(frame), THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
        last, self._last = self._last, (small if _standard(small) is not None else None)
        if last is None or self._last is None:
            return False
        return self._match(last, small) < self.threshold

    def _match(self, last: np.ndarray, now: np.ndarray) -> float:
        """The best correlation of ``now`` with ``last`` over the shifts within `REACH` (the unshifted one first:
        most frames match it at once)."""
        h, w = now.shape
        shifts = [(dy, dx) for dy in range(-REACH, REACH + 1) for dx in range(-REACH, REACH + 1)]
        best = -1.0
        for dy, dx in sorted(shifts, key=lambda s: abs(s[0]) + abs(s[1])):
            a = _standard(last[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)])
            b = _standard(now[max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)])
            if a is not None and b is not None:
                best = max(best, float((a * b).mean()))
            if best >= self.threshold:
                break
        return best


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


@dataclass(eq=False)
class Track:
    """A face followed over frames: its id, latest box and score, and how many frames it has gone unseen."""

    id: int
    box: tuple[int, int, int, int]
    score: float
    missed: int = 0


class IoUTracker:
    """Gives each detection the id of the live track it overlaps most (at least ``iou_threshold``); every track ends
    at a scene cut (`SceneCuts` with ``cut_correlation``; null: cuts are not looked for)."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10, cut_correlation: float | None = 0.5) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.cuts = SceneCuts(cut_correlation) if cut_correlation is not None else None
        self.tracks: dict[int, Track] = {}
        self.next_id, self.cut = 0, False

    def update(self, detections: Sequence[Detection], frame: np.ndarray | None = None) -> tuple[list[Track], list[int]]:
        """Match this frame's detections; returns (the tracks seen in this frame, in detection order, and the ids of
        tracks that just ended). ``frame``: the picture they were found in, for the scene cuts; ``cut`` then says
        whether it began a new shot."""
        cut_ended, self.cut = [], frame is not None and self.cuts is not None and self.cuts.update(frame)
        if self.cut:
            cut_ended, self.tracks = list(self.tracks), {}
        seen, ended = self._match(detections)
        return seen, cut_ended + ended

    def _match(self, detections: Sequence[Detection]) -> tuple[list[Track], list[int]]:
        pairs = sorted(
            ((iou(t.box, d.box), tid, i) for tid, t in self.tracks.items() for i, d in enumerate(detections)),
            reverse=True,
        )
        matched: dict[int, int] = {}  # detection index -> track id
        for overlap, tid, i in pairs:
            if overlap < self.iou_threshold:
                break
            if i not in matched and tid not in matched.values():
                matched[i] = tid
        seen = []
        for i, d in enumerate(detections):
            if i in matched:
                track = self.tracks[matched[i]]
                track.box, track.score, track.missed = d.box, d.score, 0
            else:
                track = self.tracks[self.next_id] = Track(self.next_id, d.box, d.score)
                self.next_id += 1
            seen.append(track)
        ended = []
        for track in [t for t in self.tracks.values() if t not in seen]:
            track.missed += 1
            if track.missed > self.max_missed:
                del self.tracks[track.id]
                ended.append(track.id)
        return seen, ended
