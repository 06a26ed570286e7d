"""The one OpenCV in the environment must have both what the detectors need (the Haar cascades, cv2 4.x) and a
working GUI (cv2.imshow opens a real window). Several opencv wheels installed side by side silently lose one of them;
where the headless build wins, the window stops with the fix before it opens (`mimic.realtime.window.require_gui`).

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
import numpy as np
import pytest
from conftest import compose

from mimic.errors import UserError
from mimic.realtime.window import GUI_FIX, Window, has_gui, run, show_cameras


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
    assert has_gui(), f"opencv was built without a GUI (headless wheel?): {info[info.index('GUI:') :].splitlines()[0]}"


# The GUI part of cv2.getBuildInformation() as each build prints it: opencv-python on Linux and macOS, an older build
# that named its backends only below the header, and opencv-python-headless.
QT5 = "  GUI:                           QT5\n    QT:                          YES (ver 5.15.19 )\n    GTK+:   NO\n"
COCOA = "  GUI:                           COCOA\n    Cocoa:                       YES\n"
UNNAMED = "  GUI: \n    GTK+:                        YES (ver 3.24.20)\n"
HEADLESS = "  GUI:                           NONE\n    VTK support:                 NO\n\n  Media I/O: \n"


@pytest.mark.parametrize("info, gui", [(QT5, True), (COCOA, True), (UNNAMED, True), (HEADLESS, False)])
def test_has_gui_reads_the_build_information(monkeypatch, info, gui):
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: f"General configuration\n{info}  Video I/O:\n")
    assert has_gui() is gui


@pytest.fixture
def headless_cv2(monkeypatch) -> None:
    """cv2 as the headless wheel has it: no GUI in its build information, and any window call fails the test."""
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: f"General configuration\n{HEADLESS}")

    def no_window(*args, **kwargs):
        raise AssertionError("a window call on a cv2 without GUI support")

    for name in ("namedWindow", "imshow", "resizeWindow", "waitKey"):
        monkeypatch.setattr(cv2, name, no_window)


def test_the_window_stops_on_a_headless_cv2_with_the_fix(headless_cv2):
    with pytest.raises(UserError) as raised:
        Window("mimic")
    message = str(raised.value)
    assert "headless" in message and GUI_FIX in message and "display=false" in message, message
    assert "\n" not in message
    with pytest.raises(UserError, match="opencv-python-headless"):
        show_cameras([])


def test_a_run_with_display_on_a_headless_cv2_stops_before_any_window(headless_cv2, monkeypatch, tmp_path):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # a display, so that the run does not go headless itself
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((120, 160, 3), 128, np.uint8))
    overrides = [f"source={folder}", "display=true", "reactions.sound=false", f"log.path={tmp_path / 'faces.csv'}"]
    with pytest.raises(UserError, match="pip uninstall -y opencv-python-headless"):
        run(compose("realtime", overrides, output_dir=tmp_path / "run"))


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
