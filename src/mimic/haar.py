"""OpenCV's Haar cascade face detector: boxes without landmarks, scored by the number of merged neighbour windows.

The cascade XML ships with opencv-python (works offline). Its defaults suit a webcam at arm's length (faces a sixth to
all of the frame's height); conf/detector/haar.yaml sets ``full_every`` for video. YuNet (`mimic.yunet`) is the
default and finds more faces; Haar is the fallback that needs no model file of mimic's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mimic.errors import UserError
from mimic.faces import Detection, FullEvery, detector_config, downscale, to_gray
from mimic.io import sha256_file


class HaarDetector(FullEvery):
    """OpenCV Haar cascade on a downscaled grayscale frame. ``cascade``: a file name in ``cv2.data.haarcascades``
    or a path. ``min_face`` / ``max_face``: face size limits as fractions of the frame's shorter side.

    ``full_every``: for video, scan the whole frame only on every N-th call and, in between, look only around the
    faces found on the previous call, at sizes near theirs (several times cheaper; a face entering the picture is
    found at the next full scan). Any call that finds nothing near the known faces scans in full. 1 makes every call a
    full, independent scan: what image-by-image users want (`mimic.faces.for_photos` sets it)."""

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.2,
        min_neighbors: int = 4,
        min_face: float = 0.15,
        max_face: float = 1.0,
        max_width: int | None = 320,
        equalize: bool = False,
        full_every: int = 4,
    ) -> None:
        path = Path(cascade).expanduser()
        if not path.is_file():
            path = Path(cv2.data.haarcascades) / cascade
        if not path.is_file():
            raise UserError(
                f"detector.cascade: Haar cascade {cascade!r} not found (looked in {cv2.data.haarcascades}). Use a "
                f"file name from that folder, e.g. haarcascade_frontalface_default.xml, or a path to an XML file."
            )
        try:  # OpenCV raises SystemError from the constructor on a file that is not XML
            self.classifier = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError):
            self.classifier = None
        if self.classifier is None or self.classifier.empty():
            raise UserError(
                f"detector.cascade: {path} is not a Haar cascade OpenCV can load. Use one of the XML files in "
                f"{cv2.data.haarcascades}, e.g. detector.cascade=haarcascade_frontalface_default.xml"
            )
        if scale_factor <= 1.0:
            raise UserError(f"detector.scale_factor must be above 1, got {scale_factor}")
        self.cascade, self.model_sha256 = str(path), sha256_file(path)
        self.scale_factor, self.min_neighbors = float(scale_factor), int(min_neighbors)
        self.min_face, self.max_face = float(min_face), float(max_face)
        self.max_width, self.equalize, self.full_every = max_width, equalize, int(full_every)
        self.forget()

    @property
    def config(self) -> dict[str, Any]:
        settings = "scale_factor min_neighbors min_face max_face max_width equalize full_every"
        return detector_config(self, f"cascade model_sha256 {settings}")

    def _run(self, gray: np.ndarray, lo: int, hi: int, scale_factor: float) -> tuple[np.ndarray, np.ndarray]:
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        return self.classifier.detectMultiScale2(
            gray, scaleFactor=scale_factor, minNeighbors=self.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi)
        )

    def _full(self, frame: np.ndarray) -> list[Detection]:
        small, back = downscale(to_gray(frame), self.max_width)
        side = min(small.shape[:2])
        lo = max(20, int(self.min_face * side))
        boxes, neighbours = self._run(small, lo, max(lo + 1, int(self.max_face * side)), self.scale_factor)
        out = [Detection(tuple(int(round(v * back)) for v in b), float(n)) for b, n in zip(boxes, neighbours)]  # noqa: B905
        return sorted(out, key=lambda d: -d.score)

    def _near(self, frame: np.ndarray, known: list[Detection]) -> list[Detection]:
        """Each known face searched for again in a region twice its size, shrunk so the face is about 40 pixels."""
        h, w = frame.shape[:2]
        out = []
        for d in known:
            x, y, bw, bh = d.box
            x0, y0 = max(0, x - bw // 2), max(0, y - bh // 2)
            x1, y1 = min(w, x + bw + bw // 2), min(h, y + bh + bh // 2)
            scale = min(1.0, 40 / max(1, bw))
            roi = to_gray(frame[y0:y1, x0:x1])
            if scale < 1.0:
                roi = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            size = bw * scale
            lo, hi = max(20, int(size / 1.3)), max(21, int(size * 1.3))
            boxes, neighbours = self._run(roi, lo, hi, 1.1)
            if len(boxes):
                i = int(np.argmax(neighbours))
                bx, by, bw2, bh2 = (float(v) / scale for v in boxes[i])
                box = (int(round(x0 + bx)), int(round(y0 + by)), int(round(bw2)), int(round(bh2)))
                out.append(Detection(box, float(neighbours[i])))
        return sorted(out, key=lambda d: -d.score)
