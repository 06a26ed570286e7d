"""The one OpenCV in the environment must have both what the detectors need (the Haar cascades, cv2 4.x) and a
working GUI (cv2.imshow opens a real window). Several opencv wheels installed side by side silently lose one of them.

Also holds the `xvfb` fixture (a private X server) the GUI tests share.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest


def _accepts(display: str) -> bool:
    """Whether the X server at ``display`` takes a client (its socket appears before it is ready)."""
    probe = shutil.which("xwininfo") or shutil.which("xdpyinfo")
    if probe is None:
        return True
    args = [probe, "-root"] if probe.endswith("xwininfo") else [probe]
    return subprocess.run(args, env={**os.environ, "DISPLAY": display}, capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def xvfb() -> str:
    """Start Xvfb on a free display number (random, high: away from real displays and other test runs); yields the
    DISPLAY value. Skips when Xvfb is not installed."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb x11-utils x11-apps xdotool)")
    proc = None
    for number in random.Random(os.getpid()).sample(range(100, 900), 20):
        if Path(f"/tmp/.X{number}-lock").exists() or Path(f"/tmp/.X11-unix/X{number}").exists():
            continue
        proc = subprocess.Popen(
            [exe, f":{number}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while proc.poll() is None and not Path(f"/tmp/.X11-unix/X{number}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        while proc.poll() is None and time.monotonic() < deadline and not _accepts(f":{number}"):
            time.sleep(0.1)
        if proc.poll() is None and _accepts(f":{number}"):
            break
        proc.kill()
        proc.wait()
        proc = None
    if proc is None:
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def gui_env(display: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb", **extra}


def test_opencv_is_4x_with_the_haar_cascades():
    assert int(cv2.__version__.split(".")[0]) == 4, "opencv 5.x has no CascadeClassifier and no Haar XML files"
    assert hasattr(cv2, "CascadeClassifier") and hasattr(cv2, "FaceDetectorYN")
    folder = Path(cv2.data.haarcascades)
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        assert (folder / name).is_file()
        assert not cv2.CascadeClassifier(str(folder / name)).empty()


def test_opencv_has_a_gui_backend():
    info = cv2.getBuildInformation()
    gui = info[info.index("GUI:") :].splitlines()[0]
    assert "NONE" not in gui.upper(), f"opencv was built without a GUI (headless wheel?): {gui}"


@pytest.mark.gui
def test_imshow_opens_a_real_window(xvfb):
    code = (
        "import cv2, numpy as np\n"
        "cv2.namedWindow('probe', cv2.WINDOW_AUTOSIZE)\n"
        "cv2.imshow('probe', np.full((120, 160, 3), 200, np.uint8))\n"
        "cv2.waitKey(200)\n"
        "visible = cv2.getWindowProperty('probe', cv2.WND_PROP_VISIBLE)\n"
        "cv2.destroyWindow('probe'); cv2.waitKey(1)\n"
        "print('visible', visible)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=gui_env(xvfb), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "visible 1.0" in proc.stdout, proc.stdout + proc.stderr
