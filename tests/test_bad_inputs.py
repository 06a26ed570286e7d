"""Bad inputs fed to the real commands (issue 9): each case asserts its outcome. A user mistake is a non-zero exit
(2 for mimic's own checks) with a message naming the file or setting and no traceback; where mimic carries on (a new
numbered log, a headless run) the notice is printed; nothing the user made changes (files byte-identical after).
A few cases run the real commands in a subprocess, the rest go in-process through the same error handling.

Sections: settings of the wrong type or range; checkpoints that must not run code (and resume / fine-tune from bad
files); the realtime app's logs, recordings and display; bad data said out loud (class folders, faceless photos,
unread files, the face-crop cache, merges); evaluation on bad folders and splits.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, TINY_SYNTHETIC, compose, load_script
from omegaconf import OmegaConf
from test_realtime_app import compose_cfg
from test_realtime_parts import load_video_maker

from mimic.cli import user_errors
from mimic.data.base import DataError
from mimic.data.folders import FolderSource
from mimic.data.synthetic import draw_faces, write_class_folders
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.evaluate import run as run_evaluate
from mimic.export import main as export_main
from mimic.finetune import prepare_finetune, start_from
from mimic.haar import HaarDetector
from mimic.models.card import CheckpointError
from mimic.models.checkpoint import check_resume, load_net
from mimic.models.classifier import EmotionClassifier
from mimic.models.predictor import Predictor
from mimic.settings import check_settings
from mimic.yunet import YuNetDetector

# ==============================================================================================================
# Settings of the wrong type or range
# ==============================================================================================================
NEEDS_CKPT = {"evaluate", "realtime"}

BAD = [  # command, overrides; the last override is the bad setting the message must name
    ("train", ["data.batch_size=abc"]),
    ("train", ["data.batch_size=0"]),
    ("train", ["data.batch_size=64.5"]),
    ("train", ["data.num_workers=-2"]),
    ("train", ["data.classes=happy"]),
    ("train", ["data.classes=[]"]),
    ("train", ["model.optimizer.lr=fast"]),
    ("train", ["model.optimizer.lr=0"]),
    ("train", ["model.optimizer.lr=nan"]),
    ("train", ["model.label_smoothing=1.5"]),
    ("train", ["model.mixup=-0.2"]),
    ("train", ["model.sam=-0.05"]),
    ("train", ["logit_adjust=-0.5"]),
    ("train", ["logit_adjust=auto"]),
    ("train", ["model.net.dropout=-0.1"]),
    ("train", ["model.tta_flip=maybe"]),
    ("train", ["model.class_weights=heavy"]),
    ("train", ["trainer.max_epochs=-1"]),
    ("train", ["trainer.max_epochs=abc"]),
    ("train", ["trainer.precision=fast"]),
    ("train", ["trainer.devices=0"]),
    ("train", ["debug=limit", "trainer.limit_train_batches=1.5"]),
    ("train", ["seed=x"]),
    ("train", ["seed=-1"]),
    ("train", ["threads=0"]),
    ("train", ["calibrate=maybe"]),
    ("train", ["test=1"]),
    ("train", ["callbacks.early_stopping.patience=-1"]),
    ("train", ["+finetune=webcam", "finetune.head_init=random"]),
    ("train", ["+finetune=webcam", "data.sources.webcam.detect_faces=maybe"]),
    ("train", ["+finetune=webcam", "data.sources.webcam.val_fraction=1"]),
    (
        "train",
        [
            "+finetune=webcam",
            "detector@data.sources.webcam.detector=haar",
            "data.sources.webcam.detector.min_neighbors=few",
        ],
    ),
    ("evaluate", ["data=folder", "data.path=faces", "data.sources.folder.detect_faces=maybe"]),
    ("evaluate", ["split=foo"]),
    ("evaluate", ["batch_size=0"]),
    ("evaluate", ["tta_flip=maybe"]),
    ("evaluate", ["data.batch_size=abc"]),
    ("evaluate", ["threads=0"]),
    ("realtime", ["display=maybe"]),
    ("realtime", ["max_frames=0"]),
    ("realtime", ["max_frames=abc"]),
    ("realtime", ["detect_every=0"]),
    ("realtime", ["max_faces=0"]),
    ("realtime", ["faces=some"]),
    ("realtime", ["source=-1"]),
    ("realtime", ["threads=0"]),
    ("realtime", ["folder_fps=0"]),
    ("realtime", ["smoothing.half_life=-1"]),
    ("realtime", ["smoothing.half_life=11"]),
    ("realtime", ["reactions.hold_s=-1"]),
    ("realtime", ["reactions.volume=loud"]),
    ("realtime", ["reactions.popup_position=[1,2,3]"]),
    ("realtime", ["tracker.iou_threshold=0"]),
    ("realtime", ["camera.width=wide"]),
    ("realtime", ["log.enabled=yes"]),
    ("realtime", ["detector=haar", "detector.min_face=2"]),
    ("realtime", ["detector=yunet", "detector.score_threshold=1.5"]),
]


def _check(command: str, overrides: list[str]) -> None:
    extra = ["ckpt=x.ckpt"] if command in NEEDS_CKPT else []
    check_settings(compose(command, [*extra, *overrides]), command)


@pytest.mark.parametrize(("command", "overrides"), BAD, ids=[f"{c}:{' '.join(o)}" for c, o in BAD])
def test_bad_setting_is_named_with_what_it_expects(command, overrides):
    with pytest.raises(UserError) as e:
        _check(command, overrides)
    message = str(e.value)
    key = overrides[-1].split("=", 1)[0]
    assert message.startswith(f"{overrides[-1]}: expected "), message
    assert f"(e.g. {key}=" in message
    assert "\n" not in message  # only the bad setting is reported


def test_message_reads_as_documented():
    with pytest.raises(UserError) as e:
        _check("train", ["data.batch_size=abc"])
    assert str(e.value) == "data.batch_size=abc: expected a whole number of at least 1 (e.g. data.batch_size=64)"


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(UserError) as e:
        _check("realtime", ["display=maybe", "faces=some", "smoothing.half_life=-1"])
    lines = str(e.value).splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["display=maybe", "faces=some", "smoothing.half_life=-1"]


def test_evaluate_without_ckpt_is_a_valid_setting():  # the bundled model is the default (tests/test_bundled.py)
    check_settings(compose("evaluate", ["data=synthetic"]), "evaluate")


GOOD = [  # values at the edges of their ranges, and every form a setting may take
    ("train", ["data.classes=[happy,sad]", "model.optimizer.lr=1", "trainer.precision=bf16-mixed"]),
    ("train", ["debug=limit", "trainer.precision=16", "trainer.devices=auto", "trainer.limit_train_batches=0.5"]),
    ("train", ["debug=fdr", "trainer.limit_val_batches=3", "trainer.fast_dev_run=5", "threads=null"]),
    ("train", ["model.class_weights=[1,2.5,1,1,1,1,1]", "trainer.devices=[0,1]", "trainer.deterministic=warn"]),
    ("train", ["trainer.max_steps=-1", "seed=0", "ckpt_path=last.ckpt", "model.label_smoothing=0"]),
    ("train", ["logit_adjust=true", "logit_adjust=0.3", "logit_adjust=0", "logit_adjust=false"]),
    ("realtime", ["display=false", "source=clip.mp4", "smoothing.half_life=0", "max_frames=1"]),
    ("realtime", ["predictor.tta_flip=true", "smoothing.half_life=10", "smoothing.margin=1"]),
    ("realtime", ["source=2", "reactions.popup_position=[10,20]", "camera.fps=30", "detector=yunet"]),
    ("evaluate", ["split=val", "tta_flip=true", "data=synthetic", "threads=2"]),
]


@pytest.mark.parametrize(("command", "overrides"), GOOD, ids=[f"{c}:{' '.join(o)}" for c, o in GOOD])
def test_good_settings_pass(command, overrides):
    _check(command, overrides)


def test_settings_import_nothing_heavy():
    """The check runs before anything heavy is imported; realtime.py's start-up stays light."""
    code = "import sys, mimic.settings; print(sorted({'torch', 'lightning', 'cv2', 'hydra'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


COMMANDS = {  # through the real commands: exit 2, the setting named, no traceback
    "train": (["train.py", "data.batch_size=abc"], "data.batch_size=abc: expected a whole number of at least 1"),
    "realtime": (["realtime.py", "display=maybe"], "display=maybe: expected true or false"),
    "evaluate": (["scripts/evaluate.py", "data=synthetic", "batch_size=0"], "batch_size=0: expected a whole number"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("settings")
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / argv[0]), *argv[1:], f"hydra.run.dir={tmp}/{name}"],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (argv, _) in COMMANDS.items()
    }
    outputs = {name: p.communicate(timeout=300) for name, p in procs.items()}  # reads the pipes: they never fill up
    return {name: (procs[name].returncode, *outputs[name]) for name in procs}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_refuses_bad_setting(runs, name):
    code, out, err = runs[name]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err + out
    assert err.startswith(f"error: {COMMANDS[name][1]}"), err


# ==============================================================================================================
# Checkpoints that must not run code; resume and fine-tune from bad files
# ==============================================================================================================
TARGETS = ("builtins.open", "os.system", "subprocess.Popen", "importlib.import_module")
USER_FILE = b"the user's own notes\n"
EVIL_MODULE = "mimic_evil_payload"


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """(payload maker, check): payloads that would truncate a user file or create a marker file, and a check that
    neither happened."""
    victim, marker = tmp_path / "notes.txt", tmp_path / "PWNED"
    victim.write_bytes(USER_FILE)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / f"{EVIL_MODULE}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))

    def payload(target: str) -> dict:
        return {
            "builtins.open": {"_target_": "builtins.open", "_args_": [str(victim), "w"]},
            "os.system": {"_target_": "os.system", "_args_": [f"touch {marker}"]},
            "subprocess.Popen": {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]},
            "importlib.import_module": {"_target_": "importlib.import_module", "name": EVIL_MODULE},
        }[target]

    def untouched() -> bool:
        return victim.read_bytes() == USER_FILE and not marker.exists() and EVIL_MODULE not in sys.modules

    return payload, untouched


def test_the_payloads_are_live(trap, tmp_path):
    """What the checkpoints below carry does harm when called as Hydra would call it (so the tests can fail)."""
    import importlib

    payload, untouched = trap
    for target in TARGETS:
        kwargs = dict(payload(target))
        module, name = kwargs.pop("_target_").rsplit(".", 1)
        result = getattr(importlib.import_module(module), name)(*kwargs.pop("_args_", []), **kwargs)
        if hasattr(result, "wait"):
            result.wait()
        if hasattr(result, "close"):
            result.close()
    assert (tmp_path / "notes.txt").read_bytes() == b"" and (tmp_path / "PWNED").exists()
    assert not untouched()
    sys.modules.pop(EVIL_MODULE)


def _place(hp: dict, where: str, evil: dict) -> None:
    """Put ``evil`` into the hyper-parameters at ``where``."""
    if where == "net":  # the net's own _target_
        hp["net"] = evil
    elif where == "net.dropout":
        hp["net"]["dropout"] = evil
    elif where == "net.widths[1]":
        hp["net"]["widths"][1] = evil
    elif where == "net.deep":
        hp["net"]["hidden"] = {"a": [{"b": evil}]}
    elif where == "net._args_":
        hp["net"]["_args_"] = [evil]
    elif where == "optimizer":
        hp["optimizer"] = evil
    elif where == "optimizer.lr":
        hp["optimizer"] = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": evil}
    elif where == "scheduler":
        hp["scheduler"] = {**evil, "_partial_": True}
    elif where == "class_names[0]":
        hp["class_names"][0] = evil
    elif where == "preprocess":
        hp["preprocess"] = evil
    elif where == "preprocess.mean":
        hp["preprocess"]["mean"] = [evil]
    elif where == "lr_groups":
        hp["lr_groups"] = {"head*": evil}
    else:
        raise AssertionError(where)


PLACES = (
    "net",
    "net.dropout",
    "net.widths[1]",
    "net.deep",
    "net._args_",
    "optimizer",
    "optimizer.lr",
    "scheduler",
    "class_names[0]",
    "preprocess",
    "preprocess.mean",
    "lr_groups",
)


@pytest.fixture(scope="module")
def clean(tiny_checkpoint) -> dict:
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


def _write(ckpt: dict, path: Path) -> Path:
    torch.save(ckpt, path)
    return path


def _evil(clean: dict, where: str, evil: dict, path: Path) -> Path:
    ckpt = copy.deepcopy(clean)
    _place(ckpt["hyper_parameters"], where, evil)
    return _write(ckpt, path)


def _model(classes=None, widths=(8, 16, 32)) -> EmotionClassifier:
    """The model a run with the tiny checkpoint's config builds."""
    return EmotionClassifier(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": list(widths), "hidden": 32},
        class_names=classes or ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        log_images=False,
    )


def _finetune(path: Path, log_dir: Path) -> None:
    cfg = OmegaConf.create({"finetune": {"ckpt": str(path)}, "paths": {"log_dir": str(log_dir)}})
    prepare_finetune(_model(["happy", "sad", "neutral"]), cfg)


OPENERS = {
    "load_net": lambda path, tmp: load_net(path),
    "predictor": lambda path, tmp: Predictor(path),
    "load_checkpoint": lambda path, tmp: EmotionClassifier.load(path),
    "finetune": _finetune,
    "init_from": lambda path, tmp: start_from(_model(), path, "init_from", "by_name"),
    "resume": lambda path, tmp: check_resume(path, _model()),
}


@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("target", TARGETS)
def test_code_named_in_a_checkpoint_is_refused_everywhere(clean, trap, tmp_path, target, where, capsys):
    payload, untouched = trap
    path = _evil(clean, where, payload(target), tmp_path / "evil.ckpt")
    for name, open_ in OPENERS.items():
        with pytest.raises(SystemExit) as exit_, user_errors():
            open_(path, tmp_path)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, name
        assert err.startswith("error: ") and str(path) in err, (name, err)
        assert where.split("[")[0].split(".")[0] in err and "Traceback" not in err, (name, err)
        assert untouched(), f"{name} ran {target} from {where}"


def test_refusals_say_what_and_why(clean, trap, tmp_path):
    payload, _ = trap
    cases = {
        "net": "net._target_ is 'builtins.open'; only mimic's own net builders are built: mimic.models.small_cnn.",
        "net.dropout": "hyper_parameters.net.dropout._target_ = 'builtins.open': refused. A Hydra key chooses code",
        "net.widths[1]": "hyper_parameters.net.widths[1]._target_ = 'builtins.open': refused",
        "net._args_": "hyper_parameters.net._args_ = [",
        "optimizer": "hyper_parameters.optimizer._target_ = 'builtins.open': mimic's training stores a torch.optim",
        "optimizer.lr": "hyper_parameters.optimizer.lr._target_ = 'builtins.open': refused",
        "preprocess.mean": "hyper_parameters.preprocess.mean[0]._target_ = 'builtins.open': refused",
    }
    for where, message in cases.items():
        path = _evil(clean, where, payload("builtins.open"), tmp_path / f"{where}.ckpt")
        with pytest.raises(CheckpointError) as e:
            EmotionClassifier.load(path)
        assert str(e.value).startswith(str(path)) and message in str(e.value), str(e.value)


def test_other_kinds_of_junk_in_the_fields(clean, tmp_path):
    cases = {
        "class names not strings": (("class_names",), [1, 2, 3, 4, 5, 6, 7], "class_names must be a list of class"),
        "preprocess not numbers": (("preprocess", "size"), "48", "preprocess.size must be a whole number"),
        "preprocess unknown key": (("preprocess", "evil"), 1, "preprocess has unknown settings ['evil']"),
        "net argument the builder lacks": (("net", "evil"), 1, "does not fit mimic.models.small_cnn.small_cnn"),
        "tta_flip not a bool": (("tta_flip",), "yes", "tta_flip must be true or false"),
        "a tensor among the hparams": (("net", "hidden"), torch.tensor(32), "net.hidden is a Tensor"),
    }
    for name, (keys, value, message) in cases.items():
        ckpt = copy.deepcopy(clean)
        d = ckpt["hyper_parameters"]
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
        path = _write(ckpt, tmp_path / "junk.ckpt")
        for open_ in (load_net, EmotionClassifier.load):
            with pytest.raises(CheckpointError, match="junk.ckpt") as e:
                open_(path)
            assert message in str(e.value), (name, str(e.value))


# ------------------------------------------------------------------------------------------------------------ resume
def _resume_cases(clean: dict, tiny_checkpoint: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the message must say)."""

    class Pickled:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    text = tmp / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    pickled = tmp / "pickled.ckpt"
    with open(pickled, "wb") as f:
        pickle.dump({"state_dict": {}, "hyper_parameters": Pickled()}, f)
    truncated = tmp / "truncated.ckpt"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[: tiny_checkpoint.stat().st_size // 2])
    state = _write({k[4:]: v for k, v in clean["state_dict"].items() if k.startswith("net.")}, tmp / "state.pth")
    other_model = _write(
        {
            "state_dict": {"layer.weight": torch.zeros(2, 2)},
            "hyper_parameters": {"lr": 0.1, "hidden_dim": 64},
            "optimizer_states": [],
            "loops": {},
            "epoch": 3,
        },
        tmp / "other_model.ckpt",
    )
    weights_only = copy.deepcopy(clean)
    del weights_only["optimizer_states"], weights_only["loops"]
    weights_only = _write(weights_only, tmp / "weights_only.ckpt")
    other_net = copy.deepcopy(clean)
    other_net["hyper_parameters"]["net"]["_target_"] = "mimic.models.resnet.resnet18"
    other_net = _write(other_net, tmp / "resnet.ckpt")
    other_widths = _write(_trained_state(widths=(4, 16, 32)), tmp / "widths.ckpt")
    other_classes = copy.deepcopy(clean)
    other_classes["hyper_parameters"]["class_names"] = ["happy", "sad", "neutral"]
    for k in ("net.head.7.weight", "net.head.7.bias"):
        other_classes["state_dict"][k] = other_classes["state_dict"][k][[3, 4, 6]]
    other_classes = _write(other_classes, tmp / "classes.ckpt")
    onnx = tmp / "model.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch")
    return {
        "missing": (tmp / "nope.ckpt", "checkpoint not found"),
        "not a checkpoint": (text, "could not be read as a PyTorch checkpoint without running pickled code"),
        "pickle": (pickled, "without running pickled code"),
        "truncated": (truncated, "could not be read as a PyTorch checkpoint"),
        "plain state_dict": (state, "not a mimic checkpoint: it is a plain state_dict"),
        "Lightning checkpoint of another model": (other_model, "lacks net, class_names, preprocess, mimic_version"),
        "weights only": (weights_only, "holds weights but no training state"),
        "another net": (other_net, "holds a mimic.models.resnet.resnet18 net, but the config builds"),
        "another net size": (other_widths, "net.conv1.0.weight: checkpoint (4, 1, 3, 3), config (8, 1, 3, 3)"),
        "another class set": (other_classes, "trained for the classes ['happy', 'sad', 'neutral']"),
        "onnx": (onnx, "is an exported ONNX model"),
    }


def _trained_state(widths) -> dict:
    """A resumable checkpoint dict of a small_cnn of other widths."""
    model = _model(widths=widths)
    return {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "optimizer_states": [],
        "lr_schedulers": [],
        "loops": {},
        "epoch": 1,
    }


def test_resume_from_a_bad_file_is_a_clear_error(clean, tiny_checkpoint, tmp_path, capsys):
    model = _model()
    check_resume(tiny_checkpoint, model)  # the good one passes
    check_resume(None, model)
    for name, (path, message) in _resume_cases(clean, tiny_checkpoint, tmp_path).items():
        with pytest.raises(SystemExit) as exit_, user_errors():
            check_resume(path, model)
        err = capsys.readouterr()
        assert exit_.value.code == 2, name
        assert err.err.startswith("error: ") and str(path) in err.err and message in err.err, (name, err.err)
        assert "pickled code ran" not in err.out


@pytest.mark.parametrize("setting", ["finetune.ckpt", "init_from"])
def test_finetune_from_a_bad_file_is_a_clear_error(clean, tiny_checkpoint, tmp_path, setting):
    cases = _resume_cases(clean, tiny_checkpoint, tmp_path)
    for name in ("missing", "not a checkpoint", "pickle", "truncated", "plain state_dict", "onnx", "another net"):
        path, message = cases[name]
        with pytest.raises(CheckpointError) as e:
            if setting == "init_from":
                start_from(_model(widths=(8, 16, 32)), path, setting, "by_name")
            else:
                _finetune(path, tmp_path)
        if name == "another net":
            message = setting
        assert str(path) in str(e.value) and message in str(e.value), (name, str(e.value))
        assert name not in ("onnx", "another net") or setting in str(e.value), (name, str(e.value))


def test_resume_through_train_refuses_before_lightning_reads(clean, trap, tmp_path, capsys):
    """`mimic.train.run` with ``ckpt_path=`` of an evil file: refused, nothing run, no training started."""
    from conftest import compose

    from mimic.train import run

    payload, untouched = trap
    path = _evil(clean, "net.dropout", payload("subprocess.Popen"), tmp_path / "evil.ckpt")
    cfg = compose(
        "train",
        [*TINY_SYNTHETIC, "logger=none", f"ckpt_path={path}", "trainer.max_epochs=1"],
        output_dir=tmp_path / "run",
    )
    with pytest.raises(SystemExit) as exit_, user_errors():
        run(cfg)
    assert exit_.value.code == 2 and str(path) in capsys.readouterr().err
    assert untouched() and not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------------------- through the real commands
@pytest.mark.slow
def test_the_commands_refuse_an_evil_checkpoint(clean, tmp_path):
    """realtime.py, scripts/evaluate.py and train.py (resume), each in its own process, in parallel."""
    victim, marker = tmp_path / "notes.txt", tmp_path / "PWNED"
    victim.write_bytes(USER_FILE)
    files = {
        "realtime": _evil(
            clean, "net.dropout", {"_target_": "builtins.open", "_args_": [str(victim), "w"]}, tmp_path / "rt.ckpt"
        ),
        "evaluate": _evil(
            clean, "net.widths[1]", {"_target_": "os.system", "_args_": [f"touch {marker}"]}, tmp_path / "ev.ckpt"
        ),
        "train": _evil(
            clean, "optimizer.lr", {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]}, tmp_path / "t.ckpt"
        ),
    }
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"{i}.png"), np.full((120, 160, 3), 40 * i, np.uint8))
    argv = {
        "realtime": ["realtime.py", f"ckpt={files['realtime']}", "display=false", f"source={images}"],
        "evaluate": ["scripts/evaluate.py", f"ckpt={files['evaluate']}", "data=synthetic"],
        "train": ["train.py", *TINY_SYNTHETIC, "logger=none", f"ckpt_path={files['train']}"],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / args[0]), *args[1:], f"hydra.run.dir={tmp_path / name}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in argv.items()
    }
    outputs = {name: p.communicate(timeout=300) for name, p in procs.items()}
    for name, p in procs.items():
        err = outputs[name][1]
        assert p.returncode == 2, (name, err[-3000:])
        assert f"error: {files[name]}" in err and "Traceback" not in err, (name, err[-3000:])
    assert victim.read_bytes() == USER_FILE and not marker.exists()


# ==============================================================================================================
# The realtime app: nothing overwritten, no display
# ==============================================================================================================
@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A short clip of one synthetic face."""
    vm = load_video_maker()
    path = tmp_path_factory.mktemp("clip") / "face.mp4"
    vm.make_video(path, vm.synthetic_patches(1), frames=8, layout="one")
    return path


def run_app(ckpt: Path, video: Path, tmp_path: Path, *overrides: str):
    from mimic.realtime.window import run

    return run(compose_cfg(ckpt, video, tmp_path, *overrides))


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def realtime(*args: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python realtime.py ARGS`` (in ``env``, default this one's)."""
    return subprocess.run(
        [sys.executable, "realtime.py", *args, "reactions.sound=false", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_an_existing_log_is_kept_and_the_run_writes_a_numbered_one(tiny_checkpoint, video, tmp_path, caplog):
    mine = tmp_path / "faces.csv"
    mine.write_bytes(b"my own notes,\n1,2\n")
    with caplog.at_level(logging.WARNING):
        stats = run_app(tiny_checkpoint, video, tmp_path, f"log.path={mine}")
    assert mine.read_bytes() == b"my own notes,\n1,2\n"
    assert stats.csv == str(tmp_path / "faces-1.csv") and len(rows(tmp_path / "faces-1.csv")) == stats.rows > 0
    assert f"{mine} already exists, so this run writes {tmp_path / 'faces-1.csv'}" in caplog.text

    run_app(tiny_checkpoint, video, tmp_path, f"log.path={mine}")  # and again: a third file, the others as they were
    assert mine.read_bytes() == b"my own notes,\n1,2\n" and len(rows(tmp_path / "faces-2.csv")) == stats.rows


def test_a_log_folder_gets_faces_csv_inside(tiny_checkpoint, video, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    stats = run_app(tiny_checkpoint, video, tmp_path, f"log.path={folder}")
    assert stats.csv == str(folder / "faces.csv") and len(rows(folder / "faces.csv")) == stats.rows > 0
    stats = run_app(tiny_checkpoint, video, tmp_path, f"log.path={folder}")
    assert stats.csv == str(folder / "faces-1.csv")


def test_an_existing_recording_is_kept_and_a_new_one_written(tiny_checkpoint, video, tmp_path, caplog):
    mine = tmp_path / "out.mp4"
    mine.write_bytes(video.read_bytes())
    before = mine.read_bytes()
    with caplog.at_level(logging.WARNING):
        run_app(tiny_checkpoint, video, tmp_path, f"record={mine}")
    assert mine.read_bytes() == before
    assert (tmp_path / "out-1.mp4").stat().st_size > 1000 and "record: " in caplog.text


@pytest.mark.parametrize("setting", ["log.path", "record"])
def test_a_path_through_a_file_is_a_clear_error(tiny_checkpoint, video, tmp_path, setting):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    with pytest.raises(UserError, match=rf"{setting}=.*{file} is a file, not a folder"):
        run_app(tiny_checkpoint, video, tmp_path, f"{setting}={file / 'x.out'}")
    assert file.read_text() == "mine"


@pytest.mark.slow  # realtime.py in a process of its own; in-process: test_an_existing_log_is_kept...
def test_realtime_py_keeps_an_existing_log(tiny_checkpoint, video, tmp_path):
    mine = tmp_path / "faces.csv"
    mine.write_bytes(b"kept\n")
    ckpt, source = f"ckpt={tiny_checkpoint}", f"source={video}"
    proc = realtime(ckpt, source, "display=false", f"log.path={mine}", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "already exists, so this run writes" in out and f"face rows in {tmp_path / 'faces-1.csv'}" in out
    assert mine.read_bytes() == b"kept\n" and rows(tmp_path / "faces-1.csv")


@pytest.mark.slow  # realtime.py in a process of its own; in-process: test_a_path_through_a_file...
def test_realtime_py_log_path_through_a_file(tiny_checkpoint, video, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    bad = tmp_path / "notes.txt" / "faces.csv"
    proc = realtime(f"ckpt={tiny_checkpoint}", f"source={video}", "display=false", f"log.path={bad}", tmp_path=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: log.path={bad}: {tmp_path / 'notes.txt'} is a file, not a folder" in proc.stderr


@pytest.mark.slow  # realtime.py in a process of its own
@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="macOS and Windows always have a display")
def test_realtime_py_without_a_display_runs_headless(tiny_checkpoint, video, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    log = tmp_path / "faces.csv"
    proc = realtime(f"ckpt={tiny_checkpoint}", f"source={video}", f"log.path={log}", tmp_path=tmp_path, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "no display" in out and "display=false" in out and "8 frames in" in out
    assert len(rows(log)) > 0


# ==============================================================================================================
# Bad data said out loud
# ==============================================================================================================
CLASSES = ["happy", "sad", "neutral"]
merge_datasets = load_script("merge_datasets")
YUNET = "models/face_detection_yunet_2023mar.onnx"


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _load(caplog, root: Path, **kwargs):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mimic.data.folders"):
        return FolderSource(root, **{"cache_dir": False, **kwargs}).load()


def _faceless(path: Path, size: int = 400) -> Path:
    """A ``size`` x ``size`` photo with no face in it (smooth noise), as a JPEG."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------- class folders
def test_empty_class_folder_is_named_in_a_warning(tmp_path, caplog):
    write_class_folders(tmp_path / "w", CLASSES, per_class=2, size=64)
    for f in (tmp_path / "w" / "2_neutral").iterdir():
        f.unlink()
    splits = _load(caplog, tmp_path / "w", classes=CLASSES)
    assert len(splits["train"]) == 4
    (warning,) = _warnings(caplog)
    assert "1 class folder(s) give no images: 2_neutral/ (no image files)" in warning
    assert "capture_dataset.py label=<class>" in warning


def test_folders_not_named_after_the_classes_are_an_error_not_a_quiet_drop(tmp_path, caplog):
    """The case that went wrong: every photo in folders whose names are no class of the run was dropped with an INFO
    line, and training went on without them."""
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=9, size=64, indexed=False)
    (root / "happy").rename(root / "happy_pics")
    (root / "sad").rename(root / "sad_pics")
    with pytest.raises(DataError) as e:
        _load(caplog, root, classes=CLASSES)
    message = str(e.value)
    assert f"{root} holds no images of the classes ['happy', 'sad', 'neutral'] (18 image files" in message
    assert "happy_pics, sad_pics" in message and "<index>_<name>" in message and "capture_dataset.py" in message
    (warning,) = _warnings(caplog)
    assert "18 photos in happy_pics/ (9), sad_pics/ (9): not used" in warning
    assert "'happy_pics' looks like 'happy'" in warning and "'sad_pics' looks like 'sad'" in warning


def test_a_class_outside_the_run_is_named_with_its_count(tmp_path, caplog):
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad", "neutral"], per_class=3, size=64)
    (root / "1_sad").rename(root / "1_sadd")
    splits = _load(caplog, root, classes=CLASSES)
    assert len(splits["train"]) == 9  # the source hands over its own classes; the datamodule leaves 1_sadd out
    (warning,) = _warnings(caplog)
    assert "3 photos in 1_sadd/ (3): not used" in warning and "'sadd' looks like 'sad'" in warning


def test_unknown_class_name_without_a_class_list_is_named(tmp_path, caplog):
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=2, size=64)
    (root / "1_sad").rename(root / "1_glum")
    _load(caplog, root)
    (warning,) = _warnings(caplog)
    assert "2 photos in 1_glum/ (2): no emotion mimic knows" in warning and "data.classes" in warning


def test_a_source_with_no_usable_image_is_an_error(tmp_path, caplog):
    root = tmp_path / "w"
    (root / "0_happy").mkdir(parents=True)
    (root / "0_happy" / "a.jpg").write_bytes(b"")
    (root / "0_happy" / "b.png").write_bytes(b"not a png")
    (root / "1_sad").mkdir()
    with pytest.raises(DataError, match=rf"{root} holds no usable images \(2 image files, 2 skipped") as e:
        _load(caplog, root)
    assert "capture_dataset.py label=happy" in str(e.value)
    skipped, empty = _warnings(caplog)
    assert "skipped 2 of 2 photos" in skipped and "a.jpg: not an image" in skipped and "b.png: not an image" in skipped
    assert "0_happy/ (all 2 photos skipped), 1_sad/ (no image files)" in empty


@pytest.mark.slow
def test_finetune_on_misnamed_folders_stops_with_a_message(tmp_path, tiny_checkpoint):
    """Through the real command: `train.py +finetune=webcam` on folders that name no class of the run."""
    root = tmp_path / "data" / "webcam"
    write_class_folders(root, ["happy", "sad"], per_class=3, size=64, indexed=False)
    (root / "happy").rename(root / "0-happy")
    (root / "sad").rename(root / "1-sad")
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=synthetic",
            "+finetune=webcam",
            f"finetune.ckpt={tiny_checkpoint}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "model.net.widths=[8,16,32]",
            "model.net.hidden=32",
            "data.sources.synthetic.n_train=70",
            "data.sources.synthetic.n_val=35",
            "data.sources.synthetic.n_test=35",
            "data.sources.webcam.cache_dir=false",
            "trainer.max_epochs=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"error: {root / '0-happy'}: '0-happy' is not a class name" in proc.stderr
    assert "Rename the folder as 0_happy/." in proc.stderr


# ----------------------------------------------------------------------------------------------- photos and files
def test_square_photo_without_a_face_is_skipped_unless_the_folder_holds_crops(tmp_path, caplog):
    """A 400x400 photo with no face used to be kept whole as a face; now only with detect_faces=false."""
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=2, size=64)
    wall = _faceless(root / "0_happy" / "wall.jpg")
    splits = _load(caplog, root)
    assert str(wall) not in splits["train"].paths and len(splits["train"]) == 4
    (warning,) = _warnings(caplog)
    assert "skipped 1 of 5 photos" in warning and f"{wall}: no face found" in warning
    assert "data.sources.webcam.detect_faces=false" in warning

    splits = _load(caplog, root, detect_faces=False)
    assert str(wall) in splits["train"].paths and len(splits["train"]) == 5
    assert not _warnings(caplog)


def test_files_mimic_does_not_read_are_listed_once(tmp_path, caplog):
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=2, size=64)
    (root / "0_happy" / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "1_sad" / "shot.cr2").write_bytes(b"II*\x00")
    (root / "0_happy" / "day2").mkdir()
    (root / "stray.jpg").write_bytes((root / "0_happy" / "0000.png").read_bytes())
    (root / "0_happy" / ".0005.png.part").write_bytes(b"half")  # a capture cut off mid-write: not even listed
    splits = _load(caplog, root)
    assert len(splits["train"]) == 4
    (warning,) = _warnings(caplog)
    assert "4 files under" in warning
    for name, why in [
        ("0_happy/IMG_0001.heic", "not an image"),
        ("1_sad/shot.cr2", "not an image"),
        ("0_happy/day2", "a folder inside a class folder"),
        ("stray.jpg", "not in a class folder"),
    ]:
        assert f"{root / name}: {why}" in warning
    assert ".part" not in warning and ".jpg .jpeg .png" in warning


# -------------------------------------------------------------------------------------------------- face-crop cache
def _detects_per_run(tmp_path, monkeypatch, cls, makers) -> list[int]:
    """Load one folder of two large photos once per detector (each made by a maker when its run starts), sharing one
    face-crop cache; how many photos each run sent to the detector (0: all came from the cache)."""
    calls = []
    real = cls.detect
    monkeypatch.setattr(cls, "detect", lambda self, frame: calls.append(1) or real(self, frame))
    root = tmp_path / "w"
    for i, name in enumerate(CLASSES[:2]):
        _faceless(root / f"{i}_{name}" / "photo.jpg", 300 + 20 * i)
    counts = []
    for make in makers:
        before = len(calls)
        with pytest.raises(DataError, match="no usable images"):  # faceless photos: "no face" is cached too
            FolderSource(root, detector=make(), cache_dir=tmp_path / "cache").load()
        counts.append(len(calls) - before)
    return counts


def test_crop_cache_is_keyed_on_every_haar_setting_and_the_cascade_file(tmp_path, monkeypatch):
    cascades = Path(cv2.data.haarcascades)
    cascade = tmp_path / "cascade.xml"
    shutil.copy(cascades / "haarcascade_frontalface_default.xml", cascade)

    def other_cascade_same_path() -> HaarDetector:
        shutil.copy(cascades / "haarcascade_frontalface_alt2.xml", cascade)
        return HaarDetector(cascade=str(cascade))

    makers = [
        lambda: HaarDetector(cascade=str(cascade)),  # fills the cache
        lambda: HaarDetector(cascade=str(cascade)),  # the same settings: all from the cache
        lambda: {"_target_": "mimic.haar.HaarDetector", "cascade": str(cascade)},  # the same, as a config
        lambda: HaarDetector(cascade=str(cascade), min_neighbors=8),
        other_cascade_same_path,  # old code: served from the cache (the key held no file, no hash)
    ]
    assert _detects_per_run(tmp_path, monkeypatch, HaarDetector, makers) == [2, 0, 0, 2, 2]


def test_crop_cache_is_keyed_on_yunet_thresholds(tmp_path, monkeypatch, shared_data):
    """The reported case: a run with score_threshold=0.999 got the crops an earlier 0.7 run had cached."""
    model = str(shared_data / YUNET)
    makers = [lambda t=t: YuNetDetector(model_path=model, score_threshold=t) for t in (0.7, 0.7, 0.999)]
    assert _detects_per_run(tmp_path, monkeypatch, YuNetDetector, makers) == [2, 0, 2]


def test_folder_source_scans_every_photo_in_full(tmp_path):
    """src/mimic/conf/detector/haar.yaml tracks faces across frames (full_every: 4); unrelated photos must not be."""
    write_class_folders(tmp_path / "w", CLASSES, per_class=1, size=64)
    source = FolderSource(tmp_path / "w", detector=load_detector("haar"), cache_dir=False)
    assert source.faces.detector.full_every == 1 and source.faces.detector.config["full_every"] == 1


# ------------------------------------------------------------------------------------------------ detectors by name
def test_detectors_load_by_name_or_config_and_nothing_else(tmp_path):
    assert isinstance(load_detector("haar"), HaarDetector)
    assert load_detector("haar", min_neighbors=7).min_neighbors == 7
    for name in ("nope", "../train", "haar.yaml"):
        with pytest.raises(UserError, match=rf"unknown detector '{name}': use one of haar, yunet"):
            load_detector(name)
    marker = tmp_path / "PWNED"
    for target in (
        "builtins.open",
        "os.system",
        "mimic.faces.FaceDetector",
        "mimic.faces.HaarDetector",  # its old home
        "mimic.yunet.OrtYuNet",
        "mimic.detectors.Path",
        "mimic.io.os.system",
    ):
        with pytest.raises(UserError, match=rf"detector _target_ '{target}': name one of mimic's detector classes"):
            load_detector({"_target_": target, "file": str(marker), "mode": "w"})
    assert not marker.exists()
    with pytest.raises(UserError, match=r"mimic.haar.HaarDetector: .*'min_neighbours'.*min_neighbors"):
        load_detector({"_target_": "mimic.haar.HaarDetector", "min_neighbours": 3})
    write_class_folders(tmp_path / "w", CLASSES, per_class=1, size=64)
    with pytest.raises(UserError, match="unknown detector 'yunett'"):
        FolderSource(tmp_path / "w", detector="yunett", detect_faces=True, cache_dir=False).load()


# ------------------------------------------------------------------------------------------------------------ merge
def test_merge_skips_and_lists_broken_images(tmp_path, capsys):
    """Broken and zero-byte images used to be copied and counted."""
    day1 = tmp_path / "day1"
    write_class_folders(day1, ["happy", "sad"], per_class=3, size=48)
    (day1 / "0_happy" / "empty.jpg").write_bytes(b"")
    (day1 / "1_sad" / "cut.png").write_bytes((day1 / "1_sad" / "0000.png").read_bytes()[:40])
    (day1 / "1_sad" / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    before = _snapshot(day1)
    out = tmp_path / "merged"
    merge_datasets.main([f"out={out}", f"inputs={day1}"])
    stdout = capsys.readouterr().out
    assert _snapshot(day1) == before
    assert [sorted(p.name for p in (out / c).iterdir()) for c in ("0_happy", "1_sad")] == [
        ["0000.png", "0001.png", "0002.png"]
    ] * 2
    lines = [line.split() for line in stdout.splitlines()]
    assert ["0_happy", "3", "0"] in lines and ["1_sad", "3", "0"] in lines
    assert "2 broken images (they do not decode), not copied:" in stdout
    assert str(day1 / "0_happy" / "empty.jpg") in stdout and str(day1 / "1_sad" / "cut.png") in stdout
    assert f"1 files mimic does not read, not copied:\n  {day1 / '1_sad' / 'photo.heic'}" in stdout
    manifest = (out / "merge_manifest.csv").read_text()
    assert "empty.jpg" not in manifest and "cut.png" not in manifest and len(manifest.splitlines()) == 7
    assert all(
        hashlib.sha256((out / row.split(",")[0]).read_bytes()).hexdigest() == row.split(",")[2]
        for row in manifest.splitlines()[1:]
    )


# ==============================================================================================================
# Evaluation on bad folders and splits
# ==============================================================================================================
def _evaluate(overrides: list[str], out, capsys) -> str:
    """Run evaluate in-process as the script does; returns stderr after asserting exit status 2."""
    with pytest.raises(SystemExit) as exit_info, user_errors():
        run_evaluate(compose("evaluate", overrides, output_dir=out))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _faces(root, names=("happy", "sad"), per_class=2) -> None:
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        (root / f"{i}_{name}").mkdir(parents=True)
        for k, face in enumerate(draw_faces([name] * per_class, 64, rng)):
            cv2.imwrite(str(root / f"{i}_{name}" / f"{k}.jpg"), face)


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("scripts/evaluate.py", ["ckpt={ckpt}", "data=folder"], ["data.path"]),
        pytest.param(
            "train.py",
            ["data=folder", "data.path={faces}", "logger=none"],
            ["test_only", "evaluate"],
            marks=pytest.mark.slow,  # a training run in a process of its own
        ),
    ],
)
def test_commands(command, args, expected, tiny_checkpoint, tmp_path):
    _faces(tmp_path / "faces")
    args = [a.format(faces=tmp_path / "faces", ckpt=tiny_checkpoint) for a in args]
    proc = subprocess.run(
        [sys.executable, str(REPO / command), *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and all(e in proc.stderr for e in expected), proc.stderr[-3000:]


def test_folder_not_found(tiny_checkpoint, tmp_path, capsys):
    err = _evaluate([f"ckpt={tiny_checkpoint}", "data=folder", f"data.path={tmp_path / 'nowhere'}"], tmp_path, capsys)
    assert "nowhere" in err and "not found" in err


def test_folder_without_class_folders(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.jpg"), draw_faces(["happy"], 64)[0])
    err = _evaluate([f"ckpt={tiny_checkpoint}", "data=folder", f"data.path={tmp_path / 'photos'}"], tmp_path, capsys)
    assert "no class folders" in err and "0_happy" in err


def test_folder_of_unreadable_images(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "faces" / "0_happy").mkdir(parents=True)
    (tmp_path / "faces" / "0_happy" / "a.jpg").write_bytes(b"not a jpeg")
    overrides = [f"ckpt={tiny_checkpoint}", "data=folder", f"data.path={tmp_path / 'faces'}"]
    err = _evaluate(overrides + ["data.sources.folder.cache_dir=false"], tmp_path, capsys)
    assert str(tmp_path / "faces") in err or "no 'test' images in sources ['folder']" in err


def test_split_other_than_test_on_a_folder(tiny_checkpoint, tmp_path, capsys):
    _faces(tmp_path / "faces")
    overrides = [f"ckpt={tiny_checkpoint}", "data=folder", f"data.path={tmp_path / 'faces'}", "split=val"]
    err = _evaluate(overrides + ["data.sources.folder.cache_dir=false"], tmp_path, capsys)
    assert "split=test" in err and "test_only" in err


def test_unknown_split(tiny_checkpoint, tmp_path, capsys):
    err = _evaluate([f"ckpt={tiny_checkpoint}", "data=synthetic", "split=holdout"], tmp_path, capsys)
    assert "split='holdout'" in err and "train, val, test" in err


def test_folder_classes_the_checkpoint_lacks_are_dropped_with_a_warning(tiny_checkpoint, tmp_path, caplog):
    _faces(tmp_path / "faces", ("happy", "contempt"))
    overrides = [f"ckpt={tiny_checkpoint}", "data=folder", f"data.path={tmp_path / 'faces'}"]
    with caplog.at_level(logging.WARNING):
        metrics = run_evaluate(
            compose("evaluate", overrides + ["data.sources.folder.cache_dir=false"], output_dir=tmp_path)
        )
    assert metrics["n"] == 2 and "folder/test: dropped 2 of 4 images whose class is not in" in caplog.text


# ==============================================================================================================
# Face framing settings (issue 11 section 3)
# ==============================================================================================================
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.preprocess.framing=tilted", "preprocess.framing must be one of box, eyes, got 'tilted'"),
        ("+model.preprocess.eye_y=2", "preprocess.eye_y must be a number from 0.0 to 1.0, got 2"),
    ],
)
def test_a_bad_framing_setting_stops_training_with_a_message(setting, message, tmp_path, capsys):
    from mimic.train import run as run_train

    with pytest.raises(SystemExit) as exit_info, user_errors():
        run_train(compose("train", [*TINY_SYNTHETIC, setting, "logger=none"], output_dir=tmp_path))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_negative_capture_margin_is_a_message(tmp_path, capsys):
    capture = load_script("capture_dataset")
    with pytest.raises(SystemExit) as exit_info:
        capture.main(["label=happy", "margin=-1", f"out={tmp_path / 'w'}", "preview=false"])
    assert exit_info.value.code == 2
    assert "preprocess.crop_margin must be a number from 0.0 to 100.0, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


# ==============================================================================================================
# Offline: nothing reaches the network unasked; the capture script's auto_label=true opens checkpoints safely
# ==============================================================================================================
_NETWORK_PROBE = """
import pathlib, socket, sys, time
marker = pathlib.Path(sys.argv[1])
def refuse(*args, **kwargs):
    marker.write_text(repr(args))
    raise OSError("the network is off in this test")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
exec(sys.argv[2])
time.sleep(1.5)  # albumentations' update check runs on a thread
"""


@pytest.mark.parametrize(
    "code", ["import albumentations", pytest.param("import mimic.data.datamodule", marks=pytest.mark.slow)]
)
def test_importing_mimic_makes_no_network_call(tmp_path, code):
    """Plain albumentations asks PyPI for its latest version on import (the probe catches it); through mimic it must
    not."""
    marker = tmp_path / "connected"
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}  # this process imported mimic
    subprocess.run([sys.executable, "-c", _NETWORK_PROBE, str(marker), code], capture_output=True, check=True, env=env)
    assert marker.exists() == (code == "import albumentations")


def test_capture_auto_label_refuses_an_evil_checkpoint(clean, trap, tmp_path, capsys):
    payload, untouched = trap
    path = _evil(clean, "net.dropout", payload("os.system"), tmp_path / "evil.ckpt")
    capture = load_script("capture_dataset")
    argv = ["auto_label=true", f"ckpt={path}", f"source={tmp_path / 'clip.mp4'}", f"out={tmp_path / 'w'}"]
    with pytest.raises(SystemExit) as exit_:
        capture.main([*argv, "preview=false"])
    assert exit_.value.code == 2 and f"error: {path}" in capsys.readouterr().err
    assert untouched() and not (tmp_path / "w").exists()


# ==============================================================================================================
# Issue 22: OmegaConf interpolation in a model file, NaN weights, large photos, overwrites, the last tracebacks
# ==============================================================================================================
PAYLOAD_ENV = "MIMIC_PAYLOAD_SECRET"
MARKER = "pwned_by_interpolation"  # relative (the tests run in tmp_path): a class name holds no slash
OPEN_MARKER = f"{{_target_: builtins.open, _args_: [{MARKER}, w]}}"
INTERPOLATIONS = {
    "oc.create": f"${{oc.create:{OPEN_MARKER}}}",
    "oc.env": f"${{oc.env:{PAYLOAD_ENV}}}",
    "oc.decode": f"${{oc.decode:'{OPEN_MARKER}'}}",
}


@pytest.fixture
def resolved(tmp_path, monkeypatch) -> list[str]:
    """The resolvers the payloads use, spied on: the list fills with a resolver's name whenever OmegaConf resolves one
    of the payloads (they still run, so a resolved oc.create also leaves the marker file). Runs in ``tmp_path``."""
    from omegaconf.basecontainer import BaseContainer

    calls: list[str] = []
    for name in INTERPOLATIONS:
        real = BaseContainer._resolvers[name]

        def spy(*args, _real=real, _name=name, **kwargs):
            if MARKER in repr(args).lower() or PAYLOAD_ENV.lower() in repr(args).lower():  # names are lower-cased
                calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setitem(BaseContainer._resolvers, name, spy)
    monkeypatch.setenv(PAYLOAD_ENV, "the user's secret")
    monkeypatch.chdir(tmp_path)
    return calls


def test_the_interpolation_payloads_are_live(resolved, tmp_path):
    """Resolved and instantiated as Hydra does with a config, each payload runs code or reads the environment."""
    from hydra.utils import instantiate

    for text in INTERPOLATIONS.values():
        out = instantiate(OmegaConf.create({"_target_": "builtins.list", "_args_": [[text]]}))
        if hasattr(out[0], "close"):
            out[0].close()
    assert sorted(resolved) == sorted(INTERPOLATIONS) and (tmp_path / MARKER).exists()


@pytest.fixture(scope="module")
def clean_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from mimic.models.onnx_export import export

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export(tiny_checkpoint, out)
    return out


TEXT_PLACES = {  # where a model file holds text: (checkpoint hyper-parameter path, ONNX metadata key and path)
    "class_names[0]": (("class_names", 0), ("class_names", 0)),
    "preprocess.framing": (("preprocess", "framing"), ("preprocess", "framing")),
    "net.weights": (("net", "weights"), ("net", "weights")),
    "about.command": (("about", "command"), ("about", "command")),
    "mimic_version": (("mimic_version",), ("mimic_version",)),
}


def _set(tree: dict, keys: tuple, value) -> None:
    for k in keys[:-1]:
        tree = tree.setdefault(k, {}) if isinstance(k, str) else tree[k]
    tree[keys[-1]] = value


def _text_ckpt(clean: dict, place: str, text: str, path: Path) -> Path:
    ckpt = copy.deepcopy(clean)
    _set(ckpt["hyper_parameters"], TEXT_PLACES[place][0], text)
    return _write(ckpt, path)


def _forge_onnx(src: Path, dst: Path, edit) -> Path:
    """A copy of the ONNX file ``src`` at ``dst`` with ``edit(metadata dict of JSON values, model)`` applied."""
    import json

    import onnx

    model = onnx.load(str(src))
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    edit(meta, model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {k: json.dumps(v) for k, v in meta.items()})
    onnx.save(model, str(dst))
    return dst


def _text_onnx(src: Path, place: str, text: str, path: Path) -> Path:
    keys = TEXT_PLACES[place][1]
    return _forge_onnx(src, path, lambda meta, model: _set(meta, keys, text))


def _opened_by(path: Path) -> dict:
    """Every way a user opens a model file, each failing as a command fails (`user_errors`)."""
    from mimic.models.onnx_model import read_onnx_card
    from mimic.recognizer import EmotionRecognizer

    return {
        "card": (lambda p: read_onnx_card(p)) if path.suffix == ".onnx" else (lambda p: load_net(p)),
        "predictor": lambda p: Predictor(p),
        "API": lambda p: EmotionRecognizer(ckpt=p),
    }


def _refused(open_, path: Path, capsys, *named: str) -> str:
    with pytest.raises(SystemExit) as exit_, user_errors():
        open_(path)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    assert "Error in call to target" not in err and "InterpolationResolutionError" not in err, err
    assert str(path) in err and all(n in err for n in named), err
    return err


@pytest.mark.parametrize("kind", [".ckpt", ".onnx"])
@pytest.mark.parametrize("place", list(TEXT_PLACES))
def test_interpolation_in_a_model_file_is_refused_at_the_card(
    clean, clean_onnx, resolved, tmp_path, capsys, place, kind
):
    for payload, text in INTERPOLATIONS.items():
        where = tmp_path / f"{payload}{kind}"
        path = _text_ckpt(clean, place, text, where) if kind == ".ckpt" else _text_onnx(clean_onnx, place, text, where)
        for name, open_ in _opened_by(path).items():
            err = _refused(open_, path, capsys, place.split("[")[0])
            assert "refused" in err or "is not a class name" in err, (name, err)
    assert resolved == [] and not (tmp_path / MARKER).exists()


@pytest.fixture
def commands(tmp_path) -> dict:
    """realtime, evaluate, export, fine-tune, capture and the API, in-process, each on a model file."""
    from mimic.realtime.window import run as realtime_run
    from mimic.recognizer import EmotionRecognizer
    from mimic.train import run as train_run

    images = tmp_path / "frames"
    images.mkdir()
    for i, face in enumerate(draw_faces(["happy", "sad"], 160, np.random.default_rng(0), bgr=True)):
        cv2.imwrite(str(images / f"{i}.png"), cv2.copyMakeBorder(face, 40, 40, 60, 60, cv2.BORDER_REPLICATE))
    capture = load_script("capture_dataset")
    tiny = ["data.sources.synthetic.n_test=20"]
    return {
        "realtime": lambda p: realtime_run(compose_cfg(p, images, tmp_path, "reactions.sound=true")),
        "evaluate": lambda p: run_evaluate(
            compose("evaluate", [f"ckpt={p}", "data=synthetic", *tiny], output_dir=tmp_path / "evaluate")
        ),
        "export": lambda p: export_main([f"ckpt={p}", f"out={tmp_path / 'exported.onnx'}"]),
        "fine-tune": lambda p: train_run(
            compose("train", ["+finetune=webcam", f"finetune.ckpt={p}", "logger=none"], output_dir=tmp_path / "ft")
        ),
        "capture": lambda p: capture.main(
            ["auto_label=true", f"ckpt={p}", f"source={images}", f"out={tmp_path / 'w'}", "preview=false"]
        ),
        "API": lambda p: EmotionRecognizer(ckpt=p).detect(images / "0.png"),
    }


@pytest.mark.parametrize("kind", [".ckpt", ".onnx"])
def test_interpolation_in_a_model_file_is_refused_by_every_command(
    clean, clean_onnx, resolved, commands, tmp_path, capsys, kind
):
    """Every payload as a class name, and one payload in turn in each other place, through every command."""
    cases = [("class_names[0]", payload) for payload in INTERPOLATIONS]
    cases += [(place, list(INTERPOLATIONS)[i % 3]) for i, place in enumerate(TEXT_PLACES) if place != "class_names[0]"]
    for place, payload in cases:
        where, text = tmp_path / f"{payload}{kind}", INTERPOLATIONS[payload]
        path = _text_ckpt(clean, place, text, where) if kind == ".ckpt" else _text_onnx(clean_onnx, place, text, where)
        for name, run in commands.items():
            err = _refused(run, path, capsys)
            assert place.split("[")[0] in err or "exported ONNX model" in err, (name, err)
    assert resolved == [] and not (tmp_path / MARKER).exists()
    assert not (tmp_path / "exported.onnx").exists() and not (tmp_path / "w").exists()


def test_no_string_from_a_card_is_ever_resolved(clean, resolved, commands, tmp_path, monkeypatch, capsys):
    """The second wall: with the card's checks switched off, payload class names and texts travel through every
    command, and still nothing resolves them (they reach the CSV log, the reactions and the datamodule as Python
    values, never as config)."""
    import re

    import mimic.labels
    import mimic.models.card

    monkeypatch.setattr(mimic.labels, "CLASS_NAME", re.compile(r".*", re.S))
    monkeypatch.setattr(mimic.models.card, "_check_text", lambda value, where, error: None)
    ckpt = copy.deepcopy(clean)
    hp = ckpt["hyper_parameters"]
    hp["class_names"][:3] = list(INTERPOLATIONS.values())
    hp["about"] = {"command": INTERPOLATIONS["oc.env"]}
    path = _write(ckpt, tmp_path / "payloads.ckpt")
    for name, run in commands.items():
        if name == "fine-tune":  # the card's net and preprocessing become config there: the first wall guards it
            continue
        with contextlib.suppress(SystemExit), user_errors():
            run(path)
        assert resolved == [] and not (tmp_path / MARKER).exists(), name
    with open(tmp_path / "faces.csv", newline="") as f:
        header = next(csv.reader(f))
    assert f"p_{INTERPOLATIONS['oc.create']}".lower() in header  # the text itself, written as the data it is
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------- NaN and inf weights
def _nan_onnx(src: Path, dst: Path, value: float) -> Path:
    from onnx import numpy_helper

    def poison(meta: dict, model) -> None:
        init = next(t for t in model.graph.initializer if numpy_helper.to_array(t).dtype == np.float32)
        values = numpy_helper.to_array(init).copy()
        values.flat[0] = value
        init.CopyFrom(numpy_helper.from_array(values, init.name))

    return _forge_onnx(src, dst, poison)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_broken_weights_are_refused_by_every_command(clean, clean_onnx, commands, tmp_path, capsys, value):
    ckpt = copy.deepcopy(clean)
    ckpt["state_dict"]["net.conv2.0.weight"][0, 0, 0, 0] = value
    files = {
        _write(ckpt, tmp_path / "broken.ckpt"): "state_dict.net.conv2.0.weight holds 1 NaN or infinite value(s)",
        _nan_onnx(clean_onnx, tmp_path / "broken.onnx", value): "initializer",
    }
    for path, message in files.items():
        for name, run in commands.items():
            err = _refused(run, path, capsys)
            assert message in err or "exported ONNX model" in err, (name, err)
        for name, open_ in _opened_by(path).items():
            assert message in _refused(open_, path, capsys), name
    assert not (tmp_path / "exported.onnx").exists() and not (tmp_path / "evaluate" / "test_metrics.json").exists()


def test_a_loss_that_turns_nan_stops_the_run_and_keeps_the_good_checkpoints(tmp_path, monkeypatch, capsys):
    """A real run: epoch 0 trains and saves; in epoch 1 the loss turns NaN. One line names the step, the run stops
    before the step changes the weights, and the checkpoints saved so far hold finite weights."""
    from mimic.train import run as train_run

    loss = EmotionClassifier.loss

    def poisoned(self, logits, y):
        out = loss(self, logits, y)
        return out * float("nan") if self.current_epoch == 1 and self.training else out

    monkeypatch.setattr(EmotionClassifier, "loss", poisoned)
    cfg = compose(
        "train",
        [*TINY_SYNTHETIC, "logger=none", "trainer.max_epochs=3", "+trainer.limit_train_batches=2"],
        output_dir=tmp_path / "run",
    )
    with pytest.raises(SystemExit) as exit_, user_errors():
        train_run(cfg)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: training: the loss became nan at step 2 (epoch 1, batch 0)"), err
    kept = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in kept if p.name == "last.ckpt"] and any(p.name.startswith("best-") for p in kept)
    for path in kept:
        assert str(path) in err
        load_net(path)  # finite weights: it loads


# ------------------------------------------------------------------------------------------------- large photos
def test_a_large_photo_is_scanned_shrunk_and_finds_the_same_faces(shared_data):
    """obama_and_biden.jpg (2000 px) upscaled 4x: the three people found at its own size, and no other face (at full
    resolution YuNet finds parts of faces and hands as faces of their own)."""
    from mimic.detectors import load_detector
    from mimic.faces import for_photos

    detector = for_photos(load_detector("yunet"))
    photo = cv2.imread(str(shared_data / "faces" / "obama_and_biden.jpg"))
    own = [d for d in detector.detect(photo) if d.score >= 0.8]
    big = detector.detect(cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC))
    assert len(own) == 3 and len(big) == 3

    def iou(a, b) -> float:
        (ax, ay, aw, ah), (bx, by, bw, bh) = a, (v / 4 for v in b)
        w, h = min(ax + aw, bx + bw) - max(ax, bx), min(ay + ah, by + bh) - max(ay, by)
        inter = max(0, w) * max(0, h)
        return inter / (aw * ah + bw * bh - inter)

    assert all(max(iou(o.box, b.box) for b in big) > 0.7 for o in own)


# ------------------------------------------------------------------------------------------ nothing overwritten
def test_an_evaluation_into_a_folder_of_results_keeps_them(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    mine = {name: f"the user's {name}\n".encode() for name in ("test_metrics.json", "predictions.csv")}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    cfg = compose("evaluate", [f"ckpt={tiny_checkpoint}", "data=synthetic", "data.sources.synthetic.n_test=20"], out)
    for _ in range(2):
        run_evaluate(cfg)
    assert {name: (out / name).read_bytes() for name in mine} == mine
    for stem, suffix in (("test_metrics", ".json"), ("predictions", ".csv"), ("confusion_matrix", ".png")):
        assert (out / f"{stem}-1{suffix}").is_file()
    assert (out / "test_metrics-2.json").is_file() and "test_metrics-2.json" in capsys.readouterr().out


def test_a_second_run_in_a_folder_keeps_the_first_runs_checkpoints_and_a_resume_replaces_its_own(tmp_path):
    from mimic.train import run as train_run

    out = tmp_path / "run"
    args = [*TINY_SYNTHETIC, "logger=none", "+trainer.limit_train_batches=2", "test=false"]
    train_run(compose("train", [*args, "trainer.max_epochs=1"], output_dir=out))
    ckpts = out / "checkpoints"
    first = {p.name: p.read_bytes() for p in ckpts.glob("*.ckpt")}
    assert "last.ckpt" in first and len(first) == 2
    train_run(compose("train", [*args, "trainer.max_epochs=1"], output_dir=out))
    second = {p.name: p.read_bytes() for p in ckpts.glob("*.ckpt")}
    assert {k: second[k] for k in first} == first  # the first run's files, untouched
    assert "last-v1.ckpt" in second and any(k.endswith("-v1.ckpt") and k.startswith("best-") for k in second)
    train_run(compose("train", [*args, "trainer.max_epochs=2", f"ckpt_path={ckpts / 'last.ckpt'}"], output_dir=out))
    assert (ckpts / "last.ckpt").read_bytes() != first["last.ckpt"]  # the resumed run went on in its own file
    assert not (ckpts / "last-v2.ckpt").exists()


def test_the_log_and_the_recording_cannot_be_one_file(tiny_checkpoint, video, tmp_path, capsys):
    from mimic.realtime.window import run as realtime_run

    same = tmp_path / "out.mp4"
    cfg = compose_cfg(tiny_checkpoint, video, tmp_path, f"log.path={same}", f"record={same}")
    err = _refused(lambda _: realtime_run(cfg), same, capsys, "log.path=", "record=", "name the same file")
    assert not same.exists() and "Traceback" not in err


# ------------------------------------------------------------------------------- the last tracebacks, the API
def test_a_file_that_is_not_a_cascade_is_named(capsys, tmp_path):
    from mimic.detectors import load_detector

    for cascade in ("/etc/passwd", str(_write({"x": torch.zeros(1)}, tmp_path / "cascade.xml"))):
        err = _refused(lambda p: load_detector("haar", cascade=str(p)), Path(cascade), capsys, "detector.cascade")
        assert "is not a Haar cascade OpenCV can load" in err


def test_fractions_of_batches_that_round_to_none_take_one_batch(tmp_path):
    from mimic.train import run as train_run

    cfg = compose("train", [*TINY_SYNTHETIC, "debug=limit", "logger=none", "trainer.max_epochs=1"], tmp_path / "run")
    assert cfg.trainer.limit_train_batches == 0.02  # of 4 batches: none, as Lightning counts
    results = train_run(cfg)
    assert results["test/acc"] >= 0 and Path(results["best_checkpoint"]).is_file()


def test_a_net_too_large_is_refused_before_anything_is_allocated(clean, tmp_path, capsys):
    ckpt = copy.deepcopy(clean)
    ckpt["hyper_parameters"]["net"]["hidden"] = 1_000_000_000
    path = _write(ckpt, tmp_path / "huge.ckpt")
    for open_ in (load_net, EmotionClassifier.load, Predictor):
        err = _refused(open_, path, capsys, "net describes a net of", "parameters; mimic builds at most 100,000,000")
        assert "Error in call to target" not in err


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["x" * 100_000] + list("bcdefg"), "is not a class name"),
        (["happy"], "give at least 2"),
        (["happy", "sad/../../x", "neutral"], "is not a class name"),
        (["happy", "sad", " neutral"], "is not a class name"),
    ],
)
def test_class_names_in_a_model_file_follow_one_rule(clean, tmp_path, capsys, names, message):
    ckpt = copy.deepcopy(clean)
    ckpt["hyper_parameters"]["class_names"] = names
    path = _write(ckpt, tmp_path / "names.ckpt")
    err = _refused(load_net, path, capsys, "class_names", message)
    assert len(err) < 1000


@pytest.mark.parametrize(
    ("detector", "message"),
    [
        ({"_target_": "mimic.yunet.YuNetDetector", "score_threshold": 2}, "detector.score_threshold=2: expected"),
        ({"_target_": "mimic.haar.HaarDetector", "min_neighbors": "few"}, "detector.min_neighbors=few: expected"),
        ({"_target_": "mimic.yunet.YuNetDetector", "max_side": 10}, "detector.max_side=10: expected"),
    ],
)
def test_the_api_checks_detector_settings_as_the_command_line_does(detector, message):
    from mimic.recognizer import EmotionRecognizer

    with pytest.raises(UserError, match=message):
        EmotionRecognizer(detector=detector)
    kind = "haar" if "Haar" in detector["_target_"] else "yunet"
    settings = [f"detector.{k}={v}" for k, v in detector.items() if k != "_target_"]
    with pytest.raises(UserError, match=message):
        check_settings(compose("realtime", ["ckpt=x.ckpt", f"detector={kind}", *settings]), "realtime")


def test_the_api_refuses_crops_too_small_to_hold_a_face(tiny_checkpoint):
    from mimic.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer(ckpt=tiny_checkpoint)
    for shape in ((1, 1), (7, 48), (48, 7, 3)):
        with pytest.raises(UserError, match="a face needs at least 8 on each side"):
            recognizer.classify(np.zeros(shape, np.uint8))
    assert len(recognizer.classify(np.zeros((8, 8), np.uint8))) == 7


def test_a_run_needs_two_classes(tmp_path):
    with pytest.raises(UserError, match=r"data.classes=\[happy\]: expected a list of at least two class names"):
        check_settings(compose("train", ["data.classes=[happy]"]), "train")
    with pytest.raises(UserError, match="data.classes=\\[happy,sad/x\\]: expected"):
        check_settings(compose("train", ["data.classes=[happy,sad/x]"]), "train")


@pytest.mark.slow
def test_the_real_commands_refuse_interpolation_in_a_model_file(clean, clean_onnx, tmp_path):
    """realtime.py, scripts/evaluate.py and scripts/export.py, each in its own process, on .ckpt and .onnx files
    whose class names would run code or read the environment (each payload once per command; the in-process tests
    cover every payload, place and command): exit 2, one error line naming the file, nothing run."""
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "0.png"), np.full((120, 160, 3), 90, np.uint8))
    procs = {}
    commands = [
        lambda path: ["realtime.py", f"ckpt={path}", "display=false", f"source={images}"],
        lambda path: ["scripts/evaluate.py", f"ckpt={path}", "data=synthetic"],
        lambda path: ["scripts/export.py", f"ckpt={path}", f"out={tmp_path / 'out.onnx'}"],
    ]
    payloads = list(INTERPOLATIONS.items())
    for k, kind in enumerate((".ckpt", ".onnx")):
        for c, command in enumerate(commands):  # each payload reaches each command once, in one file kind or the other
            payload, text = payloads[(c + k) % len(payloads)]
            where = tmp_path / f"{payload}{kind}"
            place = "class_names[0]"
            path = (
                _text_ckpt(clean, place, text, where) if kind == ".ckpt" else _text_onnx(clean_onnx, place, text, where)
            )
            argv = command(path)
            run_dir = f"hydra.run.dir={tmp_path / 'runs' / f'{payload}{kind}{c}'}"
            procs[(path, argv[0])] = subprocess.Popen(
                [sys.executable, str(REPO / argv[0]), *argv[1:], *([run_dir] if "export" not in argv[0] else [])],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, PAYLOAD_ENV: "the user's secret"},
            )
    for (path, command), proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2 and f"error: {path}" in err and "Traceback" not in err, (command, err[-2000:])
        assert "the user's secret" not in err
    assert not (tmp_path / MARKER).exists() and not (tmp_path / "out.onnx").exists()
