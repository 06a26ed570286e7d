"""Synthetic cartoon faces: the data source of the built-in demo and the stand-in for real data in every test.

`draw_face` draws one face whose brows, eyes and mouth encode an expression (all FER2013 classes plus contempt), with
random pose, identity, lighting, noise and blur when given a generator. `draw_scene` puts faces on a textured BGR
frame for the realtime tests, `SyntheticSource` is a `Source` (data/base.py) of balanced, seeded splits, and
`write_class_folders` writes the webcam-folder layout (`<index>_<name>/NNNN.png`) the fine-tuning feature reads.

The face itself, its polygons per expression, is `mimic.data.cartoon`; here are its variations, the images made from
it (lighting, noise, blur) and what uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mimic.data.base import SplitData
from mimic.data.cartoon import LUMA, class_index, face_layers
from mimic.labels import FER2013_CLASSES, KNOWN_CLASSES, validate_classes

_CHUNK = 512  # faces whose float buffers are processed together

# Variation: canonical value and the range sampled with a generator (None: drawn specially in `_sample`).
_VARIATION: dict[str, tuple[object, tuple[float, float] | None]] = {
    "rotation": (0.0, (-12, 12)),  # degrees
    "shift": ((0.0, 0.0), (-0.06, 0.06)),  # (dx, dy) in fractions of the image side
    "scale": (1.0, (0.85, 1.1)),
    "flip": (False, None),
    "intensity": (1.0, (0.75, 1.2)),  # how far brows, eyes and mouth move away from neutral
    "face_aspect": (1.0, (0.9, 1.1)),
    "eye_dx": (0.0, (-0.04, 0.04)),
    "eye_dy": (0.0, (-0.04, 0.04)),
    "mouth_dy": (0.0, (-0.05, 0.05)),
    "hair": (1, None),  # 0 bald, 1 cap, 2 fringe
    "grin": (False, None),  # happy faces show their teeth
    "skin": (175.0, (110, 225)),  # gray levels
    "hair_level": (50.0, (15, 110)),
    "background": (120.0, (15, 240)),
    "skin_tint": ((0.85, 0.97, 1.12), None),  # BGR multipliers, used when drawing in colour
    "background_tint": ((1.0, 1.0, 1.0), (0.7, 1.3)),
    "hair_tint": ((0.8, 0.95, 1.2), (0.7, 1.3)),
    "gradient": ((0.0, 0.0), (-35, 35)),  # lighting ramp across the image, gray levels (x, y)
    "contrast": (1.0, (0.65, 1.2)),
    "brightness": (0.0, (-20, 20)),
    "noise": (0.0, (0, 9)),  # gaussian sigma, gray levels
    "blur": (0.0, (0, 0.8)),  # gaussian sigma in pixels of a 48 px face
}


def _canonical_variation(n: int) -> dict[str, np.ndarray]:
    return {
        k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n, *np.shape(v))).copy()
        for k, (v, _) in _VARIATION.items()
    }


def _sample(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    r = rng.random((n, 32))  # one draw per batch: a call per value would cost more than the drawing
    col = iter(r.T)
    out: dict[str, np.ndarray] = {}
    for key, (value, span) in _VARIATION.items():
        if span is not None:
            lo, hi = span
            width = np.size(value)
            cols = [lo + (hi - lo) * next(col) for _ in range(width)]
            out[key] = cols[0] if np.ndim(value) == 0 else np.stack(cols, 1)
    out["flip"] = next(col) < 0.5
    hair = next(col)
    out["hair"] = np.where(hair < 0.2, 0, np.where(hair < 0.6, 1, 2)).astype(np.float64)
    out["grin"] = next(col) < 0.5
    out["skin_tint"] = np.stack([0.65 + 0.3 * next(col), 0.9 + 0.1 * next(col), 1.05 + 0.25 * next(col)], 1)
    skin, bg = out["skin"], out["background"]
    out["background"] = np.where(np.abs(bg - skin) < 25, np.where(skin > 130, skin - 45, skin + 45), bg)
    return out


def _variations(rng: np.random.Generator | None, n: int, overrides: dict) -> dict:
    unknown = sorted(set(overrides) - set(_VARIATION))
    if unknown:
        raise TypeError(f"draw_face: unknown variation {unknown}; known: {', '.join(_VARIATION)}")
    v = _canonical_variation(n) if rng is None else _sample(rng, n)
    for key, value in overrides.items():
        v[key] = np.broadcast_to(np.asarray(value, dtype=np.float64), np.shape(v[key])).copy()
    return v


def _finish(imgs: np.ndarray, v: dict, rng: np.random.Generator | None, ref_size: float) -> np.ndarray:
    """Lighting ramp, contrast, brightness, noise and blur on a batch (N, H, W[, 3]); returns uint8."""
    h, w = imgs.shape[1:3]
    expand = (slice(None),) + (None,) * (imgs.ndim - 1)
    c = v["contrast"].astype(np.float32)
    out = imgs.astype(np.float32)
    out *= c[expand]
    offset = 128.0 * (1.0 - v["contrast"]) + v["brightness"]
    gx, gy = (v["gradient"] * v["contrast"][:, None]).T[..., None, None]
    ramp = gx * np.linspace(-0.5, 0.5, w) + gy * np.linspace(-0.5, 0.5, h)[:, None] + offset[:, None, None]
    out += ramp.astype(np.float32)[..., None] if out.ndim == 4 else ramp.astype(np.float32)
    if rng is not None and np.any(v["noise"] > 0):
        noise = rng.standard_normal(out.shape, dtype=np.float32)
        noise *= v["noise"].astype(np.float32)[expand]
        out += noise
    for i in np.flatnonzero(v["blur"] > 0):
        out[i] = cv2.GaussianBlur(out[i], (0, 0), float(v["blur"][i]) * ref_size / 48.0)
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def _draw_faces(cls: np.ndarray, size: int, rng: np.random.Generator | None, bgr: bool, overrides: dict) -> np.ndarray:
    """Faces of classes ``cls`` (indices into KNOWN_CLASSES) as uint8 (N, size, size[, 3])."""
    if size < 16:
        raise ValueError(f"synthetic faces need size >= 16 pixels, got {size}")
    cls = np.asarray(cls, dtype=np.int64)
    out = np.empty((len(cls), size, size, 3) if bgr else (len(cls), size, size), np.uint8)
    for start in range(0, len(cls), _CHUNK):
        part = cls[start : start + _CHUNK]
        n = len(part)
        v = _variations(rng, n, overrides)
        imgs = np.empty_like(out[start : start + n])
        bg = v["background"]
        if bgr:
            t = v["background_tint"]
            imgs[:] = np.clip(bg[:, None] * t / (t @ LUMA)[:, None], 0, 255).astype(np.uint8)[:, None, None, :]
        else:
            imgs[:] = np.clip(bg, 0, 255).astype(np.uint8)[:, None, None]
        center = np.stack([(size - 1) / 2 + v["shift"][:, 0] * size, size * 0.49 + v["shift"][:, 1] * size], 1)
        face_layers(part, v, bgr).draw(imgs, center, 0.35 * size * v["scale"], v["rotation"], v["flip"])
        out[start : start + n] = _finish(imgs, v, rng, size)
    return out


def draw_face(
    expression: str, size: int = 48, rng: np.random.Generator | None = None, bgr: bool = False, **variation
) -> np.ndarray:
    """Draw one cartoon face showing ``expression`` (a name in `labels.KNOWN_CLASSES`, synonyms allowed).

    Returns uint8 (size, size), or (size, size, 3) BGR when ``bgr``. Without ``rng`` the face is canonical (no random
    pose, lighting or noise); with one, pose, identity, lighting, noise and blur are drawn from it. Keywords fix any
    single variation: rotation (deg), shift ((dx, dy) in fractions of size), scale, flip, intensity, face_aspect,
    eye_dx, eye_dy, mouth_dy, hair (0 bald, 1 cap, 2 fringe), grin, skin, hair_level, background (gray levels),
    skin_tint, background_tint, hair_tint (BGR multipliers), gradient ((x, y) gray levels), contrast, brightness,
    noise (sigma, gray levels; needs ``rng``), blur (sigma in pixels at 48 px).
    """
    return _draw_faces(np.array([class_index(expression)]), size, rng, bgr, variation)[0]


def draw_faces(
    expressions: Sequence[str], size: int = 48, rng: np.random.Generator | None = None, bgr: bool = False, **variation
) -> np.ndarray:
    """Many faces at once, uint8 (N, size, size[, 3]); much faster than calling `draw_face` in a loop."""
    return _draw_faces(np.array([class_index(e) for e in expressions], dtype=np.int64), size, rng, bgr, variation)


def _texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A BGR background: smooth colour blobs, a few flat rectangles (furniture, frames) and fine noise."""
    small = rng.uniform(40, 220, (max(2, height // 60), max(2, width // 60), 3)).astype(np.float32)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2 + 21)), y0 + int(rng.integers(20, height // 2 + 21))
        cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(c) for c in rng.uniform(30, 230, 3)), -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 6
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_scene(
    faces: Sequence[tuple[str, tuple[int, int, int, int]]],
    width: int,
    height: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A BGR frame (height, width, 3) uint8 with a textured background and one face per ``(expression, box)``.

    A box (x, y, w, h) is the square a `draw_face` image would cover: the head fills its middle ~70% and is scaled
    to min(w, h). Without ``rng`` the scene is deterministic (seed 0) and the faces canonical; with one, every face
    gets its own identity, skin and hair, and a small rotation and scale (no shift, so the box stays right).
    """
    gen = rng if rng is not None else np.random.default_rng(0)
    img = _texture(int(width), int(height), gen)
    if faces:
        cls = np.array([class_index(name) for name, _ in faces], dtype=np.int64)
        boxes = np.array([[float(b) for b in box[:4]] for _, box in faces])
        n = len(cls)
        v = _variations(rng, n, {})
        if rng is not None:
            v["rotation"] = rng.uniform(-8, 8, n)
            v["scale"] = rng.uniform(0.95, 1.05, n)
        center = np.stack([boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + 0.49 * boxes[:, 3]], 1)
        unit = 0.35 * np.minimum(boxes[:, 2], boxes[:, 3]) * v["scale"]
        face_layers(cls, v, bgr=True).draw([img] * n, center, unit, v["rotation"], v["flip"])
    out = cv2.GaussianBlur(img, (0, 0), 0.6).astype(np.float32)
    if rng is not None:
        out += rng.standard_normal(out.shape, dtype=np.float32) * 3
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------- sources
class SyntheticSource:
    """A `Source` of synthetic faces: balanced ``train`` / ``val`` / ``test`` splits, identical for the same seed.

    Each split is drawn from its own seed (derived from ``seed`` and the split), so splits never share an image.
    ``classes`` defaults to the FER2013 classes; any of `labels.KNOWN_CLASSES` may be asked for (synonyms allowed).
    """

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        n_train: int = 3000,
        n_val: int = 600,
        n_test: int = 600,
        size: int = 48,
        seed: int = 0,
        name: str = "synthetic",
    ) -> None:
        self.name = name
        names = list(classes) if classes is not None else list(FER2013_CLASSES)
        self.class_names: tuple[str, ...] = tuple(validate_classes(names, KNOWN_CLASSES, where=f"{name}.classes"))
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        for split, n in self.sizes.items():
            if n < 0:
                raise ValueError(f"{name}: n_{split} must be >= 0, got {n}")
        if int(size) < 16:
            raise ValueError(f"{name}: size must be at least 16 pixels, got {size}")
        self.size = int(size)
        self.seed = int(seed)

    def load(self) -> dict[str, SplitData]:
        to_known = np.array([KNOWN_CLASSES.index(c) for c in self.class_names], dtype=np.int64)
        out = {}
        for index, (split, n) in enumerate(self.sizes.items()):
            rng = np.random.default_rng([self.seed, index])
            labels = np.arange(n, dtype=np.int64) % len(self.class_names)  # balanced
            rng.shuffle(labels)
            images = _draw_faces(to_known[labels], self.size, rng, False, {})
            paths = [f"{self.name}:{split}:{i}" for i in range(n)]
            out[split] = SplitData(images, labels, paths, {"seed": self.seed, "split": split})
        return out

    def __repr__(self) -> str:
        return f"SyntheticSource(name={self.name!r}, classes={list(self.class_names)}, sizes={self.sizes})"


def write_class_folders(
    root: Path | str,
    classes: Sequence[str],
    per_class: int,
    size: int = 96,
    seed: int = 0,
    indexed: bool = True,
    bgr: bool = True,
) -> dict[str, int]:
    """Write ``per_class`` faces of every class as ``root/<index>_<name>/NNNN.png`` (``root/<name>/`` when not
    ``indexed``; index = position in ``classes``), the webcam-folder layout; returns ``{name: count}``."""
    names = validate_classes(list(classes), KNOWN_CLASSES, where="write_class_folders")
    root = Path(root)
    counts = {}
    for index, name in enumerate(names):
        folder = root / (f"{index}_{name}" if indexed else name)
        folder.mkdir(parents=True, exist_ok=True)
        images = _draw_faces(
            np.full(per_class, KNOWN_CLASSES.index(name)), size, np.random.default_rng([seed, index]), bgr, {}
        )
        for i, img in enumerate(images):
            path = folder / f"{i:04d}.png"
            if not cv2.imwrite(str(path), img):
                raise OSError(f"could not write {path}")
        counts[name] = per_class
    return counts
