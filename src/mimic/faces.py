"""Face detectors behind one small interface: a frame in, boxes with scores out.

The public API, used by the realtime app, the capture script and the folder-dataset loader::

    from mimic.faces import load_detector, largest_face
    detector = load_detector("yunet")                     # conf/detector/yunet.yaml, or "haar", or such a config
    faces = detector.detect(frame_bgr)                    # list[Detection], best score first
    face = largest_face(faces)                            # Detection | None
    crop = mimic.preprocessing.crop_face(frame_bgr, face, spec)

- ``Detection(box=(x, y, w, h), score, landmarks)``: box in frame pixels (ints); five landmarks from YuNet, None from
  Haar; score is "higher is surer", in [0, 1] for YuNet and the number of merged neighbour windows for Haar (so not
  comparable across detectors).
- `HaarDetector`: OpenCV's Haar cascade (the XML ships with opencv-python: works offline). Its defaults suit a webcam
  at arm's length (faces a sixth to all of the frame's height); conf/detector/haar.yaml sets ``full_every`` for video.
- `YuNetDetector` (the default): OpenCV's YuNet CNN, more accurate than Haar; it also gives five landmarks. A
  full-resolution scan, and a second, enlarged look at the faces it is unsure of; in video
  (conf/detector/yunet.yaml's ``full_every``) a full scan every N-th frame and quick looks at the known faces between.
  Its ONNX file ships inside the package (`mimic.assets`), or is ``model_path``; the net runs on onnxruntime (about
  2.5 times faster) or through ``cv2.FaceDetectorYN``, with the same results (`mimic.yunet`).

Every detector has a ``config``: its class, every setting that shapes what it finds and its model file's sha256, the
key of results cached from it (the folder loader's face crops).
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from omegaconf import OmegaConf

from mimic.assets import YUNET_MODEL
from mimic.errors import UserError
from mimic.io import sha256_file
from mimic.settings import check_detector
from mimic.yunet import yunet_engine

DETECTOR_CONFIGS = Path(__file__).resolve().parent / "conf" / "detector"
# Where the bundled YUNET_MODEL came from, and its hash (checked by tests/test_faces.py).
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


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


def largest_face(detections: Sequence[Detection]) -> Detection | None:
    """The detection with the largest box (ties: the higher score), or None when there is none."""
    return max(detections, key=lambda d: (d.area, d.score), default=None)


def _downscale(frame: np.ndarray, max_width: int | None, max_side: int | None = None) -> tuple[np.ndarray, float]:
    """``frame`` shrunk to at most ``max_width`` pixels wide and ``max_side`` pixels on its longer side, and the
    factor that maps its pixels back."""
    h, w = frame.shape[:2]
    scale = min(1.0, max_width / w if max_width else 1.0, max_side / max(h, w) if max_side else 1.0)
    if scale >= 1.0:
        return frame, 1.0
    width = max(1, round(w * scale))
    small = cv2.resize(frame, (width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, w / width


def _to_gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return frame if frame.shape[2] == 3 else cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)


class _FullEvery:
    """``full_every``, the detectors' shortcut for video: only every N-th call (and any call that knows no face or
    loses one) scans the whole frame (``_full``); the calls between look only near the faces found on the call
    before (``_near``)."""

    full_every: int
    _calls: int
    _last: list[Detection]

    def detect(self, frame: np.ndarray) -> list[Detection]:
        self._calls += 1
        if self.full_every > 1 and self._last and self._calls % self.full_every:
            found = self._near(frame, self._last)
            if len(found) == len(self._last):
                self._last = found
                return found
        self._last = self._full(frame)
        return self._last


class HaarDetector(_FullEvery):
    """OpenCV Haar cascade on a downscaled grayscale frame. ``cascade``: a file name in ``cv2.data.haarcascades``
    or a path. ``min_face`` / ``max_face``: face size limits as fractions of the frame's shorter side.

    ``full_every``: for video, scan the whole frame only on every N-th call and, in between, look only around the
    faces found on the previous call, at sizes near theirs (several times cheaper; a face entering the picture is
    found at the next full scan). Any call that finds nothing near the known faces scans in full. 1 (the default)
    makes every call a full, independent scan: what image-by-image users (the capture script) want."""

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.2,
        min_neighbors: int = 4,
        min_face: float = 0.15,
        max_face: float = 1.0,
        max_width: int | None = 320,
        equalize: bool = False,
        full_every: int = 1,
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
        self._calls, self._last = 0, []

    @property
    def config(self) -> dict[str, Any]:
        settings = "scale_factor min_neighbors min_face max_face max_width equalize full_every"
        return _config(self, f"cascade model_sha256 {settings}")

    def _run(self, gray: np.ndarray, lo: int, hi: int, scale_factor: float) -> tuple[np.ndarray, np.ndarray]:
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        return self.classifier.detectMultiScale2(
            gray, scaleFactor=scale_factor, minNeighbors=self.min_neighbors, minSize=(lo, lo), maxSize=(hi, hi)
        )

    def _full(self, frame: np.ndarray) -> list[Detection]:
        small, back = _downscale(_to_gray(frame), self.max_width)
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
            roi = _to_gray(frame[y0:y1, x0:x1])
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


def _config(detector: object, keys: str) -> dict[str, Any]:
    """A detector's ``config``: its class and its attributes named in ``keys`` (its settings, its model's sha256)."""
    return {"_target_": f"{__name__}.{type(detector).__name__}", **{k: getattr(detector, k) for k in keys.split()}}


class YuNetDetector(_FullEvery):
    """OpenCV's YuNet face detector; boxes scored in [0, 1], with five landmarks. ``model_path``: its ONNX file;
    None: the one bundled with mimic (`mimic.assets`, no download).

    A scan runs YuNet on the frame shrunk to at most ``max_width`` pixels wide (None: full resolution) and at most
    ``max_side`` on its longer side, and keeps the faces scoring at least ``score_threshold``. YuNet misreads faces
    much over ~600 pixels (a portrait photo of 3000 pixels or more: parts of the face, a wrist, as faces of their
    own), so a larger photo is scanned shrunk (``scripts/benchmark_large_photos.py`` measures where).

    ``second_look``: each box scoring at least this but under ``score_threshold`` is looked at again (at most
    `MAX_LOOKS` a scan, best first): YuNet runs on a crop of `LOOK_CONTEXT` times its size around it, scaled so the
    face is ``look_size`` pixels, and the face found there is kept, with its own box and landmarks, when it scores at
    least ``look_threshold`` (None: no second looks).
    YuNet scores a face much higher when it is big in its input (FER2013's faces, and small or blurred ones in
    general, from under 0.3 to over 0.8 at 200 px), and in that close-up it scores background texture that resembles
    a face lower, so second looks find more faces with fewer false ones than a lower threshold.

    ``full_every``: as `HaarDetector`'s, for video: the calls between full scans (the above) look again only at the
    faces found on the call before, each in a quick look (`NEAR_SIZE`) or, failing that, a close one: several times
    cheaper than a scan, while faces are in view. A frame with no face known is scanned in full.

    ``engine``: what runs the net (`mimic.yunet.yunet_engine`): ``auto`` (onnxruntime when installed, else OpenCV),
    ``onnxruntime`` or ``opencv``; the faces found are the same. ``threads``: onnxruntime's threads (1: the live loop
    classifies on the other core; 0: one per core)."""

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 50,
        max_width: int | None = None,
        max_side: int | None = 2048,
        second_look: float | None = 0.1,
        look_size: int = 200,
        look_threshold: float = 0.5,
        full_every: int = 1,
        engine: str = "auto",
        threads: int = 1,
    ) -> None:
        path = Path(model_path).expanduser() if model_path else YUNET_MODEL
        if model_path and not path.is_file():
            raise UserError(
                f"detector.model_path: model file not found: {path}. Download a YuNet ONNX file ({YUNET_URL}) there, "
                f"or leave detector.model_path empty (null) for the one bundled with mimic."
            )
        if not path.is_file():
            raise UserError(
                f"the YuNet model file bundled with mimic is missing ({path}): reinstall mimic, or pass "
                f"detector.model_path=<file>, or use detector=haar."
            )
        self.model_path, self.model_sha256 = path, sha256_file(path)
        self.score_threshold, self.nms_threshold, self.top_k = float(score_threshold), float(nms_threshold), int(top_k)
        self.max_width, self.max_side, self.full_every = max_width, max_side, int(full_every)
        self.second_look = None if second_look is None else float(second_look)
        self.look_size, self.look_threshold = int(look_size), float(look_threshold)
        self._low = min(self.score_threshold, self.second_look if self.second_look is not None else 1.0)
        self.net = yunet_engine(engine, path, self.nms_threshold, self.top_k, threads)
        self._calls, self._last = 0, []

    @property
    def config(self) -> dict[str, Any]:
        settings = "score_threshold nms_threshold top_k max_width max_side second_look look_size look_threshold"
        settings += " full_every"
        return _config(self, f"model_sha256 {settings}")

    def _full(self, frame: np.ndarray) -> list[Detection]:
        frame = _to_bgr(frame)
        small, back = _downscale(frame, self.max_width, self.max_side)
        found = _detections(self.net.detect(small, self._low), back, (0.0, 0.0), frame.shape)
        sure = [d for d in found if d.score >= self.score_threshold]
        if self.second_look is not None:
            unsure = [d for d in found if self.second_look <= d.score < self.score_threshold]
            for d in unsure[:MAX_LOOKS]:
                if not any(_overlap(d.box, s.box) >= 0.5 for s in sure):  # not a part of a face already kept
                    look = self._look(frame, d.box)
                    if look is not None and not any(_overlap(look.box, s.box) >= 0.5 for s in sure):
                        sure.append(look)
        return sorted(sure, key=lambda d: -d.score)

    def _near(self, frame: np.ndarray, known: list[Detection]) -> list[Detection]:
        """Each known face looked for again: first in a quick look (`NEAR_SIZE`), then in a close one."""
        frame = _to_bgr(frame)
        found = []
        for d in known:
            look = self._look(frame, d.box, min(NEAR_SIZE, self.look_size)) or self._look(frame, d.box)
            if look is not None:
                found.append(look)
        return sorted(found, key=lambda d: -d.score)

    def _look(self, frame: np.ndarray, box: tuple[int, int, int, int], size: int | None = None) -> Detection | None:
        """The best face over ``box`` that YuNet finds in a crop `LOOK_CONTEXT` times ``box``'s size around its
        centre, scaled so that ``box`` is ``size`` (video's quick look, shrunk by `_shrink`; default ``look_size``:
        a second or close look) pixels, scoring at least ``look_threshold``, with its eyes, nose and mouth in the
        frame and `_eyes_apart`; None if there is none."""
        x, y, w, h = box
        quick, size = size is not None, size or self.look_size
        side = round(LOOK_CONTEXT * size)
        span = math.ceil(LOOK_CONTEXT * max(w, h, 1))  # the crop's side in frame pixels
        if quick:  # each of `_shrink`'s halvings exact: the span a multiple of 2 ** halvings
            halves = 1
            while span >= 2 * side * halves:
                halves *= 2
            span = -(-span // halves) * halves
        x0, y0 = int(round(x + w / 2 - span / 2)), int(round(y + h / 2 - span / 2))
        fh, fw = frame.shape[:2]
        region = frame[max(0, y0) : min(fh, y0 + span), max(0, x0) : min(fw, x0 + span)]
        if region.size == 0:
            return None
        pads = (max(0, -y0), max(0, y0 + span - fh), max(0, -x0), max(0, x0 + span - fw))
        if any(pads):
            region = cv2.copyMakeBorder(region, *pads, cv2.BORDER_CONSTANT, value=cv2.mean(region))  # no streaks
        if quick:
            crop = _shrink(region, side)
        else:  # a second or close look: rare, and at their most exact
            crop = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA if span > side else cv2.INTER_LINEAR)
        faces = self.net.detect(crop, self.look_threshold)
        near = [
            d
            for d in _detections(faces, span / side, (x0, y0), frame.shape)
            if _overlap(d.box, box) >= 0.5
            and 0.5 <= d.box[3] / max(h, 1) <= 2
            and all(0 <= px < fw and 0 <= py < fh for px, py in d.landmarks)  # not a "face" bigger than the frame
            and _eyes_apart(d.landmarks)
        ]
        return max(near, key=lambda d: d.score, default=None)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    """A square ``image`` as ``side`` x ``side``: halved by 2x2 means (OpenCV's fast area resize) while at least twice
    ``side``, then linearly. Nothing aliases, at a tenth of the time a general area resize takes (0.03 vs 0.3 ms)."""
    while image.shape[0] >= 2 * side:
        half = image.shape[0] // 2
        image = cv2.resize(image[: 2 * half, : 2 * half], (half, half), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)


LOOK_CONTEXT = 2.0  # a look's crop spans this many face sizes: YuNet needs the head's surroundings
NEAR_SIZE = 48  # px: video's quick look again at a known face (a 96 px crop; a face it misses gets a close look).
# 48 rather than 64: a third less detection time on the two-three test clip, the same faces found and the same
# accuracy through the live path (scripts/benchmark_faces.py clips; README, Faces)
MAX_LOOKS = 8  # second looks per scan at most: bounds a scan's time on frames full of face-like clutter


def _eyes_apart(landmarks: Sequence[tuple[float, float]]) -> bool:
    """The eyes at least 0.4 times as far apart as the mouth is from them: a face seen from the front or half turned
    (frontal: about 1; FER2013's turned faces that second looks find: up to 0.44), not a fist or a profile."""
    p = np.asarray(landmarks)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    return bool(np.hypot(*(p[1] - p[0])) >= 0.4 * np.hypot(*(mouth - eyes)))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The area two (x, y, w, h) boxes share, as a fraction of the smaller box's."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h) / max(1, min(a[2] * a[3], b[2] * b[3]))


def _detections(
    faces: np.ndarray | None, scale: float, offset: tuple[float, float], shape: tuple[int, ...]
) -> list[Detection]:
    """YuNet's rows (box, five landmarks, score) in an image whose edges map to the frame's as ``frame = image *
    scale + offset``, as Detections in frame pixels, boxes clipped to the frame (of ``shape``), best score first."""
    if faces is None:
        return []
    h, w = shape[:2]
    ox, oy = offset
    out = []
    for f in faces:
        x0, y0 = max(0.0, f[0] * scale + ox), max(0.0, f[1] * scale + oy)
        x1, y1 = min(float(w), (f[0] + f[2]) * scale + ox), min(float(h), (f[1] + f[3]) * scale + oy)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            box = (int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)))
            points = tuple(
                (float((f[i] + 0.5) * scale - 0.5 + ox), float((f[i + 1] + 0.5) * scale - 0.5 + oy))
                for i in range(4, 14, 2)
            )
            out.append(Detection(box, float(f[-1]), points))
    return sorted(out, key=lambda d: -d.score)


def load_detector(spec: str | Mapping[str, Any], **overrides: Any) -> FaceDetector:
    """A detector from the name of a config in conf/detector/ (``"haar"``, ``"yunet"``) or from such a config: a
    mapping whose ``_target_`` names a detector class of this module. ``overrides`` win over the config's values."""
    if isinstance(spec, str):
        path = DETECTOR_CONFIGS / f"{spec}.yaml"
        if not re.fullmatch(r"[\w-]+", spec) or not path.is_file():
            names = ", ".join(sorted(p.stem for p in DETECTOR_CONFIGS.glob("*.yaml")))
            raise UserError(f"unknown detector {spec!r}: use one of {names} (the configs in {DETECTOR_CONFIGS})")
        spec = OmegaConf.load(path)
    if OmegaConf.is_config(spec):
        spec = OmegaConf.to_container(spec, resolve=True)
    settings = {**spec, **overrides}
    check_detector(settings)
    target = str(settings.pop("_target_", ""))
    name = target.removeprefix(f"{__name__}.")
    cls = globals().get(name) if name != target and "." not in name else None
    if not inspect.isclass(cls) or not hasattr(cls, "detect") or cls is FaceDetector:
        raise UserError(
            f"detector _target_ {target!r}: name a detector class of {__name__}, e.g. {__name__}.HaarDetector"
        )
    try:
        inspect.signature(cls).bind(**settings)
    except TypeError as e:
        params = ", ".join(inspect.signature(cls).parameters)
        raise UserError(f"detector {target}: {e}; its settings are {params}") from None
    return cls(**settings)
