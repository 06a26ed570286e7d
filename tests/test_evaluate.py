"""scripts/evaluate.py needs nothing but the checkpoint: Lightning's test on any data config, a folder of class folders
included, writing the training run's metric keys, a confusion-matrix PNG and one predictions row per image."""

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, compose

from mimic.data.synthetic import draw_faces
from mimic.evaluate import ece, fit_temperature, run
from mimic.labels import FER2013_CLASSES
from mimic.models.classifier import class_scores
from mimic.models.figures import render_confusion

SMALL = ["data=synthetic", "data.sources.synthetic.n_train=14", "data.sources.synthetic.n_val=21"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _probabilities(row) -> list[float]:
    return [float(row[f"p_{c}"]) for c in FER2013_CLASSES]


def test_evaluate_command_writes_metrics_png_and_predictions(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate.py"),
            f"ckpt={tiny_checkpoint}",
            *SMALL,
            "data.sources.synthetic.n_test=70",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["n"] == 70 and metrics["split"] == "test" and metrics["checkpoint"] == str(tiny_checkpoint)
    for key in ["test/acc", "test/f1", "test/ece", "test/ece_uncalibrated", "test/nll", "test/temperature"]:
        assert 0 <= metrics[key] <= 20, key
    assert {f"test/recall_{c}" for c in FER2013_CLASSES} <= set(metrics)
    assert np.asarray(metrics["test/confusion_matrix"]).sum() == 70
    png = cv2.imread(str(out / "confusion_matrix.png"))
    assert png is not None and png.std() > 10
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 70 and rows[0]["image"] == "synthetic:test:0"
    right = [r["label"] == r["predicted"] for r in rows]
    assert np.mean(right) == pytest.approx(metrics["test/acc"])
    assert "test: accuracy" in proc.stdout and "Predictions: " in proc.stdout


def _face_folders(root, layout: str, per_class: int = 3) -> list:
    """JPEG photos of synthetic faces in class folders: ``indexed`` (0_happy/, colour) or ``kaggle`` (happy/, 48 px
    gray, as FER2013's Kaggle folders)."""
    rng = np.random.default_rng(0)
    files = []
    for i, name in enumerate(["happy", "sad", "surprise"]):
        folder = root / (f"{i}_{name}" if layout == "indexed" else name)
        folder.mkdir(parents=True)
        size, bgr = (96, True) if layout == "indexed" else (48, False)
        for k, face in enumerate(draw_faces([name] * per_class, size, rng, bgr=bgr)):
            files.append(folder / f"{k:02d}.jpg")
            cv2.imwrite(str(files[-1]), face)
    return files


@pytest.mark.parametrize("layout", ["indexed", "kaggle"])
def test_a_folder_of_class_folders_is_the_whole_test_set(tiny_checkpoint, tmp_path, layout, capsys):
    files = _face_folders(tmp_path / "faces", layout)
    overrides = [
        f"ckpt={tiny_checkpoint}",
        "data=folder",
        f"data.path={tmp_path / 'faces'}",
        "data.sources.folder.cache_dir=false",
    ]
    metrics = run(compose("evaluate", overrides, output_dir=tmp_path / "out"))
    assert metrics["n"] == len(files) == 9
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert sorted(r["image"] for r in rows) == sorted(map(str, files))
    for r in rows:
        assert r["source"] == "folder" and r["label"] == r["image"].split("/")[-2].split("_")[-1]
        assert sum(_probabilities(r)) == pytest.approx(1.0, abs=1e-4)
    assert np.asarray(metrics["test/confusion_matrix"]).sum() == 9
    assert cv2.imread(str(tmp_path / "out" / "confusion_matrix.png")) is not None
    # the folders hold 3 of the model's 7 classes: the other 4 have no recall and are left out of both means
    present = ["happy", "sad", "surprise"]
    saved = json.loads((tmp_path / "out" / "test_metrics.json").read_text())
    assert {c for c in FER2013_CLASSES if saved[f"test/recall_{c}"] is None} == set(FER2013_CLASSES) - set(present)
    recall = {c: np.mean([r["predicted"] == c for r in rows if r["label"] == c]) for c in present}
    hits = {c: sum(r["predicted"] == r["label"] == c for r in rows) for c in present}
    called = {c: sum(r["label"] == c for r in rows) + sum(r["predicted"] == c for r in rows) for c in present}
    f1 = {c: 2 * hits[c] / max(1, called[c]) for c in present}
    for c in present:
        assert saved[f"test/recall_{c}"] == pytest.approx(recall[c], abs=1e-6)
    assert saved["test/balanced_acc"] == pytest.approx(np.mean(list(recall.values())), abs=1e-6)
    assert saved["test/f1"] == pytest.approx(np.mean(list(f1.values())), abs=1e-6)
    out = capsys.readouterr().out
    assert "recall angry     n/a: no test image of this class" in out
    assert "balanced accuracy and macro-F1 are over the 3 classes with test images" in out


def test_probabilities_are_the_live_apps(tiny_checkpoint, tmp_path):
    """predictions.csv holds the checkpoint's calibrated probabilities (temperature and flip TTA as stored)."""
    from mimic.models.classifier import EmotionClassifier
    from mimic.preprocessing import image_to_tensor, to_model_image

    files = _face_folders(tmp_path / "faces", "indexed", per_class=1)
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["state_dict"]["temperature"] = torch.tensor(2.5)
    ckpt["hyper_parameters"]["tta_flip"] = True
    torch.save(ckpt, tmp_path / "calibrated.ckpt")
    overrides = [f"ckpt={tmp_path / 'calibrated.ckpt'}", "data=folder", f"data.path={tmp_path / 'faces'}"]
    run(compose("evaluate", overrides + ["data.sources.folder.cache_dir=false"], output_dir=tmp_path / "out"))
    rows = {r["image"]: _probabilities(r) for r in _rows(tmp_path / "out" / "predictions.csv")}
    model = EmotionClassifier.load(tmp_path / "calibrated.ckpt")
    x = image_to_tensor(np.stack([to_model_image(cv2.imread(str(f)), model.spec) for f in files]), model.spec)
    expected = model.predict_proba(x).numpy()
    assert np.allclose([rows[str(f)] for f in files], expected, atol=2e-6)
    assert not np.allclose(expected, model.predict_proba(x, calibrated=False).numpy(), atol=1e-3)


def test_split_val_tests_the_validation_split(tiny_checkpoint, tmp_path):
    metrics = run(compose("evaluate", [f"ckpt={tiny_checkpoint}", *SMALL, "split=val"], output_dir=tmp_path))
    assert metrics["split"] == "val" and metrics["n"] == 21
    rows = _rows(tmp_path / "predictions.csv")
    assert [r["image"] for r in rows] == [f"synthetic:val:{i}" for i in range(21)]


def test_accuracy_per_source(tiny_checkpoint, tmp_path):
    second = [f"+data.sources.drawn.{k}={v}" for k, v in [("n_train", 7), ("n_val", 7), ("n_test", 14), ("seed", 5)]]
    second += ["+data.sources.drawn._target_=mimic.data.synthetic.SyntheticSource", "+data.sources.drawn.name=drawn"]
    overrides = [f"ckpt={tiny_checkpoint}", *SMALL, "data.sources.synthetic.n_test=21", *second]
    metrics = run(compose("evaluate", overrides, output_dir=tmp_path))
    rows = _rows(tmp_path / "predictions.csv")
    assert metrics["n"] == len(rows) == 35
    for source, n in [("synthetic", 21), ("drawn", 14)]:
        right = [r["label"] == r["predicted"] for r in rows if r["source"] == source]
        assert len(right) == n and metrics[f"test/acc_{source}"] == pytest.approx(np.mean(right))


def test_tta_flip_override(tiny_checkpoint, tmp_path):
    base = [f"ckpt={tiny_checkpoint}", *SMALL, "split=val"]
    stored = run(compose("evaluate", base, output_dir=tmp_path / "stored"))
    flipped = run(compose("evaluate", [*base, "tta_flip=true"], output_dir=tmp_path / "flipped"))
    assert stored["tta_flip"] is False and flipped["tta_flip"] is True
    assert flipped["test/nll"] != pytest.approx(stored["test/nll"], abs=1e-6)


def test_a_class_without_images_is_left_out_of_the_means_and_a_missed_one_is_not():
    """CK+48 has no neutral face: a model that calls some faces neutral must not be scored a neutral F1 and recall of 0.
    A class that has faces but is never predicted keeps its F1 and recall of 0."""
    names = ["angry", "happy", "neutral", "fear"]
    confusion = torch.tensor(
        [  # rows: true angry, happy, neutral (none), fear (never predicted)
            [6, 1, 3, 0],
            [0, 8, 2, 0],
            [0, 0, 0, 0],
            [2, 2, 1, 0],
        ]
    )
    scores = class_scores(confusion, names, "test/")
    assert set(scores) == {"test/recall_angry", "test/recall_happy", "test/recall_fear", "test/f1", "test/balanced_acc"}
    assert float(scores["test/recall_angry"]) == pytest.approx(0.6) and float(scores["test/recall_fear"]) == 0
    assert float(scores["test/balanced_acc"]) == pytest.approx((0.6 + 0.8 + 0) / 3)
    f1_angry, f1_happy = 2 * 6 / (10 + 8), 2 * 8 / (10 + 11)  # 2TP / (row sum + column sum)
    assert float(scores["test/f1"]) == pytest.approx((f1_angry + f1_happy + 0) / 3)


def test_temperature_scaling_fixes_overconfidence():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (4000,), generator=gen)
    clean = torch.randn(4000, 5, generator=gen) + 2.0 * torch.nn.functional.one_hot(labels, 5)
    logits = clean * 4  # the same ranking, far too confident
    t = fit_temperature(logits, labels)
    assert 1.5 < t < 5.0  # the clean logits are themselves a little under-confident
    assert ece(logits, labels, t) < ece(logits, labels) / 3


def test_confusion_image_is_row_normalised_heatmap():
    img = render_confusion(np.array([[9, 1], [0, 10]]), ["happy", "sad"])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
