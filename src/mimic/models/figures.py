"""The pictures of a run, drawn with plain OpenCV (no plotting dependency): the confusion matrix and a grid of
sample predictions, which training logs to TensorBoard and evaluation writes as ``confusion_matrix.png``."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from mimic.preprocessing import PreprocessSpec


def render_confusion(confusion: np.ndarray, class_names: Sequence[str], cell: int = 56) -> np.ndarray:
    """Row-normalised confusion matrix as an RGB uint8 image: rows are true classes, columns predictions."""
    confusion = np.asarray(confusion, dtype=np.float64)
    n = len(class_names)
    norm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    left, top = 90, 70
    img = np.full((top + n * cell + 10, left + n * cell + 10, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(n):
        for j in range(n):
            v = norm[i, j]
            shade = int(255 * (1 - v))
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (shade, shade, 255), -1)
            color = (255, 255, 255) if v > 0.5 else (0, 0, 0)
            cv2.putText(img, f"{v:.2f}", (x0 + 6, y0 + cell // 2 + 5), font, 0.45, color, 1, cv2.LINE_AA)
        cv2.putText(img, class_names[i][:9], (4, top + i * cell + cell // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, class_names[i][:7], (left + i * cell + 2, top - 8), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "true \\ predicted", (4, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def render_samples(
    x: torch.Tensor,
    y: torch.Tensor,
    probs: torch.Tensor,
    class_names: Sequence[str],
    spec: PreprocessSpec,
    cols: int = 8,
    scale: int = 2,
) -> np.ndarray:
    """Grid of input crops (de-normalised through the spec's mean and std: a ``photometric: standardise`` face shows
    as the net sees it, at mid grey with its own spread) captioned 'pred p' in green when right, red when wrong. RGB
    uint8."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(spec.std).view(1, -1, 1, 1) * 255
    imgs = (x.float() * std + mean).clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    side = spec.size * scale
    rows = (len(imgs) + cols - 1) // cols
    grid = np.full((rows * (side + 18), cols * side, 3), 255, np.uint8)
    conf, pred = probs.max(1)
    for k, im in enumerate(imgs):
        im = cv2.resize(im, (side, side), interpolation=cv2.INTER_NEAREST)
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2RGB) if im.ndim == 2 else im
        r, c = divmod(k, cols)
        y0, x0 = r * (side + 18), c * side
        grid[y0 : y0 + side, x0 : x0 + side] = im
        color = (0, 150, 0) if int(pred[k]) == int(y[k]) else (220, 0, 0)
        text = f"{class_names[int(pred[k])][:8]} {float(conf[k]):.2f}"
        cv2.putText(grid, text, (x0 + 2, y0 + side + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)
    return grid
