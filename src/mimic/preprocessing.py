"""The one face -> tensor path (DESIGN.md contract 1) and the spec that travels in every checkpoint.

Training's eval transform, the capture script, the folder loader and the realtime predictor all go through
`crop_face` (frame + detection -> crop) and `preprocess` (crop -> model input). Training augmentation runs between the
two halves of `preprocess`: `to_model_image` (colour + size, uint8) then augment then `image_to_tensor` (float,
normalised). The path is numpy and OpenCV (`preprocess_array`, `normalise`); the torch functions wrap those arrays, so
an ONNX model runs live without importing torch.

Framing (``PreprocessSpec.framing``): ``"box"`` cuts a square around the detector's box grown by ``crop_margin`` (what
checkpoints before the eye framing were trained with). ``"eyes"`` frames faces as FER2013 frames them: with YuNet's
landmarks the face is rotated so the eyes are level and scaled and placed so the eyes land where they sit, on average,
in FER2013's 48x48 faces; a box without landmarks (Haar) is framed by Haar's measured box-to-crop relation. The
defaults below were measured on all 28,709 FER2013 Training faces by

    python scripts/bench/measure_framing.py sample=0

(each face enlarged to 96 px and padded to 160 px; YuNet found exactly one face scoring >= 0.8 in 22,448 of them,
Haar exactly one face in 18,295 of those). Means as fractions of the crop's side (standard deviation, median):
eye midpoint x 0.4977 (0.063, 0.500), y 0.3874 (0.069, 0.403); eye distance 0.3496 (0.083, 0.339); mouth centre y
0.7533 (0.063, 0.751); eye-line tilt 0.21 degrees (1.9, 0.02): FER2013's faces are level, so the crop levels the eyes.
Haar's box: crop side 1.0475 box widths (0.154, 1.021), crop centre minus box centre x 0.0001 (0.060, 0.000),
y 0.0070 (0.056, 0.000) box widths. In 48x48 pixels the eyes sit at (15.5, 18.5) and (32.3, 18.7) on average.

Photometric normalisation (``PreprocessSpec.photometric``), in `normalise`, after any training augmentation: ``"none"``
(what every checkpoint before it was trained with) maps pixels through the spec's mean and std; ``"standardise"``
gives each face zero mean and unit standard deviation over its own pixels (a face in a dim room, mean grey ~39 with a
spread of ~20, reaches the net as a face in daylight does), its spread floored at `MIN_SPREAD` grey levels so a flat
crop is not blown up into noise; ``"clahe"`` equalises each face's histogram locally (OpenCV's CLAHE, `CLAHE_CLIP`,
`CLAHE_TILES`; RGB on its luminance) before the mean and std. It travels in the spec, so a checkpoint and its ONNX
export (in the ``preprocess`` metadata: the graph's input is `normalise`'s output) are read the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mimic.errors import UserError

if TYPE_CHECKING:
    import torch

FRAMINGS = ("box", "eyes")
PHOTOMETRIC = ("none", "standardise", "clahe")
MIN_SPREAD = 4.0  # grey levels: "standardise" divides by a face's standard deviation, or by this when it is smaller
CLAHE_CLIP, CLAHE_TILES = 2.0, 4  # "clahe": the contrast limit and the tiles a side (12x12 pixels each at 48x48)
EYE_X, EYE_Y, EYE_DISTANCE, MOUTH_Y = 0.4977, 0.3874, 0.3496, 0.7533  # measured: see the module docstring
BOX_SCALE, BOX_X, BOX_Y = 1.0475, 0.0001, 0.0070


class PreprocessError(UserError, ValueError):
    """A preprocess spec setting out of range or of the wrong type (in a config or a checkpoint)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How a face crop becomes the model's input.

    size: side of the square input in pixels. channels: 1 (grayscale) or 3 (RGB). mean/std: per channel, on pixel
    values scaled to [0, 1]. framing: "box" or "eyes" (see the module docstring); the default is "box" because a
    checkpoint that names no framing was trained with it. crop_margin ("box"): fraction of the detector's box added on
    every side. eye_x, eye_y ("eyes"): where the midpoint of the eyes lands, eye_distance: the distance between the
    eyes, mouth_y: the height of the mouth's centre, all as fractions of the crop's side (x from the left, y from the
    top). box_scale, box_x, box_y ("eyes", a box without landmarks): the crop's side in box widths and its centre
    minus the box's centre, in box widths. photometric: "none", "standardise" or "clahe" (see the module docstring;
    "none", the default, is what a checkpoint that names none was trained with). Every field is a number or a name,
    checked here: the spec also comes out of checkpoint files.
    """

    size: int = 48
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    crop_margin: float = 0.1
    framing: str = "box"
    eye_x: float = EYE_X
    eye_y: float = EYE_Y
    eye_distance: float = EYE_DISTANCE
    mouth_y: float = MOUTH_Y
    box_scale: float = BOX_SCALE
    box_x: float = BOX_X
    box_y: float = BOX_Y
    photometric: str = "none"

    def __post_init__(self) -> None:
        for name in ("size", "channels"):
            if not _is_number(getattr(self, name)) or getattr(self, name) != int(getattr(self, name)):
                raise PreprocessError(f"preprocess.{name} must be a whole number, got {getattr(self, name)!r}")
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.channels not in (1, 3):
            raise PreprocessError(f"preprocess.channels must be 1 or 3, got {self.channels}")
        if not 8 <= self.size <= 1024:
            raise PreprocessError(f"preprocess.size must be 8 to 1024 pixels, got {self.size}")
        if self.framing not in FRAMINGS:
            raise PreprocessError(f"preprocess.framing must be one of {', '.join(FRAMINGS)}, got {self.framing!r}")
        if self.photometric not in PHOTOMETRIC:
            raise PreprocessError(
                f"preprocess.photometric must be one of {', '.join(PHOTOMETRIC)}, got {self.photometric!r}"
            )
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not _is_number(value) or not low <= value <= high:
                raise PreprocessError(f"preprocess.{name} must be a number from {low} to {high}, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.mouth_y <= self.eye_y:
            raise PreprocessError(
                f"preprocess.mouth_y ({self.mouth_y}) must be larger than eye_y ({self.eye_y}): the mouth is below "
                "the eyes"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if _is_number(value):
                value = (value,)
            if not isinstance(value, Sequence) or isinstance(value, str) or not all(map(_is_number, value)):
                raise PreprocessError(f"preprocess.{name} must be a list of numbers, got {value!r}")
            value = tuple(float(v) for v in value)
            if len(value) == 1 and self.channels == 3:
                value = value * 3
            if len(value) != self.channels:
                raise PreprocessError(f"preprocess.{name} needs {self.channels} values, got {list(value)}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise PreprocessError(f"preprocess.std must be positive, got {list(self.std)}")

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping | PreprocessSpec) -> PreprocessSpec:
        if isinstance(d, PreprocessSpec):
            return d
        d = {k: v for k, v in d.items() if not (k == "extra" and v == {})}  # an empty field of older checkpoints
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise PreprocessError(f"preprocess has unknown settings {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**d)


_RANGES = (  # the numbers of the framing: (name, lowest, highest)
    ("crop_margin", 0.0, 100.0),
    ("eye_x", 0.0, 1.0),
    ("eye_y", 0.0, 1.0),
    ("eye_distance", 0.01, 1.0),
    ("mouth_y", 0.0, 1.0),
    ("box_scale", 0.1, 10.0),
    ("box_x", -1.0, 1.0),
    ("box_y", -1.0, 1.0),
)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def expand_box(box: Sequence[float], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow an (x, y, w, h) box by ``margin`` of its size on every side, make it square, and clip it to the frame."""
    x, y, w, h = (float(v) for v in box[:4])
    cx, cy = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * margin)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = int(round(cx + side / 2)), int(round(cy + side / 2))
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def crop_face(frame: np.ndarray, face: Any, spec: PreprocessSpec, size: int | None = None) -> np.ndarray:
    """The face ``face`` of ``frame`` (uint8 gray or BGR) framed as ``spec`` says.

    ``face``: a `mimic.faces.Detection` (its ``landmarks``, when it has them, drive the "eyes" framing) or a plain
    (x, y, w, h) box in frame pixels. "box" framing returns a view of the frame: the square around the box grown by
    ``crop_margin``, clipped to the frame. "eyes" framing returns a new ``size`` x ``size`` image (default: the spec's
    input size), parts outside the frame filled by replicating its border.
    """
    box = getattr(face, "box", face)
    h, w = frame.shape[:2]
    if spec.framing == "box":
        x, y, bw, bh = expand_box(box, spec.crop_margin, w, h)
        if bw == 0 or bh == 0:
            raise ValueError(f"face box {list(box)} lies outside the {w}x{h} frame")
        return frame[y : y + bh, x : x + bw]
    size = int(size or spec.size)
    return warp(frame, framing_matrix(face, spec, size), size)


def framing_matrix(face: Any, spec: PreprocessSpec, size: int) -> np.ndarray:
    """The 2x3 matrix "eyes" framing takes frame pixels to ``size`` x ``size`` crop pixels with, for ``face`` (a
    `mimic.faces.Detection` or a plain box, as `crop_face` takes it): from its landmarks when it has them, else from
    its box. The crop covers ``size / sqrt(det)`` frame pixels a side."""
    landmarks = getattr(face, "landmarks", None)
    if landmarks is not None:
        return _eye_matrix(landmarks, spec, size)
    return _box_matrix(getattr(face, "box", face), spec, size)


def _eye_matrix(landmarks: Sequence[Sequence[float]], spec: PreprocessSpec, size: int) -> np.ndarray:
    """The 2x3 matrix taking frame pixels to crop pixels: eyes level, their midpoint at (eye_x, eye_y), scaled so
    that the face's eye distance and eye-to-mouth distance together match the spec's (sum of squares: less
    sensitive to a turned or tilted head than either alone)."""
    p = np.asarray(landmarks, np.float64)
    right, left, mouth = p[0], p[1], (p[3] + p[4]) / 2  # the person's right eye: on the image's left
    eyes = (right + left) / 2
    angle = math.atan2(left[1] - right[1], left[0] - right[0])
    face = math.hypot(*(left - right), *(mouth - eyes))
    target = math.hypot(spec.eye_distance, spec.mouth_y - spec.eye_y) * size
    scale = target / max(face, 1e-6)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    rot = np.array([[c, s], [-s, c]])
    return np.hstack([rot, (np.array([spec.eye_x, spec.eye_y]) * size - 0.5 - rot @ eyes)[:, None]])


def _box_matrix(box: Sequence[float], spec: PreprocessSpec, size: int) -> np.ndarray:
    """The 2x3 matrix taking frame pixels to crop pixels for a box without landmarks: a square of ``box_scale`` box
    widths centred ``(box_x, box_y)`` box widths from the box's centre."""
    x, y, bw, bh = (float(v) for v in box[:4])
    if bw <= 0 or bh <= 0:
        raise ValueError(f"face box {list(box)} is empty")
    side = spec.box_scale * bw
    x0, y0 = x + bw / 2 + (spec.box_x - spec.box_scale / 2) * bw, y + bh / 2 + spec.box_y * bw - side / 2
    k = size / side  # crop pixel index = (frame index + 0.5 - corner) * k - 0.5
    return np.array([[k, 0.0, (0.5 - x0) * k - 0.5], [0.0, k, (0.5 - y0) * k - 0.5]])


def warp(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``frame`` through ``matrix`` into a ``size`` x ``size`` image. A face shrunk more than twofold is first halved
    (Gaussian pyramid) as often as needed, only the part of the frame the crop covers, so fine detail does not alias."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < 0.5:
        corners = np.array([[-1, -1, 1], [size, -1, 1], [-1, size, 1], [size, size, 1]], np.float64)
        corners = corners @ cv2.invertAffineTransform(matrix).T
        pad, (h, w) = int(4 / scale), frame.shape[:2]
        x0, y0 = (max(0, int(v) - pad) for v in corners.min(0))
        x1, y1 = (min(n, int(v) + pad) for v, n in zip(corners.max(0), (w, h), strict=True))
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            frame, back = frame[y0:y1, x0:x1], np.array([[1.0, 0, x0], [0, 1, y0], [0, 0, 1]])
            while scale < 0.5 and min(frame.shape[:2]) >= 8:
                frame, back, scale = cv2.pyrDown(frame), back @ np.diag([2.0, 2.0, 1.0]), scale * 2
            matrix = matrix @ back  # pyramid pixel (i, j) sits at frame pixel (2i, 2j) per level
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def to_model_image(crop: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Colour-convert and resize a uint8 crop (gray HxW / HxWx1, or BGR HxWx3) to the spec: uint8 (size, size, C)."""
    if crop.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {crop.dtype}")
    if crop.ndim == 3 and crop.shape[2] == 1:
        crop = crop[:, :, 0]
    if crop.ndim == 2:
        img = crop if spec.channels == 1 else cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
    elif crop.ndim == 3 and crop.shape[2] in (3, 4):
        code = (
            (cv2.COLOR_BGR2GRAY, cv2.COLOR_BGR2RGB) if crop.shape[2] == 3 else (cv2.COLOR_BGRA2GRAY, cv2.COLOR_BGRA2RGB)
        )
        img = cv2.cvtColor(crop, code[0] if spec.channels == 1 else code[1])
    else:
        raise ValueError(f"expected a gray or BGR image, got shape {crop.shape}")
    if img.shape[0] != spec.size or img.shape[1] != spec.size:
        shrinking = img.shape[0] > spec.size or img.shape[1] > spec.size
        img = cv2.resize(img, (spec.size, spec.size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return img.reshape(spec.size, spec.size, spec.channels)


def normalise(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (H, W, C) or a batch (N, H, W, C) of the spec's size -> normalised float32 (C, H, W) / (N, C, H, W),
    through the spec's photometric normalisation."""
    if spec.photometric == "standardise":
        x = img.astype(np.float32)
        axes = (-3, -2, -1)  # each face over all its pixels and channels
        spread = np.maximum(x.std(axis=axes, keepdims=True), np.float32(MIN_SPREAD))
        return np.ascontiguousarray(np.moveaxis((x - x.mean(axis=axes, keepdims=True)) / spread, -1, -3))
    if spec.photometric == "clahe":
        img = _clahe(img)
    mean = np.asarray(spec.mean, np.float32) * np.float32(255.0)
    std = np.asarray(spec.std, np.float32) * np.float32(255.0)
    return np.ascontiguousarray(np.moveaxis((img.astype(np.float32) - mean) / std, -1, -3))


def _clahe(img: np.ndarray) -> np.ndarray:
    """CLAHE on each uint8 (H, W, C) face of ``img`` (one or a batch): gray directly, RGB on its luminance (Lab)."""
    if img.ndim == 4:
        return np.stack([_clahe(face) for face in img])
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_TILES, CLAHE_TILES))
    if img.shape[2] == 1:
        return clahe.apply(np.ascontiguousarray(img[:, :, 0]))[:, :, None]
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def preprocess_array(crops: np.ndarray | Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """One crop -> (C, H, W); a list of crops -> a batch (N, C, H, W): float32, the model's input."""
    if isinstance(crops, np.ndarray):
        return normalise(to_model_image(crops, spec), spec)
    if len(crops) == 0:
        return np.zeros((0, spec.channels, spec.size, spec.size), np.float32)
    return normalise(np.stack([to_model_image(c, spec) for c in crops]), spec)


def image_to_tensor(img: np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
    """`normalise` as a tensor."""
    import torch  # start-up: the numpy path (the live app on onnxruntime) runs without torch

    return torch.from_numpy(normalise(img, spec))


def preprocess(crops: np.ndarray | Sequence[np.ndarray], spec: PreprocessSpec) -> torch.Tensor:
    """`preprocess_array` as a tensor: the only way a face becomes model input."""
    import torch  # start-up: the numpy path (the live app on onnxruntime) runs without torch

    return torch.from_numpy(preprocess_array(crops, spec))
