"""scripts/evaluate.py needs nothing but the checkpoint: metrics JSON and a confusion-matrix PNG on any data config."""

import json
import subprocess
import sys

import cv2
import numpy as np
import torch
from conftest import REPO

from mimic.evaluation import fit_temperature, metrics_from_logits, render_confusion


def test_evaluate_any_checkpoint_on_any_data(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate.py"),
            f"ckpt={tiny_checkpoint}",
            "data=synthetic",
            "data.sources.synthetic.n_train=14",
            "data.sources.synthetic.n_val=14",
            "data.sources.synthetic.n_test=70",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 70 and metrics["split"] == "test"
    assert set(metrics["per_class_recall"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    for key in ["accuracy", "macro_f1", "ece", "ece_uncalibrated", "temperature"]:
        assert 0 <= metrics[key] <= 20
    png = cv2.imread(str(out / "confusion_matrix.png"))
    assert png is not None and png.std() > 10


def test_temperature_scaling_fixes_overconfidence():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (4000,), generator=gen)
    clean = torch.randn(4000, 5, generator=gen) + 2.0 * torch.nn.functional.one_hot(labels, 5)
    logits = clean * 4  # the same ranking, far too confident
    t = fit_temperature(logits, labels)
    assert 1.5 < t < 5.0  # the clean logits are themselves a little under-confident
    before = metrics_from_logits(logits, labels, list("abcde"))
    after = metrics_from_logits(logits, labels, list("abcde"), t)
    assert after["accuracy"] == before["accuracy"]
    assert after["ece"] < before["ece"] / 3


def test_confusion_image_is_row_normalised_heatmap():
    img = render_confusion(np.array([[9, 1], [0, 10]]), ["happy", "sad"])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
