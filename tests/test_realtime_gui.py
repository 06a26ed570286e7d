"""The realtime app's windows under Xvfb: the main window with its overlay and a reaction pop-up appear (checked on a
screenshot of the whole screen), the reaction's sound goes through SDL's disk driver, and both ``q`` and closing the
window end the run promptly. Set MIMIC_SCREENSHOT_DIR to keep the screenshot.

Without a window manager every window opens at (0, 0), so the pop-up covers the main window's left part. Asking for a
position (``reactions.popup_position``) is left untested here: Qt under Xvfb does not always paint a window moved
just after it opened."""

from __future__ import annotations

import csv
import ctypes
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_opencv_install import gui_env, xvfb  # noqa: F401  (the fixture)
from test_realtime_app import patches  # noqa: F401  (the fixture)
from test_realtime_parts import REPO, load_video_maker

from mimic.realtime.assets import draw_reaction_image

pytestmark = pytest.mark.gui

WINDOW_LINE = re.compile(r'^\s*(0x[0-9a-f]+) "([^"]*)": \([^)]*\)\s+(\d+)x(\d+)\+(-?\d+)\+(-?\d+)', re.M)


@pytest.fixture(autouse=True)
def _x_tools():
    missing = [t for t in ("xwininfo", "xwd", "xdotool") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing X tools {missing} (apt-get install x11-utils x11-apps xdotool)")


def windows(display: str) -> dict[str, tuple[int, tuple[int, int, int, int]]]:
    """Top-level windows by name: (id, (x, y, w, h))."""
    out = subprocess.run(["xwininfo", "-root", "-tree"], env=gui_env(display), capture_output=True, text=True).stdout
    return {m[1]: (int(m[0], 16), tuple(int(v) for v in (m[4], m[5], m[2], m[3]))) for m in WINDOW_LINE.findall(out)}


def screenshot(display: str) -> np.ndarray:
    """The whole screen as BGR, from ``xwd -root`` decoded here (no image converter needed)."""
    data = subprocess.run(["xwd", "-root", "-silent"], env=gui_env(display), capture_output=True, check=True).stdout
    header = np.frombuffer(data[:100], ">u4")
    header_size, width, height, bits, line, colours = (int(header[i]) for i in (0, 4, 5, 11, 12, 19))
    start = header_size + 12 * colours
    pixels = np.frombuffer(data[start : start + height * line], np.uint8).reshape(height, line)
    return np.ascontiguousarray(pixels[:, : width * bits // 8].reshape(height, width, bits // 8)[:, :, :3])


def close_window(display: str, window: int) -> None:
    """Ask a window to close as a window manager would (WM_DELETE_WINDOW), through libX11."""

    class ClientMessage(ctypes.Structure):
        _fields_ = [
            ("type", ctypes.c_int),
            ("serial", ctypes.c_ulong),
            ("send_event", ctypes.c_int),
            ("display", ctypes.c_void_p),
            ("window", ctypes.c_ulong),
            ("message_type", ctypes.c_ulong),
            ("format", ctypes.c_int),
            ("data", ctypes.c_long * 5),
        ]

    class Event(ctypes.Union):
        _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]

    x11 = ctypes.cdll.LoadLibrary("libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display.encode())
    assert dpy, f"cannot open display {display}"
    event = Event()
    event.xclient.type, event.xclient.window, event.xclient.format = 33, window, 32  # 33: ClientMessage
    event.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", False)
    event.xclient.data[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", False)
    x11.XSendEvent(dpy, window, False, 0, ctypes.byref(event))
    x11.XFlush(dpy)
    x11.XCloseDisplay(dpy)


@pytest.fixture
def start_app(tiny_checkpoint, patches, tmp_path, xvfb):  # noqa: F811
    """Start realtime.py with display=true on a 40 s video played at its own pace; yields a starter."""
    video = tmp_path / "faces.mp4"
    load_video_maker().make_video(video, patches, frames=600, fps=15, layout="one")  # 40 s: time enough to look
    procs = []

    def start(*overrides: str, **env: str) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "realtime.py",
            f"ckpt={tiny_checkpoint}",
            f"source={video}",
            "pace=true",
            f"log.path={tmp_path / 'faces.csv'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            *overrides,
        ]
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=gui_env(xvfb, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the app exited early: {proc.communicate()[0]}"
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the app's windows")


def _painted(display: str, popup_name: str, expected: np.ndarray) -> tuple[np.ndarray, dict[str, bool]]:
    """A screenshot, and whether it shows the main window's video and overlay and the pop-up's picture."""
    found = windows(display)
    if "mimic" not in found or popup_name not in found:
        return np.zeros((1, 1, 3), np.uint8), {f"both windows are open: {list(found)}": False}
    (_, (x, y, w, h)), (_, popup_box) = found["mimic"], found[popup_name]
    shot = screenshot(display)
    px, py, pw, ph = popup_box
    popup = shot[py : py + expected.shape[0], px : px + expected.shape[1]]
    uncovered = shot[y : y + h, max(x, px + pw) : x + w]  # the pop-up opens over the main window's left part
    return shot, {
        "the screenshot is not blank": shot.std() > 20,
        f"the main window is {w}x{h}": abs(w - 640) + abs(h - 360) <= 2,
        f"it shows the video {(uncovered.std(), uncovered.min(2).mean())}": uncovered.std() > 25
        and uncovered.min(2).mean() > 40,
        # The issue asks for a pop-up that is not blank. Its exact picture is not required: without a window manager
        # Qt's xcb backend sometimes stacks or offsets the pop-up, so an exact match is flaky under load.
        f"the pop-up {popup_name} is painted": popup.size > 0 and popup.std() > 10,
    }


@pytest.mark.slow
def test_main_window_and_reaction_popup_show_then_q_quits(start_app, xvfb, tmp_path):  # noqa: F811
    audio = tmp_path / "audio.raw"
    # Qt under Xvfb without a window manager now and then never paints a freshly opened window (seen in about one
    # run in ten, a race inside Qt's xcb backend), and Xvfb now and then refuses a client: such a run is started
    # again, up to three times in all.
    for attempt in range(3):
        proc = start_app(
            "reactions.hold_s=0.2",
            "reactions.cooldown_s=0.5",
            "reactions.popup_s=60",
            "reactions.skip=[]",
            "smoothing.margin=1.0",
            SDL_AUDIODRIVER="disk",
            SDL_DISKAUDIOFILE=str(audio),
        )

        def both_windows():
            found = windows(xvfb)
            popups = [n for n in found if n.startswith("mimic: ")]
            return (found["mimic"][0], popups[0]) if "mimic" in found and popups else None

        try:
            main_id, popup_name = wait_for(both_windows, proc)
        except AssertionError as e:  # Xvfb now and then refuses a client ("could not connect to display")
            if attempt == 2 or "could not connect to display" not in str(e):
                raise
            continue
        label = popup_name.removeprefix("mimic: ")
        expected = draw_reaction_image(label)
        deadline = time.monotonic() + 15  # windows move, resize and paint a moment after they appear: poll
        while True:
            shot, checks = _painted(xvfb, popup_name, expected)
            if all(checks.values()) or time.monotonic() > deadline:
                break
            assert proc.poll() is None, f"the app exited early: {proc.communicate()[0]}"
            time.sleep(0.3)
        cv2.imwrite(str(tmp_path / f"screen{attempt}.png"), shot)
        if os.environ.get("MIMIC_SCREENSHOT_DIR"):
            shutil.copy(
                tmp_path / f"screen{attempt}.png", Path(os.environ["MIMIC_SCREENSHOT_DIR"]) / "realtime_gui.png"
            )
        if all(checks.values()) or attempt == 2:
            break
        proc.kill()
        proc.wait()
    assert all(checks.values()), [name for name, ok in checks.items() if not ok]

    subprocess.run(["xdotool", "windowfocus", str(main_id)], env=gui_env(xvfb), check=False)
    subprocess.run(["xdotool", "key", "q"], env=gui_env(xvfb), check=True)
    out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "frames in" in out
    log = re.search(r"face rows in (\S+\.csv)", out)  # a retried run writes faces-1.csv: nothing is overwritten
    assert log, out
    with open(log.group(1), newline="") as f:
        assert label in {r["reaction"] for r in csv.DictReader(f)}
    deadline = time.monotonic() + 5
    while not (audio.is_file() and audio.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert audio.stat().st_size > 0, "the reaction's sound went to SDL's disk driver"


def test_closing_the_window_quits(start_app, xvfb):  # noqa: F811
    for attempt in range(3):  # Xvfb now and then refuses a client, as in the test above: start again
        proc = start_app("reactions.sound=false", SDL_AUDIODRIVER="dummy")
        try:
            main_id, _ = wait_for(lambda: windows(xvfb).get("mimic"), proc)
            break
        except AssertionError as e:
            if attempt == 2 or "could not connect to display" not in str(e):
                raise
    time.sleep(0.5)
    close_window(xvfb, main_id)
    out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0 and "frames in" in out, out
