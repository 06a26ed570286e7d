"""The one OpenCV in the environment must have both what the detectors need (the Haar cascades, cv2 4.x) and a
working GUI (cv2.imshow opens a real window). Several opencv wheels installed side by side silently lose one of them.

Also holds the `xvfb` fixture (a private X server) the GUI tests share.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest


@pytest.fixture(scope="session")
def xvfb() -> str:
    """Start Xvfb on a display number it picks itself (-displayfd: no race with other X servers); yields the
    DISPLAY value. Skips when Xvfb is not installed."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb x11-utils x11-apps xdotool)")
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_end), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    number = b""
    deadline = time.monotonic() + 20
    while not number.endswith(b"\n") and time.monotonic() < deadline:
        if select.select([read_end], [], [], 0.2)[0]:
            chunk = os.read(read_end, 16)
            if not chunk:
                break
            number += chunk
    os.close(read_end)
    if not number.strip().isdigit():
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number.decode().strip()}"
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
