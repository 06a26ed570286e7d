"""Metrics, temperature calibration and the pictures of a run: confusion matrix and a grid of sample predictions.

Used after fitting (train.py) and by ``scripts/evaluate.py``. Drawing is plain OpenCV, so no plotting dependency.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_recall,
)

from mimic.preprocessing import PreprocessSpec


@torch.no_grad()
def collect_logits(model: torch.nn.Module, batches: Iterable, device: str | torch.device = "cpu"):
    """Run ``model`` over (x, y, ...) batches; returns (logits float32 (N, C), labels (N,), sources (N,) or None)."""
    model.eval().to(device)
    logits, labels, sources = [], [], []
    for batch in batches:
        logits.append(model(batch[0].to(device)).float().cpu())
        labels.append(batch[1].cpu())
        if len(batch) > 2:
            sources.append(batch[2].cpu())
    if not logits:
        raise ValueError("no batches to evaluate: the split is empty")
    return torch.cat(logits), torch.cat(labels), (torch.cat(sources) if sources else None)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) on held-out data (Guo et al., 2017)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")
    logits, labels = logits.detach().float(), labels.detach()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def metrics_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], temperature: float = 1.0
) -> dict:
    """Accuracy, macro-F1, per-class recall, ECE (15 bins) with and without ``temperature``, confusion matrix."""
    n = len(class_names)
    probs = F.softmax(logits / temperature, dim=1)
    recall = multiclass_recall(probs, labels, n, average="none")
    return {
        "n": int(labels.numel()),
        "accuracy": float(multiclass_accuracy(probs, labels, n, average="micro")),
        "macro_f1": float(multiclass_f1_score(probs, labels, n, average="macro")),
        "per_class_recall": {c: float(r) for c, r in zip(class_names, recall)},
        "ece": float(multiclass_calibration_error(probs, labels, n, n_bins=15)),
        "ece_uncalibrated": float(multiclass_calibration_error(F.softmax(logits, 1), labels, n, n_bins=15)),
        "temperature": float(temperature),
        "nll": float(F.cross_entropy(logits / temperature, labels)),
        "confusion_matrix": multiclass_confusion_matrix(probs, labels, n).tolist(),
        "class_names": list(class_names),
    }


def write_json(path: str | Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


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
    """Grid of input crops (de-normalised) captioned 'pred p' in green when right, red when wrong. RGB uint8."""
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
        ok = int(pred[k]) == int(y[k])
        text = f"{class_names[int(pred[k])][:8]} {float(conf[k]):.2f}"
        cv2.putText(
            grid,
            text,
            (x0 + 2, y0 + side + 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (0, 150, 0) if ok else (220, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return grid
