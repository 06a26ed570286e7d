"""One inference path (issue 10): the live app shows, for a face, the probabilities that evaluation measured.

The same photos go through `scripts/evaluate.py ... data=folder` (a folder of class folders, face-cropped at load time)
and through the realtime app with that folder's images as its source; the realtime CSV log and evaluate's
predictions CSV must agree, photo by photo, with the checkpoint's own settings (flip TTA and temperature) on both.
"""

from __future__ import annotations

import csv
import shutil

import cv2
import numpy as np
import torch
from conftest import compose

from mimic.data.synthetic import draw_face
from mimic.evaluate import run as run_evaluate
from mimic.models.checkpoint import read_checkpoint

CLASSES = ("happy", "angry", "neutral")
LOOKS = (dict(skin=190.0, background=60.0, hair=1), dict(skin=150.0, background=215.0, hair=2))


def _photos(root, flat) -> dict[str, str]:
    """Large photos with one cartoon face each in ``root/<k>_<class>/``, copied under names that keep their order into
    ``flat`` (the realtime source); returns {flat name: the photo's path in the class folders}."""
    rng = np.random.default_rng(0)
    flat.mkdir()
    where = {}
    for k, name in enumerate(CLASSES):
        (root / f"{k}_{name}").mkdir(parents=True)
        for i, look in enumerate(LOOKS):
            frame = np.full((300, 400, 3), look["background"], np.uint8)
            x, y = int(rng.integers(0, 140)), int(rng.integers(0, 40))
            frame[y : y + 256, x : x + 256] = draw_face(name, 256, bgr=True, scale=0.8, **look)
            path = root / f"{k}_{name}" / f"{i}.jpg"
            cv2.imwrite(str(path), frame)
            flat_name = f"{k}{i}.jpg"
            shutil.copy(path, flat / flat_name)
            where[flat_name] = str(path)
    return where


def test_realtime_log_shows_the_probabilities_evaluate_measured(tiny_checkpoint, tmp_path):
    ckpt = read_checkpoint(tiny_checkpoint)  # give the checkpoint a temperature and flip TTA, so both must apply them
    ckpt["hyper_parameters"]["tta_flip"] = True
    ckpt["state_dict"]["temperature"] = torch.tensor(1.7)
    path = tmp_path / "calibrated.ckpt"
    torch.save(ckpt, path)
    where = _photos(tmp_path / "faces", tmp_path / "flat")

    run_evaluate(
        compose(
            "evaluate",
            [f"ckpt={path}", "data=folder", f"data.path={tmp_path / 'faces'}", "data.sources.folder.cache_dir=false"],
            output_dir=tmp_path / "eval",
        )
    )
    with open(tmp_path / "eval" / "predictions.csv") as f:
        evaluated = {row["image"]: row for row in csv.DictReader(f)}

    from mimic.realtime.window import run as run_realtime

    log = tmp_path / "live.csv"
    cfg = compose(
        "realtime",
        [
            f"ckpt={path}",
            f"source={tmp_path / 'flat'}",
            "display=false",
            "faces=largest",
            "reactions.enabled=false",
            f"log.path={log}",
        ],
        output_dir=tmp_path / "live",
    )
    run_realtime(cfg)
    with open(log) as f:
        live = list(csv.DictReader(f))

    names = sorted(where)
    assert len(live) == len(names) == len(evaluated), "every photo gives one face in both"
    for row in live:
        photo = evaluated[where[names[int(row["frame"])]]]
        for name in ckpt["hyper_parameters"]["class_names"]:
            assert abs(float(row[f"p_{name}"]) - float(photo[f"p_{name}"])) < 1e-3, (photo["image"], name)
