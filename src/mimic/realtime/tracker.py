"""A simple IoU tracker: every face keeps an id across frames, so it keeps its own smoothing and its own log rows.

Each frame, detections are matched greedily to the live tracks by box overlap (highest IoU first). A detection that
matches nothing starts a new track with the next id; a track unmatched for more than ``max_missed`` frames ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mimic.faces import Detection


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
    """Gives each detection the id of the live track it overlaps most (at least ``iou_threshold``)."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.tracks: dict[int, Track] = {}
        self.next_id = 0

    def update(self, detections: Sequence[Detection]) -> tuple[list[Track], list[int]]:
        """Match this frame's detections; returns (the tracks seen in this frame, in detection order, and the ids of
        tracks that just ended)."""
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
