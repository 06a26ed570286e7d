"""Bad checkpoints (issue 9 sections 1 and 3): a file never chooses code to run, and every command that opens one
(load_net / the realtime predictor, load_checkpoint / evaluation, fine-tuning, resume) refuses it with a message that
names the file, with no traceback.

The payloads are Hydra configs naming builtins.open, os.system, subprocess.Popen and importlib.import_module, placed
at several depths of the hyper-parameters; `test_the_payloads_are_live` shows each really runs when instantiated.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, TINY_SYNTHETIC
from omegaconf import OmegaConf

from mimic.cli import user_errors
from mimic.finetune import prepare_finetune
from mimic.models import CheckpointError, EmotionClassifier, load_checkpoint
from mimic.models.checkpoint import check_resume, load_net
from mimic.realtime.predictor import Predictor

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
    "load_checkpoint": lambda path, tmp: load_checkpoint(path),
    "finetune": _finetune,
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
            load_checkpoint(path)
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
        for open_ in (load_net, load_checkpoint):
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


def test_finetune_from_a_bad_file_is_a_clear_error(clean, tiny_checkpoint, tmp_path):
    cases = _resume_cases(clean, tiny_checkpoint, tmp_path)
    for name in ("missing", "not a checkpoint", "pickle", "truncated", "plain state_dict", "onnx", "another net"):
        path, message = cases[name]
        with pytest.raises(CheckpointError) as e:
            _finetune(path, tmp_path)
        if name == "another net":
            message = "finetune.ckpt"
        assert str(path) in str(e.value) and message in str(e.value), (name, str(e.value))


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
