"""mimic installed as a package: a wheel built from a copy of the checkout, installed into a fresh virtual
environment, gives `mimic-train`, `mimic-live` and `mimic-evaluate`, which work in an empty folder (the configs ship
inside the package) and write their runs under that folder's outputs/."""

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

pytestmark = pytest.mark.slow  # about 40 s: a wheel build, an install and a one-epoch training


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """The bin/ folder of a fresh venv holding the built wheel, and the environment to run its commands in."""
    tmp = tmp_path_factory.mktemp("install")
    skip = shutil.ignore_patterns(".venv", ".git", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".*cache")
    shutil.copytree(REPO, tmp / "src", ignore=skip)  # pip builds in the tree: keep build/ out of the checkout
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "wheel", tmp / "src"])
    assert build.returncode == 0
    (wheel,) = (tmp / "wheel").glob("mimic-*.whl")

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

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SDL_AUDIODRIVER="dummy", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
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

    for command in ("mimic-evaluate", "mimic-live", "mimic-train"):
        help_ = _run([bin_ / command, "--help"], work, env)
        assert help_.returncode == 0 and "data: fer2013, ferplus, folder, synthetic" in help_.stdout, help_.stdout
    assert sorted(p.name for p in (work / "outputs").iterdir()) == ["realtime", "train"]


def test_installed_command_reports_a_user_mistake_in_one_line(installed, tmp_path):
    bin_, env = installed
    proc = _run([bin_ / "mimic-evaluate", f"ckpt={tmp_path / 'missing.ckpt'}", "data=synthetic"], tmp_path, env)
    assert proc.returncode == 2 and "error: " in proc.stderr and "missing.ckpt" in proc.stderr, proc.stderr
