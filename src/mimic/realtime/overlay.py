"""Drawing the live view onto a frame: per face a box, its label and confidence and a bar per class; the FPS.

A face's bars go beside it, right or left, else below or above, wherever they cover no other face and no other
face's bars (`place_panels`; the largest face chooses first); a face with no such place in a crowd keeps its box and
label and shows no bars. Everything is plain cv2 drawing on the frame in place, a fraction of a millisecond per face.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from mimic.realtime.result import Face

FONT = cv2.FONT_HERSHEY_SIMPLEX

CLASS_COLORS: dict[str, tuple[int, int, int]] = {  # BGR
    "angry": (40, 40, 220),
    "disgust": (40, 150, 40),
    "fear": (160, 60, 150),
    "happy": (30, 200, 250),
    "sad": (200, 120, 40),
    "surprise": (30, 140, 255),
    "neutral": (190, 190, 190),
    "contempt": (120, 110, 40),
}


def class_color(name: str) -> tuple[int, int, int]:
    """The BGR colour of a class: fixed for the known emotions, derived from the name for any other."""
    return CLASS_COLORS.get(name) or tuple(60 + b % 180 for b in hashlib.md5(name.encode()).digest()[:3])


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color, thickness: int = 1) -> None:
    # 8-connected lines: anti-aliased text costs ~4x more, a good part of the whole overlay's time
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_8)
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_8)


ROW, BAR_W = 14, 70


@lru_cache(maxsize=8)
def _names_panel(class_names: tuple[str, ...]) -> np.ndarray:
    """The class names, white on black, as drawn beside the bars: rendered once, then blitted with a max."""
    label_w = 8 + 7 * max(len(c) for c in class_names)
    panel = np.zeros((ROW * len(class_names) + 4, label_w + BAR_W + 4, 3), np.uint8)
    for i, name in enumerate(class_names):
        cv2.putText(panel, name, (3, 2 + i * ROW + ROW - 4), FONT, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


Box = tuple[int, int, int, int]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def place_panels(boxes: Sequence[Box], panel: tuple[int, int], frame: tuple[int, int]) -> list[tuple[int, int] | None]:
    """Where each face's bar panel (``panel``: height, width) goes in a frame of (height, width): its top-left
    corner, or None where every place beside, below or above its face would cover another face or a panel placed
    before it. The largest face chooses first; a lone face always gets one (clipped to the frame, as before)."""
    ph, pw = panel
    h, w = frame
    order = sorted(range(len(boxes)), key=lambda i: -boxes[i][2] * boxes[i][3])
    taken: list[Box] = []
    out: list[tuple[int, int] | None] = [None] * len(boxes)
    for i in order:
        x, y, bw, bh = boxes[i]
        others = [b for j, b in enumerate(boxes) if j != i]
        top = min(max(0, y), max(0, h - ph))
        spots = [(x + bw + 6, top), (x - pw - 6, top), (x, y + bh + 6), (x, y - ph - 6)]
        fits = [(px, py) for px, py in spots if 0 <= px <= w - pw and 0 <= py <= h - ph]
        free = [s for s in fits if not any(_overlaps((*s, pw, ph), b) for b in [*others, *taken])]
        if free:
            out[i] = free[0]
        elif not others:  # alone in a frame too small for the panel: where it always went
            out[i] = (x + bw + 6 if x + bw + 6 + pw <= w else max(0, x - pw - 6), top)
        if out[i] is not None:
            taken.append((*out[i], pw, ph))
    return out


def draw_face(
    img: np.ndarray, face: Face, class_names: Sequence[str], bars: bool = True, at: tuple[int, int] | None = None
) -> None:
    """Box, ``#id label 87%`` above it and, at ``at`` (`place_panels`; None: beside the face), one bar per class of
    the smoothed probabilities (the shown class outlined)."""
    h, w = img.shape[:2]
    x, y, bw, bh = face.box
    color = class_color(face.label)
    cv2.rectangle(img, (x, y), (x + bw, y + bh), color, 2)
    _text(img, f"#{face.id} {face.label} {face.conf:.0%}", (x, max(16, y - 8)), 0.6, color, 2)
    if not bars:
        return
    panel = _names_panel(tuple(class_names))
    ph, pw = panel.shape[:2]
    label_w = pw - BAR_W - 4
    px, py = at if at is not None else place_panels([face.box], (ph, pw), (h, w))[0]
    sub = img[py : py + ph, px : px + pw]
    sub >>= 1  # darken behind the bars so they read on any background
    np.maximum(sub, panel[: sub.shape[0], : sub.shape[1]], out=sub)
    x0 = px + label_w
    for i, (name, p) in enumerate(zip(class_names, face.smoothed, strict=True)):
        top = py + 2 + i * ROW
        cv2.rectangle(img, (x0, top + 2), (x0 + int(BAR_W * float(p)), top + ROW - 2), class_color(name), -1)
        if name == face.label:
            cv2.rectangle(img, (x0, top + 1), (x0 + BAR_W, top + ROW - 1), (255, 255, 255), 1)


def draw(
    img: np.ndarray, faces: Sequence[Face], class_names: Sequence[str], fps: float | None = None, bars: bool = True
) -> np.ndarray:
    """Draw every face and the FPS onto ``img`` (in place) and return it: bars only where they cover no other
    face (`place_panels`)."""
    spots: list = [None] * len(faces)
    if bars and faces:
        panel = _names_panel(tuple(class_names)).shape[:2]
        spots = place_panels([f.box for f in faces], panel, img.shape[:2])
    for face, spot in zip(faces, spots, strict=True):
        draw_face(img, face, class_names, bars and spot is not None, spot)
    if fps is not None:
        _text(img, f"{fps:5.1f} FPS", (8, 22), 0.6, (255, 255, 255), 1)
    return img
