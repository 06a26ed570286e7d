"""Settings of the wrong type or range end in one short message that names the setting and what it expects, exit 2, no
traceback (issue 9 §3): every case in-process through `check_settings`, a few through the real commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, compose

from mimic.errors import UserError
from mimic.settings import check_settings

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
    ("train", ["+finetune=webcam", "data.sources.webcam.detector.min_neighbors=few"]),
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
    ("realtime", ["smoothing.alpha=2"]),
    ("realtime", ["smoothing.alpha=0"]),
    ("realtime", ["reactions.hold_s=-1"]),
    ("realtime", ["reactions.volume=loud"]),
    ("realtime", ["reactions.popup_position=[1,2,3]"]),
    ("realtime", ["tracker.iou_threshold=0"]),
    ("realtime", ["camera.width=wide"]),
    ("realtime", ["log.enabled=yes"]),
    ("realtime", ["detector.min_face=2"]),
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
        _check("realtime", ["display=maybe", "faces=some", "smoothing.alpha=2"])
    lines = str(e.value).splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["display=maybe", "faces=some", "smoothing.alpha=2"]


def test_evaluate_without_ckpt_says_what_to_pass():
    with pytest.raises(UserError) as e:
        check_settings(compose("evaluate", ["data=synthetic"]), "evaluate")
    assert str(e.value).startswith("ckpt= is required: the .ckpt file a training run printed on its last line")


GOOD = [  # values at the edges of their ranges, and every form a setting may take
    ("train", ["data.classes=[happy,sad]", "model.optimizer.lr=1", "trainer.precision=bf16-mixed"]),
    ("train", ["debug=limit", "trainer.precision=16", "trainer.devices=auto", "trainer.limit_train_batches=0.5"]),
    ("train", ["debug=fdr", "trainer.limit_val_batches=3", "trainer.fast_dev_run=5", "threads=null"]),
    ("train", ["model.class_weights=[1,2.5,1,1,1,1,1]", "trainer.devices=[0,1]", "trainer.deterministic=warn"]),
    ("train", ["+trainer.max_steps=-1", "seed=0", "ckpt_path=last.ckpt", "model.label_smoothing=0"]),
    ("realtime", ["display=false", "source=clip.mp4", "smoothing.alpha=1", "max_frames=1", "predictor.tta_flip=true"]),
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
    "evaluate": (["scripts/evaluate.py", "data=synthetic"], "ckpt= is required"),
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
