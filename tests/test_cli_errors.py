"""User mistakes end in one clear message on stderr and exit status 2, never a traceback."""

import subprocess
import sys

import pytest
from conftest import REPO, TINY_SYNTHETIC

GOOD_ROW = "3," + " ".join(["128"] * 2304) + ",Training\n"


def _bad_csv(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + GOOD_ROW + "4," + " ".join(["7"] * 2000) + ",Training\n" + GOOD_ROW)
    return path


CASES = {
    "missing_dataset": (
        ["train.py", "data=fer2013", "data.path={tmp}/nowhere/fer2013.csv"],
        ["FER2013 not found", "nowhere", "data.path=", "kaggle"],
    ),
    "malformed_row": (
        ["train.py", "data=fer2013", "data.path={tmp}/fer2013.csv"],
        ["fer2013.csv", "line 3", "2000"],
    ),
    "unknown_class": (
        ["train.py", *TINY_SYNTHETIC, "data.classes=[happy,smug]"],
        ["smug", "Known classes", "angry"],
    ),
    "missing_checkpoint": (
        ["scripts/evaluate.py", "ckpt={tmp}/missing.ckpt", "data=synthetic"],
        ["checkpoint not found", "missing.ckpt"],
    ),
    "offline_pretrained_weights": (
        ["train.py", "data=synthetic", "model=resnet18", "model.weights={tmp}/resnet18-f37072fd.pth", "debug=fdr"],
        ["model.weights=", "resnet18-f37072fd.pth", "no such file"],
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All cases at once, in parallel processes, to keep the wall time down."""
    tmp = tmp_path_factory.mktemp("cli")
    _bad_csv(tmp)
    procs = {}
    for name, (argv, _) in CASES.items():
        args = [a.replace("{tmp}", str(tmp)) for a in argv]
        args += [f"hydra.run.dir={tmp}/{name}"]
        procs[name] = subprocess.Popen(
            [sys.executable, str(REPO / args[0]), *args[1:]],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    outputs = {name: p.communicate(timeout=300) for name, p in procs.items()}  # reads pipes: no deadlock on full ones
    return {name: (procs[name].returncode, *outputs[name]) for name in procs}


@pytest.mark.parametrize("name", list(CASES))
def test_user_mistake_is_one_clear_message(runs, name):
    code, out, err = runs[name]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and "Traceback" not in out
    message = err.strip().splitlines()[-1] if "\n" not in err.split("error: ", 1)[-1] else err.split("error: ", 1)[-1]
    for needle in CASES[name][1]:
        assert needle.lower() in message.lower(), message
