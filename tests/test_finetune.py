"""Fine-tuning: loading a checkpoint into a new class set, finding the newest FER2013 run, and the whole
`python train.py +finetune=webcam` path from a checkpoint trained on synthetic faces onto synthetic class folders."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, compose, train_tiny_checkpoint
from test_folders import write_fer2013_csv

from mimic.data.synthetic import write_class_folders
from mimic.finetune import latest_fer2013_checkpoint, load_matching, prepare_finetune, resolve_checkpoint
from mimic.models import CheckpointError, EmotionClassifier, load_checkpoint, read_card, read_checkpoint

CLASSES = ["happy", "sad", "neutral"]
TINY_NET = ["model.net.widths=[8,16,32]", "model.net.hidden=32"]


@pytest.fixture(scope="module")
def synthetic_ckpt(tmp_path_factory) -> Path:
    """A 7-class tiny small_cnn trained a few steps on synthetic faces (widths 8/16/32, hidden 32)."""
    return train_tiny_checkpoint(tmp_path_factory.mktemp("ft") / "synthetic.ckpt", steps=4)


def _new_model(classes=CLASSES, widths=(8, 16, 32)) -> EmotionClassifier:
    return EmotionClassifier(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": list(widths), "hidden": 32},
        class_names=classes,
        log_images=False,
    )


def test_load_matching_copies_features_and_resets_or_maps_the_head(synthetic_ckpt):
    ckpt = read_checkpoint(synthetic_ckpt)
    old = ckpt["state_dict"]
    model = _new_model()
    done = load_matching(model, old, ckpt["hyper_parameters"]["class_names"])
    new = model.state_dict()
    assert done["head"] == "head.7" and not done["same_classes"]
    for key in ("net.conv1.0.weight", "net.conv3.1.running_var", "net.head.3.weight"):
        assert torch.equal(new[key], old[key])
    assert new["net.head.7.weight"].shape == (3, 32)
    mapped = _new_model()
    load_matching(mapped, old, ckpt["hyper_parameters"]["class_names"], head_init="by_name")
    # happy, sad, neutral are FER2013 rows 3, 4, 6
    assert torch.equal(mapped.state_dict()["net.head.7.weight"], old["net.head.7.weight"][[3, 4, 6]])
    assert torch.equal(mapped.state_dict()["net.head.7.bias"], old["net.head.7.bias"][[3, 4, 6]])


def test_incompatible_net_is_a_clear_error(synthetic_ckpt, tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"finetune": {"ckpt": str(synthetic_ckpt)}, "paths": {"log_dir": str(tmp_path)}})
    with pytest.raises(CheckpointError, match=r"does not fit the configured one.*net\.conv1\.0\.weight"):
        prepare_finetune(_new_model(widths=(4, 16, 32)), cfg)
    other = EmotionClassifier(
        net={"_target_": "mimic.models.resnet.resnet18", "weights": None}, class_names=CLASSES, log_images=False
    )
    with pytest.raises(CheckpointError, match=r"holds a mimic.models.small_cnn.small_cnn net.*resnet18"):
        prepare_finetune(other, cfg)


def _fake_run(log_dir: Path, name: str, source_target: str, ckpt: Path, finetune: bool = False) -> Path:
    run = log_dir / "train" / "runs" / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        f"data:\n  sources:\n    x:\n      _target_: {source_target}\n      path: ${{paths.data_dir}}/x\n"
        + ("finetune:\n  ckpt: null\n" if finetune else "")
    )
    (run / "checkpoints").mkdir()
    shutil.copy(ckpt, run / "checkpoints" / "best-epoch001-acc0.5000.ckpt")
    shutil.copy(ckpt, run / "checkpoints" / "last.ckpt")
    return run / "checkpoints" / "best-epoch001-acc0.5000.ckpt"


def test_newest_fer2013_run_is_found(synthetic_ckpt, tmp_path, capsys):
    logs = tmp_path / "outputs"
    with pytest.raises(CheckpointError, match=r"no FER2013 training run.*finetune\.ckpt="):
        latest_fer2013_checkpoint(logs)
    older = _fake_run(logs, "a", "mimic.data.fer2013.FER2013Source", synthetic_ckpt)
    newer = _fake_run(logs, "b", "mimic.data.fer2013.FER2013Source", synthetic_ckpt)
    not_fer = _fake_run(logs, "c", "mimic.data.synthetic.SyntheticSource", synthetic_ckpt)
    finetuned = _fake_run(logs, "d", "mimic.data.fer2013.FER2013Source", synthetic_ckpt, finetune=True)
    now = time.time()
    for i, p in enumerate([older, newer, not_fer, finetuned]):
        os.utime(p, (now + i, now + i))
    assert latest_fer2013_checkpoint(logs) == newer
    assert resolve_checkpoint(None, logs) == (newer, f"newest FER2013 run under {logs}")
    assert resolve_checkpoint(older.parent.parent, logs)[0] == older  # a run folder works as finetune.ckpt

    from omegaconf import OmegaConf

    prepare_finetune(_new_model(), OmegaConf.create({"finetune": {"ckpt": None}, "paths": {"log_dir": str(logs)}}))
    out = capsys.readouterr().out
    assert f"Fine-tuning from {newer}" in out and "head re-initialised for ['happy', 'sad', 'neutral']" in out


def _finetune_cfg(tmp_path: Path, ckpt: Path, out: str, extra: list[str] = ()):
    csv_path = tmp_path / "fer2013.csv"
    if not csv_path.exists():
        write_fer2013_csv(csv_path, {"Training": 8, "PublicTest": 3, "PrivateTest": 3})
        write_class_folders(tmp_path / "data" / "webcam", CLASSES, per_class=12, size=64)
    return compose(
        "train",
        [
            "+finetune=webcam",
            f"finetune.ckpt={ckpt}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.log_dir={tmp_path / 'outputs'}",
            f"data.sources.fer2013.path={csv_path}",
            f"+data.sources.fer2013.cache_dir={tmp_path / 'cache'}",
            "data.sources.webcam.cache_dir=false",
            "data.batch_size=16",
            *TINY_NET,
            "trainer.max_epochs=2",
            "logger=none",
            "+logger.csv._target_=lightning.pytorch.loggers.CSVLogger",
            f"+logger.csv.save_dir={tmp_path / out}",
            "+logger.csv.name=csv",
            "callbacks.progress_bar.refresh_rate=0",
            # Lightning 2.6 writes last.ckpt only together with a top-k checkpoint: keep every epoch so last is last
            "callbacks.model_checkpoint.save_top_k=-1",
            *extra,
        ],
        output_dir=tmp_path / out,
    )


@pytest.fixture(scope="module")
def finetuned(synthetic_ckpt, tmp_path_factory):
    """`python train.py +finetune=webcam` (composed in-process) for two epochs: (tmp dir, results, stdout)."""
    import contextlib
    import io

    from mimic.train import run

    tmp = tmp_path_factory.mktemp("finetune")
    cfg = _finetune_cfg(tmp, synthetic_ckpt, "run1")
    assert list(cfg.callbacks.freeze.patterns) == ["conv1", "conv2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = run(cfg)
    return tmp, results, out.getvalue()


def test_train_finetune_webcam_end_to_end(synthetic_ckpt, finetuned):
    tmp, results, stdout = finetuned
    assert f"Fine-tuning from {synthetic_ckpt} (finetune.ckpt)" in stdout
    start = read_checkpoint(synthetic_ckpt)["state_dict"]
    best = Path(results["best_checkpoint"])
    for path in (best, tmp / "run1" / "checkpoints" / "last.ckpt"):
        tuned = read_checkpoint(path)["state_dict"]
        frozen = [k for k in tuned if k.startswith(("net.conv1.", "net.conv2."))]
        assert any("running_mean" in k for k in frozen) and any("num_batches_tracked" in k for k in frozen)
        assert all(torch.equal(tuned[k], start[k]) for k in frozen), "conv1/conv2 changed"
        assert not torch.equal(tuned["net.conv3.0.weight"], start["net.conv3.0.weight"])
        assert not torch.equal(tuned["net.head.3.weight"], start["net.head.3.weight"])

    # a checkpoint the realtime app and evaluate.py accept: self-describing, loads without pickled code
    assert load_checkpoint(best).class_names == CLASSES
    from mimic.realtime.predictor import Predictor

    assert Predictor(best).class_names == CLASSES

    # validation metrics per source as well as overall
    with open(tmp / "run1" / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {"val/acc", "val/acc_fer2013", "val/acc_webcam"} <= logged


def test_resumed_finetune_keeps_conv1_conv2_frozen(synthetic_ckpt, finetuned):
    from mimic.train import run

    tmp = finetuned[0]
    start = read_checkpoint(synthetic_ckpt)["state_dict"]
    last = tmp / "run1" / "checkpoints" / "last.ckpt"
    resumed = run(_finetune_cfg(tmp, synthetic_ckpt, "run2", [f"ckpt_path={last}", "trainer.max_epochs=3"]))
    after = read_checkpoint(tmp / "run2" / "checkpoints" / "last.ckpt")
    assert after["epoch"] == 2
    frozen = [k for k in start if k.startswith(("net.conv1.", "net.conv2."))]
    assert all(torch.equal(after["state_dict"][k], start[k]) for k in frozen)
    before_resume = read_checkpoint(last)["state_dict"]
    assert not torch.equal(after["state_dict"]["net.conv3.0.weight"], before_resume["net.conv3.0.weight"])
    assert resumed["class_names"] == CLASSES
    assert read_card(tmp / "run2" / "checkpoints" / "last.ckpt")[0].class_names == CLASSES


def test_train_finetune_without_fer2013_run_fails_cleanly(tmp_path):
    csv_path = write_fer2013_csv(tmp_path / "fer2013.csv", {"Training": 1, "PublicTest": 1, "PrivateTest": 1})
    write_class_folders(tmp_path / "webcam", CLASSES, per_class=2, size=48)
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "+finetune=webcam",
            f"paths.log_dir={tmp_path / 'outputs'}",
            f"data.sources.fer2013.path={csv_path}",
            f"data.sources.webcam.root={tmp_path / 'webcam'}",
            "logger=none",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: finetune: no FER2013 training run with a checkpoint under" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_benchmark_finetune_script(synthetic_ckpt, tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("benchmark_finetune", REPO / "scripts" / "benchmark_finetune.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    csv_path = write_fer2013_csv(tmp_path / "fer2013.csv", {"Training": 6, "PublicTest": 2, "PrivateTest": 4})
    write_class_folders(tmp_path / "folders", CLASSES, per_class=10, size=64)
    bench.main(
        [
            "--ckpt",
            str(synthetic_ckpt),
            "--folders",
            str(tmp_path / "folders"),
            "--fer2013",
            str(csv_path),
            "--epochs",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
            "--json",
            str(tmp_path / "r.json"),
            "-o",
            "data.batch_size=16",
            "-o",
            "logger=none",
            "-o",
            "callbacks.lr_monitor=null",
            "-o",
            "callbacks.progress_bar.refresh_rate=0",
        ]
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["classes"] == CLASSES and report["held_out_photos"] == 9 and report["fer2013_test_rows"] == 12
    for when in ("before", "after"):
        assert 0 <= report[when]["photos"] <= 1 and 0 <= report[when]["fer2013"] <= 1
    assert Path(report["finetuned_ckpt"]).is_file()
    assert "held-out photos (9)" in capsys.readouterr().out
