"""mimic installed as a package: a wheel built from a copy of the checkout, installed into a fresh virtual
environment, gives `mimic-train`, `mimic-live` and `mimic-evaluate`, which work in an empty folder (the configs ship
inside the package) and write their runs under that folder's outputs/.

Two installs: one borrows this environment's dependencies (fast), the other is what a user's plain ``pip install`` of
the wheel gets from the package registry (torch first, pinned: an unpinned one pulls GBs of CUDA packages). There
opencv-python and opencv-python-headless both land in the one cv2 folder; the pins keep whichever wins a 4.x with the
Haar cascades, and where the headless build wins the window's error names the fix, which then works."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, TINY_SYNTHETIC

from mimic.data.synthetic import draw_face
from mimic.realtime.window import GUI_FIX

# about 40 s: a wheel build, an install and a one-epoch training; a few minutes more: an install from the registry
pytestmark = pytest.mark.slow
TORCH = (
    "torch==2.13.0"  # the version scripts/install.sh installs; pip takes a local CPU wheel of it where one is offered
)


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _env(venv: Path) -> dict:
    """The environment to run a venv's commands in: its bin/ first, no PYTHONPATH, no sound device."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SDL_AUDIODRIVER="dummy", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """mimic's wheel, built from a copy of the checkout (pip builds in the tree: build/ stays out of the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns(".venv", ".git", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".*cache")
    shutil.copytree(REPO, tmp / "src", ignore=skip)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "wheel", tmp / "src"])
    assert build.returncode == 0
    (built,) = (tmp / "wheel").glob("mimic-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> tuple[Path, dict]:
    """The bin/ folder of a fresh venv holding the built wheel, and the environment to run its commands in."""
    tmp = tmp_path_factory.mktemp("install")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = Path(
        subprocess.run(
            [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # The dependencies (torch, ...) come from the test's own environment: --system-site-packages would reach only the
    # base interpreter's. A path in a .pth file does not run that folder's .pth files, so the checkout's editable
    # mimic stays out and the wheel's is the one imported.
    (site / "mimic_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel])
    assert install.returncode == 0

    env = _env(venv)
    where = _run([venv / "bin" / "python", "-c", "import mimic.conf; print(mimic.conf.__file__)"], tmp, env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # not the checkout's
    return venv / "bin", env


def test_installed_commands_work_in_an_empty_folder(installed, tmp_path):
    bin_, env = installed
    work = tmp_path / "work"
    work.mkdir()
    train = _run([bin_ / "mimic-train", *TINY_SYNTHETIC, "trainer.max_epochs=1"], work, env)
    assert train.returncode == 0, train.stderr[-3000:]
    (run,) = (work / "outputs" / "train" / "runs").iterdir()
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    assert str(best) in train.stdout.strip().splitlines()[-1]
    assert (run / "test_metrics.json").is_file() and (run / "train.log").is_file()
    assert "path: mimic.conf" in (run / ".hydra" / "hydra.yaml").read_text()  # composed from the package

    photos = work / "photos"
    photos.mkdir()
    for k in range(2):
        cv2.imwrite(str(photos / f"{k}.png"), np.random.default_rng(k).integers(0, 255, (240, 320, 3), np.uint8))
    live = _run([bin_ / "mimic-live", f"ckpt={best}", f"source={photos}", "display=false"], work, env)
    assert live.returncode == 0, live.stderr[-3000:]
    (live_run,) = (work / "outputs" / "realtime" / "runs").iterdir()
    assert (live_run / "faces.csv").is_file() and (live_run / "realtime.log").is_file()

    for command in ("mimic-evaluate", "mimic-live", "mimic-train", "mimic-analyze"):
        help_ = _run([bin_ / command, "--help"], work, env)
        assert (
            help_.returncode == 0
            and "data: affectnet, ckplus, ckplus48, expw, fer2013, ferplus, folder, jaffe, rafdb, synthetic"
            in help_.stdout
        ), help_.stdout
    assert sorted(p.name for p in (work / "outputs").iterdir()) == ["realtime", "train"]


def test_installed_command_reports_a_user_mistake_in_one_line(installed, tmp_path):
    bin_, env = installed
    proc = _run([bin_ / "mimic-evaluate", f"ckpt={tmp_path / 'missing.ckpt'}", "data=synthetic"], tmp_path, env)
    assert proc.returncode == 2 and "error: " in proc.stderr and "missing.ckpt" in proc.stderr, proc.stderr


# Run in the installed venv: every cv2 on its path, the distributions that put it there, and what the detectors and
# the window need of it.
CV2_REPORT = """
import importlib.metadata as md, json, os, sys, cv2
from mimic.realtime.window import has_gui
dists = {d.metadata["Name"].lower(): d.version for d in md.distributions() if (d.metadata["Name"] or "").lower()
         in ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")}
xml = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
print(json.dumps(dict(
    found=[p for p in sys.path if p and os.path.exists(os.path.join(p, "cv2", "__init__.py"))], file=cv2.__file__,
    version=cv2.__version__, dists=dists, gui=has_gui(),
    cascade=hasattr(cv2, "CascadeClassifier") and not cv2.CascadeClassifier(xml).empty())))
"""


def _cv2_report(venv: Path, cwd: Path) -> dict:
    proc = _run([venv / "bin" / "python", "-c", CV2_REPORT], cwd, _env(venv))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["found"]) == 1 and Path(report["file"]).is_relative_to(venv), report  # one cv2, the venv's
    assert report["version"].startswith("4.") and report["cascade"], report
    assert report["dists"] and all(v.startswith("4.") for v in report["dists"].values()), report  # the pins hold
    return report


def _clip(path: Path, photo: Path | None) -> Path:
    """Ten 320x240 frames of one face (a real portrait where the shared data has one, else a cartoon)."""
    face = cv2.imread(str(photo)) if photo else draw_face("happy", 160, bgr=True, scale=0.8)
    frame = cv2.copyMakeBorder(cv2.resize(face, (180, 180)), 30, 30, 70, 70, cv2.BORDER_CONSTANT, value=(90, 110, 130))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    for _ in range(10):
        writer.write(frame)
    writer.release()
    return path


def test_a_plain_pip_install_of_the_wheel_runs_live_with_one_opencv_4(wheel, tmp_path, request):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    env = _env(venv)
    for spec in (TORCH, wheel):  # dependencies from the package registry, as a user's install gets them
        install = _run([*pip, "install", spec], tmp_path, env, timeout=900)
        assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "elsewhere"  # not the checkout: nothing of it on the path
    work.mkdir()
    _cv2_report(venv, work)

    try:
        photo = request.getfixturevalue("shared_data") / "faces" / "obama.jpg"
    except pytest.skip.Exception:
        photo = None
    clip = _clip(work / "clip.avi", photo if photo and photo.is_file() else None)
    live = _run([venv / "bin" / "mimic-live", f"source={clip}", "display=false", "max_frames=5"], work, env)
    assert live.returncode == 0, live.stderr[-3000:]
    (run,) = (work / "outputs" / "realtime" / "runs").iterdir()
    rows = (run / "faces.csv").read_text().splitlines()
    assert rows and "frame" in rows[0].split(",") and (run / "realtime.log").is_file()
    if photo:
        assert len(rows) > 1, "the portrait's face was not found in any frame"

    # Whichever build pip wrote last owns the cv2 folder; make it the headless one, as another install order does.
    headless = _run([*pip, "install", "--force-reinstall", "--no-deps", "opencv-python-headless>=4.8,<5"], work, env)
    assert headless.returncode == 0, headless.stderr[-3000:]
    assert not _cv2_report(venv, work)["gui"]
    shown = _run([venv / "bin" / "mimic-live", f"source={clip}"], work, {**env, "QT_QPA_PLATFORM": "offscreen"})
    assert shown.returncode == 2 and GUI_FIX in shown.stderr, shown.stderr[-3000:]  # stops before a window opens
    fix = subprocess.run(GUI_FIX, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert fix.returncode == 0, fix.stderr[-3000:]
    assert _cv2_report(venv, work)["gui"]  # the fix the error prints gives the GUI build, Haar files kept
