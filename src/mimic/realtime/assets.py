"""The default reactions: a picture (PNG, drawn with cv2) and a short sound (WAV, synthesised with numpy) per class.

Nothing binary is committed: `default_assets` draws and synthesises them the first time and keeps them in
``<cache>/assets/v<VERSION>/`` (`mimic.io.cache_dir`), so later runs only read them.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import cv2
import numpy as np

from mimic.io import atomic_write, cache_dir, write_bytes
from mimic.realtime.overlay import FONT, class_color

VERSION = 1
RATE = 22050
SIZE = 240


# ------------------------------------------------------------------------------------------------------- pictures
def _arc(img: np.ndarray, center, axes, start: float, end: float, color, thickness: int) -> None:
    cv2.ellipse(
        img,
        (int(center[0]), int(center[1])),
        (int(axes[0]), int(axes[1])),
        0,
        start,
        end,
        color,
        thickness,
        cv2.LINE_AA,
    )


def draw_reaction_image(name: str, size: int = SIZE) -> np.ndarray:
    """A cartoon face showing ``name`` over a band in the class colour with the name written on it (BGR uint8)."""
    s = size / 240
    img = np.full((size, size, 3), 255, np.uint8)
    band = class_color(name)
    img[int(196 * s) :] = band
    c = (size // 2, int(100 * s))
    r = int(82 * s)
    face = {"angry": (80, 90, 235), "disgust": (120, 200, 150), "fear": (235, 215, 200)}.get(name, (80, 215, 255))
    ink, white, t = (40, 40, 40), (255, 255, 255), max(2, int(5 * s))
    cv2.circle(img, c, r, face, -1, cv2.LINE_AA)
    cv2.circle(img, c, r, ink, t, cv2.LINE_AA)
    ex, ey, mx, my = int(30 * s), int(22 * s), c[0], c[1] + int(35 * s)
    eyes = [(c[0] - ex, c[1] - ey), (c[0] + ex, c[1] - ey)]
    if name == "happy":
        for e in eyes:
            _arc(img, e, (12 * s, 10 * s), 180, 360, ink, t)
        _arc(img, (mx, my - 12 * s), (40 * s, 28 * s), 0, 180, ink, t)
    elif name == "sad":
        for e in eyes:
            cv2.circle(img, e, int(7 * s), ink, -1, cv2.LINE_AA)
        _arc(img, (mx, my + 12 * s), (34 * s, 20 * s), 180, 360, ink, t)
        cv2.circle(img, (eyes[1][0] + int(4 * s), eyes[1][1] + int(24 * s)), int(7 * s), (230, 160, 60), -1)
    elif name == "angry":
        for side, e in zip((-1, 1), eyes, strict=True):
            cv2.circle(img, e, int(7 * s), ink, -1, cv2.LINE_AA)
            p0 = (e[0] - side * int(16 * s), e[1] - int(10 * s))  # inner end low: a frown
            p1 = (e[0] + side * int(14 * s), e[1] - int(26 * s))
            cv2.line(img, p0, p1, ink, t, cv2.LINE_AA)
        _arc(img, (mx, my + 14 * s), (30 * s, 14 * s), 180, 360, ink, t)
    elif name == "surprise":
        for e in eyes:
            cv2.circle(img, e, int(13 * s), white, -1, cv2.LINE_AA)
            cv2.circle(img, e, int(6 * s), ink, -1, cv2.LINE_AA)
        cv2.ellipse(img, (mx, my + int(4 * s)), (int(14 * s), int(20 * s)), 0, 0, 360, ink, -1, cv2.LINE_AA)
    elif name == "fear":
        for e in eyes:
            cv2.circle(img, e, int(14 * s), white, -1, cv2.LINE_AA)
            cv2.circle(img, (e[0], e[1] + int(4 * s)), int(5 * s), ink, -1, cv2.LINE_AA)
        xs = np.linspace(-34, 34, 9) * s + mx
        ys = my + 5 * s * np.where(np.arange(9) % 2, 1, -1)
        cv2.polylines(img, [np.stack([xs, ys], 1).astype(np.int32)], False, ink, t, cv2.LINE_AA)
    elif name == "disgust":
        for e in eyes:
            cv2.line(img, (e[0] - int(12 * s), e[1]), (e[0] + int(12 * s), e[1]), ink, t, cv2.LINE_AA)
        xs = np.linspace(-34, 34, 40) * s + mx
        ys = my + 9 * s * np.sin(np.linspace(0, 3 * np.pi, 40))
        cv2.polylines(img, [np.stack([xs, ys], 1).astype(np.int32)], False, ink, t, cv2.LINE_AA)
        cv2.ellipse(
            img,
            (mx + int(10 * s), my + int(12 * s)),
            (int(10 * s), int(12 * s)),
            0,
            0,
            180,
            (90, 90, 230),
            -1,
            cv2.LINE_AA,
        )
    elif name == "contempt":
        for e in eyes:
            cv2.line(img, (e[0] - int(10 * s), e[1]), (e[0] + int(10 * s), e[1]), ink, t, cv2.LINE_AA)
        cv2.line(img, (mx - int(28 * s), my + int(6 * s)), (mx + int(12 * s), my + int(6 * s)), ink, t, cv2.LINE_AA)
        _arc(img, (mx + 22 * s, my - 4 * s), (12 * s, 10 * s), 0, 100, ink, t)
    else:  # neutral, and any class without its own face
        for e in eyes:
            cv2.circle(img, e, int(7 * s), ink, -1, cv2.LINE_AA)
        cv2.line(img, (mx - int(30 * s), my), (mx + int(30 * s), my), ink, t, cv2.LINE_AA)
    scale = 0.9 * s
    (tw, th), _ = cv2.getTextSize(name, FONT, scale, max(1, int(2 * s)))
    org = ((size - tw) // 2, int(196 * s) + (size - int(196 * s) + th) // 2)
    text = (40, 40, 40) if 0.114 * band[0] + 0.587 * band[1] + 0.299 * band[2] > 150 else (255, 255, 255)
    cv2.putText(img, name, org, FONT, scale, text, max(1, int(2 * s)), cv2.LINE_AA)
    return img


# ------------------------------------------------------------------------------------------------------- sounds
def _tone(freq: float | np.ndarray, seconds: float, wave_shape: str = "sine") -> np.ndarray:
    n = int(RATE * seconds)
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / RATE
    if wave_shape == "square":
        y = np.sign(np.sin(phase)) * 0.5
    elif wave_shape == "saw":
        y = ((phase / (2 * np.pi)) % 1.0) * 2 - 1
        y *= 0.6
    else:
        y = np.sin(phase)
    attack, release = min(n // 4, int(0.01 * RATE)), min(n // 2, int(0.06 * RATE))
    env = np.ones(n)
    env[:attack] = np.linspace(0, 1, attack)
    env[n - release :] = np.linspace(1, 0, release)
    return y * env


def _notes(freqs: list[float], seconds: float, shape: str = "sine") -> np.ndarray:
    return np.concatenate([_tone(f, seconds, shape) for f in freqs])


def synth_reaction_sound(name: str) -> np.ndarray:
    """A short sound for ``name``: float samples in [-1, 1] at `RATE` Hz (rising notes for happy, falling for sad)."""
    n = lambda semis: 440.0 * 2 ** (semis / 12)  # noqa: E731  semitones from A4
    if name == "happy":
        y = _notes([n(3), n(7), n(10), n(15)], 0.11)
    elif name == "sad":
        y = _notes([n(-2), n(-5), n(-9)], 0.28)
    elif name == "angry":
        t = np.arange(int(RATE * 0.5)) / RATE
        y = _tone(110 + 8 * np.sin(2 * np.pi * 9 * t), 0.5, "saw")
    elif name == "surprise":
        y = _tone(np.geomspace(400, 1500, int(RATE * 0.3)), 0.3)
    elif name == "fear":
        y = _notes([n(12), n(13)] * 4, 0.07)
    elif name == "disgust":
        t = np.arange(int(RATE * 0.45)) / RATE
        y = _tone(np.geomspace(300, 120, len(t)) * (1 + 0.05 * np.sin(2 * np.pi * 14 * t)), 0.45, "square")
    elif name == "contempt":
        y = _notes([n(-7), n(-10)], 0.16, "square")
    else:
        y = _tone(660.0, 0.18)
    return np.clip(0.8 * y, -1, 1)


def write_wav(path: str | os.PathLike, samples: np.ndarray, rate: int = RATE) -> None:
    """Write float samples in [-1, 1] as a mono 16-bit WAV file."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


# ------------------------------------------------------------------------------------------------------- the cache
def default_assets(class_names: list[str], folder: str | os.PathLike | None = None) -> dict[str, tuple[Path, Path]]:
    """``{class: (image.png, sound.wav)}`` for every class, generated into ``folder`` (default: the cache) once."""
    root = Path(folder).expanduser() if folder else cache_dir("assets") / f"v{VERSION}"
    out = {}
    for name in class_names:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        image, sound = root / f"{safe}.png", root / f"{safe}.wav"
        if not image.is_file():
            write_bytes(image, cv2.imencode(".png", draw_reaction_image(name))[1].tobytes())
        if not sound.is_file():
            atomic_write(sound, lambda tmp, n=name: write_wav(tmp, synth_reaction_sound(n)))
        out[name] = (image, sound)
    return out
