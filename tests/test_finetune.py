"""Fine-tuning: loading a checkpoint into a new class set, the start (finetune.ckpt or the bundled model), FER2013
merged when it is on disk, the whole `python train.py +finetune=webcam` path from a checkpoint trained on synthetic
faces onto synthetic class folders, atomic checkpoints, and the web page's background job run in-process."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SYNTHETIC, compose, load_script, train_tiny_checkpoint
from test_folders import write_fer2013_csv

from mimic.data.synthetic import write_class_folders
from mimic.finetune import AtomicCheckpointIO, configure_finetune, load_matching, prepare_finetune, resolve_checkpoint
from mimic.job_data import snapshot
from mimic.jobs import MODEL_FILE, run_job
from mimic.models.card import CheckpointError
from mimic.models.checkpoint import read_card, read_checkpoint
from mimic.models.classifier import EmotionClassifier

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


def test_the_start_is_finetune_ckpt_a_run_folder_or_the_bundled_model(synthetic_ckpt, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    best = run / "checkpoints" / "best-epoch001-acc0.5000.ckpt"
    shutil.copy(synthetic_ckpt, best)
    assert resolve_checkpoint(synthetic_ckpt) == (synthetic_ckpt, "finetune.ckpt")
    assert resolve_checkpoint(run) == (best, f"best checkpoint of run {run}")
    monkeypatch.setattr("mimic.models.bundled.bundled_path", lambda: synthetic_ckpt)
    assert resolve_checkpoint(None) == (synthetic_ckpt, "the bundled model")

    from omegaconf import OmegaConf

    prepare_finetune(_new_model(), OmegaConf.create({"finetune": {"ckpt": None, "head_init": "by_name"}}))
    out = capsys.readouterr().out
    assert f"Fine-tuning from {synthetic_ckpt} (the bundled model)" in out
    assert "head re-initialised for ['happy', 'sad', 'neutral']" in out and "3 class rows copied by name" in out


def test_init_from_starts_a_training_run_from_a_models_weights_under_the_runs_own_config(
    synthetic_ckpt, tmp_path, capsys, monkeypatch
):
    """`python train.py init_from=<ckpt>`: the net starts from the file's weights (an all but zero learning rate
    leaves them there), the run's own preprocessing is what its checkpoint carries, and nothing of the file's training
    state comes along (the run starts at epoch 0). With +finetune it is refused: both choose the starting weights. A bad
    file is refused before the data is read."""
    from mimic.errors import UserError
    from mimic.train import run

    extra = ["logger=none", "callbacks.lr_monitor=null", "calibrate=false", "test=false", "trainer.max_epochs=1"]
    start = read_checkpoint(synthetic_ckpt)["state_dict"]
    cfg = compose(
        "train",
        [
            *TINY_SYNTHETIC,
            *extra,
            f"init_from={synthetic_ckpt}",
            "model.preprocess.photometric=standardise",
            "model.optimizer.lr=1e-12",
            "model.optimizer.weight_decay=0",
        ],
        output_dir=tmp_path / "run",
    )
    results = run(cfg)
    assert f"Starting from {synthetic_ckpt} (init_from): 44 tensors copied, head kept" in capsys.readouterr().out
    card, ckpt = read_card(results["best_checkpoint"])
    assert card.preprocess.photometric == "standardise" and ckpt["epoch"] == 0
    learned = [k for k in start if k.endswith(("weight", "bias")) and k != "temperature"]
    assert len(learned) > 10
    assert all(torch.allclose(ckpt["state_dict"][k], start[k], atol=1e-6) for k in learned)

    with pytest.raises(UserError, match=r"init_from=.* and \+finetune=webcam both choose the starting weights"):
        run(compose("train", ["+finetune=webcam", f"init_from={synthetic_ckpt}", *extra], output_dir=tmp_path / "ft"))

    # a missing or bad file is refused by name before the data is read (FER2013's parse and a teacher's reading)
    def data_first(*_):
        raise AssertionError("the datamodule was built before init_from's file was checked")

    monkeypatch.setattr("mimic.train.datamodule_from_config", data_first)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    for bad in (tmp_path / "missing.ckpt", tmp_path / "junk.ckpt"):
        with pytest.raises(UserError, match=f"init_from.*{bad.name}"):
            run(compose("train", [*TINY_SYNTHETIC, *extra, f"init_from={bad}"], output_dir=tmp_path / "bad"))


@pytest.mark.parametrize(
    "merge, on_disk, kept, warned",
    [
        ("auto", True, True, False),
        ("auto", False, False, True),
        (False, True, False, False),
        (True, False, True, False),
    ],
)
def test_fer2013_joins_as_finetune_fer2013_says(synthetic_ckpt, tmp_path, caplog, merge, on_disk, kept, warned):
    csv_path = tmp_path / "fer2013.csv"
    if on_disk:
        write_fer2013_csv(csv_path, {"Training": 1, "PublicTest": 1, "PrivateTest": 1})
    cfg = compose(
        "train",
        ["+finetune=webcam", f"finetune.ckpt={synthetic_ckpt}", f"finetune.fer2013={str(merge).lower()}",
         f"data.path={csv_path}"],
        output_dir=tmp_path / "out",
    )  # fmt: skip
    configure_finetune(cfg)
    assert ("fer2013" in cfg.data.sources) is kept and list(cfg.data.sources)[0] == "webcam"
    assert ("forgetting of the other classes is not guarded against" in caplog.text) is warned
    assert f"FER2013 not found at {csv_path}" in caplog.text or not warned
    # the run takes over the checkpoint's net and preprocessing, whatever model= says (here: widths 32/64/128)
    card = read_card(synthetic_ckpt)[0]
    assert cfg.model.net.widths == card.net["widths"] == [8, 16, 32]
    assert cfg.model.preprocess.framing == card.preprocess.framing == "box"


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
    assert EmotionClassifier.load(best).class_names == CLASSES
    from mimic.models.predictor import Predictor

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


def test_finetune_without_fer2013_learns_the_folders_alone(synthetic_ckpt, tmp_path, caplog):
    """`python train.py +finetune=webcam` with no FER2013 on disk: the class folders alone, and a warning."""
    from mimic.train import run

    write_class_folders(tmp_path / "data" / "webcam", CLASSES, per_class=8, size=64)
    cfg = compose(
        "train",
        [
            "+finetune=webcam",
            f"finetune.ckpt={synthetic_ckpt}",
            f"paths.data_dir={tmp_path / 'data'}",
            "data.sources.webcam.cache_dir=false",
            "trainer.max_epochs=1",
            "logger=none",
            "callbacks.lr_monitor=null",
            "callbacks.progress_bar.refresh_rate=0",
        ],
        output_dir=tmp_path / "out",
    )
    results = run(cfg)
    assert "FER2013 not found at" in caplog.text and "not guarded against" in caplog.text
    assert read_card(results["best_checkpoint"])[0].class_names == CLASSES


def test_checkpoints_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "best.ckpt"
    io.save_checkpoint({"step": 1}, path)
    before = path.read_bytes()

    def dies_midway(obj, f):
        Path(f).write_bytes(b"half a checkp")
        raise SystemExit(143)  # SIGTERM while writing

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(SystemExit):
        io.save_checkpoint({"step": 2}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]


def test_a_job_writes_progress_its_model_and_the_report(synthetic_ckpt, tmp_path, monkeypatch):
    """`python -m mimic.jobs JOB` in-process: the web page's job, on a job folder as the server makes it."""

    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path / "cache"))
    fer = write_fer2013_csv(tmp_path / "fer2013.csv", {"Training": 4, "PublicTest": 2, "PrivateTest": 2})
    write_class_folders(tmp_path / "webcam", ["happy", "sad"], per_class=8, size=64)
    job_dir = tmp_path / "job"
    folders = {"happy": tmp_path / "webcam" / "0_happy", "sad": tmp_path / "webcam" / "1_sad"}
    split = snapshot(folders, job_dir / "data", ["happy", "sad"])
    assert split == {c: {"test": 2, "val": 1, "train": 5} for c in ("happy", "sad")}
    classes = read_card(synthetic_ckpt)[0].class_names
    job = {"base": str(synthetic_ckpt), "classes": classes, "epochs": 2, "freeze": ["conv1", "conv2"],
           "fer2013": True, "fer2013_path": str(fer)}  # fmt: skip
    (job_dir / "job.json").write_text(json.dumps(job))
    result = run_job(job_dir)

    assert result == json.loads((job_dir / "result.json").read_text()) and result["state"] == "done"
    assert result["model"] == str(job_dir / MODEL_FILE) and read_card(job_dir / MODEL_FILE)[0].class_names == classes
    progress = json.loads((job_dir / "progress.json").read_text())
    assert progress["phase"] == "evaluating" and [h["epoch"] for h in progress["history"]] == [1, 2]
    assert {"loss", "acc", "acc_fer2013", "acc_webcam"} <= set(progress["history"][-1])
    report = result["report"]
    happy, sad = classes.index("happy"), classes.index("sad")
    for when in ("before", "after"):
        held = np.array(report[when]["held_out"]["confusion"])
        assert report[when]["held_out"]["n"] == 4 and held[[happy, sad]].sum() == 4 and held.sum() == 4
        assert report[when]["fer2013"]["n"] == 14 and report["fer2013_classes"] == classes
    assert not list(job_dir.glob("*.ckpt.part")) and not list(job_dir.glob(".run/checkpoints/last*"))


def test_benchmark_finetune_script(synthetic_ckpt, tmp_path, capsys):
    bench = load_script("bench/benchmark_finetune")
    csv_path = write_fer2013_csv(tmp_path / "fer2013.csv", {"Training": 6, "PublicTest": 2, "PrivateTest": 4})
    write_class_folders(tmp_path / "folders", CLASSES, per_class=10, size=64)
    bench.main(
        [
            f"ckpt={synthetic_ckpt}",
            f"folders={tmp_path / 'folders'}",
            f"fer2013={csv_path}",
            "epochs=1",
            f"cache_dir={tmp_path / 'cache'}",
            f"out={tmp_path / 'out'}",
            f"json={tmp_path / 'r.json'}",
            "data.batch_size=16",
            "logger=none",
            "callbacks.lr_monitor=null",
            "callbacks.progress_bar.refresh_rate=0",
        ]
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["classes"] == CLASSES and report["held_out_photos"] == 9 and report["fer2013_test_rows"] == 12
    for when in ("before", "after"):
        assert 0 <= report[when]["photos"] <= 1 and 0 <= report[when]["fer2013"] <= 1
    assert Path(report["finetuned_ckpt"]).is_file()
    assert "held-out photos (9)" in capsys.readouterr().out
