"""The one face-crop -> tensor path (DESIGN.md contract 1) and the spec that travels in every checkpoint.

Training's eval transform, the capture script, the folder loader and the realtime predictor all go through
`crop_face` (frame + box -> crop) and `preprocess` (crop -> model input). Training augmentation runs between the two
halves of `preprocess`: `to_model_image` (colour + size, uint8) then augment then `image_to_tensor` (float, normalised).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class PreprocessSpec:
    """How a face crop becomes the model's input.

    size: side of the square input in pixels. channels: 1 (grayscale) or 3 (RGB). mean/std: per channel, on pixel
    values scaled to [0, 1]. crop_margin: fraction of the detector's box added on every side before cropping.
    Every field is a number, checked here: the spec also comes out of checkpoint files.
    """

    size: int = 48
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    crop_margin: float = 0.1

    def __post_init__(self) -> None:
        for name in ("size", "channels"):
            if not _is_number(getattr(self, name)) or getattr(self, name) != int(getattr(self, name)):
                raise ValueError(f"preprocess.{name} must be a whole number, got {getattr(self, name)!r}")
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.channels not in (1, 3):
            raise ValueError(f"preprocess.channels must be 1 or 3, got {self.channels}")
        if not 8 <= self.size <= 1024:
            raise ValueError(f"preprocess.size must be 8 to 1024 pixels, got {self.size}")
        if not _is_number(self.crop_margin):
            raise ValueError(f"preprocess.crop_margin must be a number, got {self.crop_margin!r}")
        object.__setattr__(self, "crop_margin", float(self.crop_margin))
        for name in ("mean", "std"):
            value = getattr(self, name)
            if _is_number(value):
                value = (value,)
            if not isinstance(value, Sequence) or isinstance(value, str) or not all(map(_is_number, value)):
                raise ValueError(f"preprocess.{name} must be a list of numbers, got {value!r}")
            value = tuple(float(v) for v in value)
            if len(value) == 1 and self.channels == 3:
                value = value * 3
            if len(value) != self.channels:
                raise ValueError(f"preprocess.{name} needs {self.channels} values, got {list(value)}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"preprocess.std must be positive, got {list(self.std)}")

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping | PreprocessSpec) -> PreprocessSpec:
        if isinstance(d, PreprocessSpec):
            return d
        d = {k: v for k, v in d.items() if not (k == "extra" and v == {})}  # an empty field of older checkpoints
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"preprocess has unknown settings {unknown}; known: {[f.name for f in fields(cls)]}")
        return cls(**d)


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


def crop_face(frame: np.ndarray, box: Sequence[float], spec: PreprocessSpec) -> np.ndarray:
    """Cut the face at ``box`` (x, y, w, h in frame pixels) out of ``frame`` with the spec's margin."""
    h, w = frame.shape[:2]
    x, y, bw, bh = expand_box(box, spec.crop_margin, w, h)
    if bw == 0 or bh == 0:
        raise ValueError(f"face box {list(box)} lies outside the {w}x{h} frame")
    return frame[y : y + bh, x : x + bw]


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


def image_to_tensor(img: np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (H, W, C) or a batch (N, H, W, C) of the spec's size -> normalised float (C, H, W) / (N, C, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(img))
    t = t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    mean = torch.tensor(spec.mean).view(-1, 1, 1) * 255.0
    std = torch.tensor(spec.std).view(-1, 1, 1) * 255.0
    return (t.float() - mean) / std


def preprocess(crops: np.ndarray | Sequence[np.ndarray], spec: PreprocessSpec) -> torch.Tensor:
    """One crop -> (C, H, W); a list of crops -> a batch (N, C, H, W). The only way a face becomes model input."""
    if isinstance(crops, np.ndarray):
        return image_to_tensor(to_model_image(crops, spec), spec)
    if len(crops) == 0:
        return torch.empty(0, spec.channels, spec.size, spec.size)
    return image_to_tensor(np.stack([to_model_image(c, spec) for c in crops]), spec)
