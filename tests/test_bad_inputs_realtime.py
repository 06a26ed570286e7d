"""Bad inputs to ``realtime.py`` (issue 9): nothing the user made is overwritten (an existing log or recording gets a
new numbered name beside it, a folder gets ``faces.csv`` inside it), a path through a file is a clear error, and no
display means a headless run with a notice instead of Qt aborting the process. A few cases run the real command in
a subprocess, the rest go in-process through `mimic.realtime.app.run`."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_realtime_app import compose_cfg
from test_realtime_parts import REPO, load_video_maker

from mimic.errors import UserError


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A short clip of one synthetic face."""
    vm = load_video_maker()
    path = tmp_path_factory.mktemp("clip") / "face.mp4"
    vm.make_video(path, vm.synthetic_patches(1), frames=8, layout="one")
    return path


def run_app(ckpt: Path, video: Path, tmp_path: Path, *overrides: str):
    from mimic.realtime.app import run

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


def test_realtime_py_keeps_an_existing_log(tiny_checkpoint, video, tmp_path):
    mine = tmp_path / "faces.csv"
    mine.write_bytes(b"kept\n")
    ckpt, source = f"ckpt={tiny_checkpoint}", f"source={video}"
    proc = realtime(ckpt, source, "display=false", f"log.path={mine}", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "already exists, so this run writes" in out and f"face rows in {tmp_path / 'faces-1.csv'}" in out
    assert mine.read_bytes() == b"kept\n" and rows(tmp_path / "faces-1.csv")


def test_realtime_py_log_path_through_a_file(tiny_checkpoint, video, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    bad = tmp_path / "notes.txt" / "faces.csv"
    proc = realtime(f"ckpt={tiny_checkpoint}", f"source={video}", "display=false", f"log.path={bad}", tmp_path=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: log.path={bad}: {tmp_path / 'notes.txt'} is a file, not a folder" in proc.stderr


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="macOS and Windows always have a display")
def test_realtime_py_without_a_display_runs_headless(tiny_checkpoint, video, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    log = tmp_path / "faces.csv"
    proc = realtime(f"ckpt={tiny_checkpoint}", f"source={video}", f"log.path={log}", tmp_path=tmp_path, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "no display" in out and "display=false" in out and "8 frames in" in out
    assert len(rows(log)) > 0
