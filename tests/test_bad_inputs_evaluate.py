"""Bad inputs to `scripts/evaluate.py` (and `train.py data=folder`): a short message naming the setting or folder,
exit status 2, no traceback. Two cases run the real commands, the rest go in-process through the same handling."""

import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, compose

from mimic.cli import user_errors
from mimic.data.synthetic import draw_faces
from mimic.evaluate import run


def _evaluate(overrides: list[str], out, capsys) -> str:
    """Run evaluate in-process as the script does; returns stderr after asserting exit status 2."""
    with pytest.raises(SystemExit) as exit_info, user_errors():
        run(compose("evaluate", overrides, output_dir=out))
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
        ("train.py", ["data=folder", "data.path={faces}", "logger=none"], ["test_only", "evaluate"]),
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
        metrics = run(compose("evaluate", overrides + ["data.sources.folder.cache_dir=false"], output_dir=tmp_path))
    assert metrics["n"] == 2 and "folder/test: dropped 2 of 4 images whose class is not in" in caplog.text
