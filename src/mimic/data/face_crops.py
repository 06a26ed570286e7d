"""Faces cut out of a dataset's image files once, as the dataset intends, and cached (`FaceCrops`).

Every source that reads image files crops through here (the folder loader, RAF-DB, AffectNet, CK+, JAFFE, ExpW), with
the one preprocessing path (`mimic.preprocessing.crop_face`), so a face from any of them is framed as the live app
frames it. What a dataset says of where its face is decides how (``mode``):

- ``"whole"``: the image is the face (FER2013-style crops, RAF-DB's ``aligned/`` images, CK+48);
- ``"landmarks"``: given landmarks, five in YuNet's order (`mimic.faces.Detection`), get mimic's eye framing. A model
  trained on boxes (``framing: box``, checkpoints before the eye framing) gets the eye framing too: it places a face as
  FER2013 places it, which is what such a model learnt from;
- ``"box"``: a given box gets the detector run inside it (the box grown by half on every side), and the face nearest
  the box's centre framed by its landmarks; where the detector finds none there, the box's own framing;
- ``"detect"``: the largest face the detector finds in the whole image;
- ``"auto"``: images of at most `CROP_MAX_SIDE` pixels are taken whole, the rest detected (a folder of mixed photos).

Crops are cached by the file's content hash, the mode, the given landmarks or box, the detector's config (its
settings and model file's sha256) and the spec, so a large set (AffectNet's 290,000 images) is decoded, detected and
cropped once. ``to_spec`` returns crops already in the model's size and colour (`to_model_image`, which the
datamodule would apply anyway): a large set then holds 48x48 faces in memory, not photos.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import OmegaConf

from mimic.data.base import DataError, SplitData
from mimic.data.class_folders import read_image, write_image_atomic
from mimic.detectors import load_detector
from mimic.faces import Detection, FaceDetector, for_photos, largest_face
from mimic.io import cache_dir as user_cache_dir
from mimic.io import write_bytes
from mimic.preprocessing import PreprocessSpec, crop_face, to_model_image

log = logging.getLogger(__name__)

MODES = ("whole", "landmarks", "box", "detect", "auto")
CROP_MAX_SIDE = 160  # mode "auto": images this small are taken as face crops already
CACHE_VERSION = 2
BOX_SEARCH = 0.5  # mode "box": the detector looks in the box grown by this part of its size on every side
MAX_LISTED = 20  # files named in a warning, then a count


class FaceCrops:
    """Reads the face out of image bytes (see the module docstring for the modes).

    spec: the model's preprocess spec (its framing). detector: the name of a config in conf/detector/ ("yunet",
    "haar"), such a config, or a detector object; loaded only when a mode needs it. cache_dir: None: the user cache
    (``~/.cache/mimic/faces``), False: no cache. to_spec: return crops in the model's size and colour.
    """

    def __init__(
        self,
        spec: PreprocessSpec,
        detector: str | Mapping[str, Any] | FaceDetector = "yunet",
        cache_dir: str | Path | None | bool = None,
        name: str = "data",
        to_spec: bool = False,
    ) -> None:
        self.spec, self.name, self.to_spec = spec, name, bool(to_spec)
        is_spec = isinstance(detector, str | Mapping) or OmegaConf.is_config(detector)
        self._detector_spec, self._detector = (detector, None) if is_spec else (None, detector)
        if cache_dir is None:
            cache_dir = user_cache_dir("faces")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir not in (False, "") else None

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = load_detector(self._detector_spec)
        return for_photos(self._detector)

    def read(
        self, path: Path, mode: str, hint: Detection | Sequence[float] | None = None
    ) -> tuple[np.ndarray | None, str]:
        """The face in the file ``path``: ``(crop, "")``, or ``(None, why)`` when the file cannot be read or holds no
        face. ``hint``: the given landmarks (a `Detection`) or box (x, y, w, h)."""
        try:
            data = path.read_bytes()
        except OSError as e:
            return None, f"unreadable ({e.strerror or e})"
        return self.crop(data, hashlib.sha1(data).hexdigest(), mode, hint)

    def crop(
        self, data: bytes, digest: str, mode: str, hint: Detection | Sequence[float] | None = None
    ) -> tuple[np.ndarray | None, str]:
        """`read` for bytes already read, ``digest`` their sha1."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {MODES}")
        cached = self._cache_path(digest, mode, hint)
        if cached is not None:
            if cached.is_file():
                crop = cv2.imread(str(cached), cv2.IMREAD_UNCHANGED)
                if crop is not None:  # in the model's shape, as a fresh crop is
                    return (to_model_image(crop, self.spec) if self.to_spec else crop), ""
            if cached.with_suffix(".noface").is_file():
                return None, "no face found"
        img = read_image(data)
        if img is None:
            return None, "not an image OpenCV can read"
        crop = self._crop(img, mode, hint)
        if crop is not None and self.to_spec:
            crop = to_model_image(crop, self.spec)
        if cached is not None and crop is not img:  # an image taken whole is not worth caching
            try:
                if crop is None:
                    write_bytes(cached.with_suffix(".noface"), b"")
                else:
                    write_image_atomic(cached, crop)
            except OSError as e:
                log.warning("%s: cannot write the face cache in %s (%s); caching off", self.name, self.cache_dir, e)
                self.cache_dir = None
        return (crop, "") if crop is not None else (None, "no face found")

    def _cache_path(self, digest: str, mode: str, hint: Any) -> Path | None:
        if self.cache_dir is None or mode == "whole":
            return None
        needs_detector = mode in ("box", "detect", "auto")
        config = getattr(self.detector, "config", None) if needs_detector else None
        if needs_detector and config is None:
            return None  # a detector that cannot say what it is: its results cannot be keyed
        if mode in ("detect", "auto"):  # the folder loader's key since its first cache
            parts: list = [CACHE_VERSION, digest, config, self.spec.to_dict()]
        else:
            given = {"landmarks": hint.landmarks} if mode == "landmarks" else {"box": [float(v) for v in hint[:4]]}
            parts = [CACHE_VERSION, digest, mode, given, config, self.spec.to_dict()]
        if self.to_spec:
            parts.append("to_spec")
        key = hashlib.sha1(json.dumps(parts, sort_keys=True, default=list).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.png"

    def _crop(self, img: np.ndarray, mode: str, hint: Any) -> np.ndarray | None:
        if mode == "whole" or (mode == "auto" and max(img.shape[:2]) <= CROP_MAX_SIDE):
            return img
        if mode == "landmarks":
            spec = self.spec if self.spec.framing == "eyes" else _eyes(self.spec)
            return np.ascontiguousarray(crop_face(img, hint, spec))
        if mode == "box":
            face = self._inside(img, hint)
            return np.ascontiguousarray(crop_face(img, face if face is not None else tuple(hint[:4]), self.spec))
        face = largest_face(self.detector.detect(img))
        return None if face is None else np.ascontiguousarray(crop_face(img, face, self.spec))

    def _inside(self, img: np.ndarray, box: Sequence[float]) -> Detection | None:
        """The detector's face nearest the centre of ``box`` (x, y, w, h), searched in the box grown by `BOX_SEARCH`
        of its size on every side; None when it finds none whose centre lies in the box."""
        x, y, w, h = (float(v) for v in box[:4])
        height, width = img.shape[:2]
        x0, y0 = max(0, int(x - BOX_SEARCH * w)), max(0, int(y - BOX_SEARCH * h))
        x1, y1 = min(width, int(x + w + BOX_SEARCH * w) + 1), min(height, int(y + h + BOX_SEARCH * h) + 1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        cx, cy, best = x + w / 2, y + h / 2, None
        for d in self.detector.detect(np.ascontiguousarray(img[y0:y1, x0:x1])):
            bx, by, bw, bh = d.box
            dx, dy = x0 + bx + bw / 2, y0 + by + bh / 2
            if not (x <= dx <= x + w and y <= dy <= y + h):
                continue
            distance = (dx - cx) ** 2 + (dy - cy) ** 2
            if best is None or distance < best[0]:
                best = distance, d
        if best is None:
            return None
        d = best[1]
        landmarks = None if d.landmarks is None else tuple((px + x0, py + y0) for px, py in d.landmarks)
        return Detection((d.box[0] + x0, d.box[1] + y0, d.box[2], d.box[3]), d.score, landmarks)


def _eyes(spec: PreprocessSpec) -> PreprocessSpec:
    """``spec`` with the eye framing (its measured defaults)."""
    return PreprocessSpec.from_dict({**spec.to_dict(), "framing": "eyes"})


def numbers(values: Sequence[str]) -> list[float]:
    """The numbers a label file gives, as floats; a ``ValueError`` for anything not a finite number ("nan", "inf"
    and words alike), so a box or landmark can never carry one into the framing."""
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise ValueError("not a finite number")
    return out


def landmark_face(points: Sequence[Sequence[float]]) -> Detection:
    """A `Detection` from five given landmarks in YuNet's order (the eye on the image's left, the other eye, the nose
    tip, the mouth corner on the image's left, the other; each pair put in that order by x), its box the landmarks'
    bounding box."""
    p = np.asarray(points, np.float64).reshape(5, 2)
    for a, b in ((0, 1), (3, 4)):  # a set that lists the person's left first (the image's right): the same face
        if p[a, 0] > p[b, 0]:
            p[[a, b]] = p[[b, a]]
    (x0, y0), (x1, y1) = p.min(0), p.max(0)
    box = (int(x0), int(y0), max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0))))
    return Detection(box, 1.0, tuple((float(a), float(b)) for a, b in p))


def five_of_68(points: Sequence[Sequence[float]]) -> Detection:
    """A `landmark_face` from the 68 iBUG-300W landmarks (AffectNet's, CK+'s): the centres of the eyes (points 36-41
    and 42-47), the nose tip (30) and the mouth corners (48, 54), numbered from 0."""
    p = np.asarray(points, np.float64).reshape(68, 2)
    return landmark_face([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


@dataclass(frozen=True)
class Item:
    """One labelled face of a dataset before it is read: its file, its label (an index into the source's classes),
    how to crop it (``mode``, ``hint``: see `FaceCrops`) and its group (the subject or image a split keeps together)."""

    path: Path
    label: int
    mode: str = "whole"
    hint: Any = None
    group: str = ""


def read_items(crops: FaceCrops, items: Sequence[Item], name: str) -> tuple[list[np.ndarray], list[Item]]:
    """Every item's face, and the items read; the files that could not be read or hold no face are named in one
    warning (at most `MAX_LISTED`, then a count). A long read logs its progress."""
    faces, kept, skipped = [], [], []
    start = last = time.perf_counter()
    for i, item in enumerate(items):
        crop, why = crops.read(item.path, item.mode, item.hint)
        if crop is None:
            skipped.append(f"{item.path}: {why}")
        else:
            faces.append(crop)
            kept.append(item)
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            log.info("%s: %d of %d faces read (%.0f s)", name, i + 1, len(items), last - start)
    if skipped:
        more = f"\n  ... and {len(skipped) - MAX_LISTED} more" if len(skipped) > MAX_LISTED else ""
        hint = " (the face cache keeps the crops: a second run is fast)" if crops.cache_dir is not None else ""
        log.warning(
            f"{name}: skipped {len(skipped)} of {len(items)} faces (a missing or unreadable file, or no face found):"
            + "".join(f"\n  {s}" for s in skipped[:MAX_LISTED])
            + more
            + hint
        )
    log.info("%s: %d faces in %.0f s", name, len(kept), time.perf_counter() - start)
    return faces, kept


def to_splits(
    faces: list[np.ndarray], items: Sequence[Item], splits: Mapping[str, np.ndarray], name: str
) -> dict[str, SplitData]:
    """The `SplitData` of each split (``splits``: {split: indices into ``faces``}); empty splits are left out."""
    labels = np.array([it.label for it in items], np.int64)
    out = {}
    for split, index in splits.items():
        if len(index):
            paths = [str(items[i].path) for i in index]
            out[split] = SplitData([faces[i] for i in index], labels[index], paths, {"source": name})
    return out


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` for a path a label file gives, refused (a `DataError` naming ``what``) when it is absolute
    or leads out of ``root``: a label file names images of its own set, nothing else on the machine."""
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts or not relative.strip():
        raise DataError(
            f"{what}: {relative!r} is not a file inside {root}; a label file names its images relative to it."
        )
    return root / path
