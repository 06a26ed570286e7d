"""The pictures of an analysis (`mimic.analysis`), drawn with plain OpenCV like the run's other figures:

- `timeline`: a panel per person: their picture, their smoothed probabilities over the video's time (a line per
  class, in the live overlay's class colours), the label shown as a band beneath, and the scene cuts as grey lines;
- `contact_sheet`: a grid of the faces found in photos, each with its label and confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from mimic.realtime.overlay import FONT, class_color

THUMB = 96  # pixels: a person's picture in the timeline, a face in the contact sheet
PLOT_W, PLOT_H, BAND_H, MARGIN = 760, 110, 12, 12
LEFT = THUMB + 2 * MARGIN
COLS = 8  # contact sheet: faces a row
MAX_FACES = 400  # contact sheet: faces shown (the rest are counted under it)


def _legend(names: Sequence[str], width: int) -> np.ndarray:
    img = np.full((28, width, 3), 255, np.uint8)
    x = LEFT
    for name in names:
        cv2.rectangle(img, (x, 9), (x + 14, 21), class_color(name), -1)
        cv2.putText(img, name, (x + 18, 20), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 26 + 9 * len(name)
    return img


def _panel(track: Any, names: Sequence[str], duration: float, cuts: Sequence[float]) -> np.ndarray:
    height = MARGIN + PLOT_H + 4 + BAND_H + 18
    img = np.full((height, LEFT + PLOT_W + MARGIN, 3), 255, np.uint8)
    if track.picture is not None:
        img[MARGIN : MARGIN + THUMB, MARGIN : MARGIN + THUMB] = track.picture
    seen = f"#{track.id}  {len(track.times) and track.times[-1] - track.times[0]:.1f} s"
    cv2.putText(img, seen, (MARGIN, MARGIN + THUMB + 16), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    top, left = MARGIN, LEFT
    span = max(duration, 1e-6)

    def x_of(t: float) -> int:
        return left + int(round(min(max(t / span, 0.0), 1.0) * (PLOT_W - 1)))

    cv2.rectangle(img, (left, top), (left + PLOT_W - 1, top + PLOT_H), (235, 235, 235), -1)
    for cut in cuts:
        cv2.line(img, (x_of(cut), top), (x_of(cut), top + PLOT_H + 4 + BAND_H), (150, 150, 150), 1)
    times = np.asarray(track.times)
    smoothed = np.asarray(track.smoothed)
    xs = np.array([x_of(t) for t in times])
    # a gap longer than a second (the person out of view) breaks the lines
    breaks = np.flatnonzero(np.diff(times) > 1.0) + 1
    for k, name in enumerate(names):
        ys = top + PLOT_H - np.round(smoothed[:, k] * PLOT_H).astype(int)
        for part in np.split(np.stack([xs, ys], 1), breaks):
            if len(part) > 1:
                cv2.polylines(img, [part.astype(np.int32)], False, class_color(name), 1, cv2.LINE_AA)
    band = top + PLOT_H + 4
    for i, label in enumerate(track.labels):  # the label shown, frame by frame
        x1 = xs[i + 1] if i + 1 < len(xs) and i + 1 not in breaks else xs[i] + 1
        cv2.rectangle(img, (xs[i], band), (max(xs[i], x1 - 1), band + BAND_H), class_color(label), -1)
    for k in range(0, 11):  # a tick every tenth of the video
        t = duration * k / 10
        cv2.line(img, (x_of(t), band + BAND_H), (x_of(t), band + BAND_H + 3), (0, 0, 0), 1)
        text = f"{t:.0f}s" if duration >= 10 else f"{t:.1f}s"
        at = min(x_of(t) - 8, img.shape[1] - 8 * len(text))
        cv2.putText(img, text, (at, band + BAND_H + 15), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def timeline(tracks: Sequence[Any], names: Sequence[str], duration: float, cuts: Sequence[float]) -> np.ndarray:
    """The timeline of ``tracks`` (`mimic.analysis.Track`, BGR): the class legend, then a panel per person; a note
    when there is none."""
    width = LEFT + PLOT_W + MARGIN
    parts = [_legend(names, width)]
    parts += [_panel(t, names, duration, cuts) for t in tracks]
    if not tracks:
        note = np.full((40, width, 3), 255, np.uint8)
        cv2.putText(note, "no person on screen long enough (min_track_s)", (LEFT, 26), FONT, 0.5, (0, 0, 0), 1)
        parts.append(note)
    return np.vstack(parts)


def contact_sheet(pictures: Sequence[np.ndarray], labels: Sequence[str], confs: Sequence[float]) -> np.ndarray:
    """The faces in a grid of `COLS` a row (at most `MAX_FACES`), each with its label and confidence (BGR)."""
    cell = THUMB + 22
    shown = list(pictures[:MAX_FACES])
    cols = max(2, min(COLS, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    img = np.full((rows * cell + MARGIN + 24, cols * (THUMB + 6) + MARGIN, 3), 255, np.uint8)
    for i, (pic, label, conf) in enumerate(zip(shown, labels, confs)):
        x, y = MARGIN // 2 + (i % cols) * (THUMB + 6), MARGIN // 2 + (i // cols) * cell
        img[y : y + THUMB, x : x + THUMB] = pic
        cv2.rectangle(img, (x, y + THUMB), (x + THUMB - 1, y + THUMB + 18), class_color(label), -1)
        cv2.putText(img, f"{label} {conf:.0%}", (x + 3, y + THUMB + 13), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    note = f"{len(pictures)} faces" + (f" ({MAX_FACES} shown)" if len(pictures) > MAX_FACES else "")
    if not pictures:
        note = "no face found"
    cv2.putText(img, note, (MARGIN // 2, img.shape[0] - 8), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img
