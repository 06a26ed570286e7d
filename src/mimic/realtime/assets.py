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
def draw_reaction_image(name: str) -> np.ndarray:
    """A cartoon face showing ``name`` over a band in the class colour with the name written on it (BGR uint8)."""
    img = np.full((SIZE, SIZE, 3), 255, np.uint8)
    band = class_color(name)
    img[196:] = band
    c, r = (SIZE // 2, 100), 82
    face = {"angry": (80, 90, 235), "disgust": (120, 200, 150), "fear": (235, 215, 200)}.get(name, (80, 215, 255))
    ink, white, t, aa = (40, 40, 40), (255, 255, 255), 5, cv2.LINE_AA
    cv2.circle(img, c, r, face, -1, aa)
    cv2.circle(img, c, r, ink, t, aa)
    mx, my = c[0], c[1] + 35
    eyes = [(c[0] - 30, c[1] - 22), (c[0] + 30, c[1] - 22)]
    if name == "happy":
        for e in eyes:
            cv2.ellipse(img, e, (12, 10), 0, 180, 360, ink, t, aa)
        cv2.ellipse(img, (mx, my - 12), (40, 28), 0, 0, 180, ink, t, aa)
    elif name == "sad":
        for e in eyes:
            cv2.circle(img, e, 7, ink, -1, aa)
        cv2.ellipse(img, (mx, my + 12), (34, 20), 0, 180, 360, ink, t, aa)
        cv2.circle(img, (eyes[1][0] + 4, eyes[1][1] + 24), 7, (230, 160, 60), -1)  # a tear
    elif name == "angry":
        for side, e in zip((-1, 1), eyes, strict=True):
            cv2.circle(img, e, 7, ink, -1, aa)
            cv2.line(img, (e[0] - side * 16, e[1] - 10), (e[0] + side * 14, e[1] - 26), ink, t, aa)  # inner end low
        cv2.ellipse(img, (mx, my + 14), (30, 14), 0, 180, 360, ink, t, aa)
    elif name == "surprise":
        for e in eyes:
            cv2.circle(img, e, 13, white, -1, aa)
            cv2.circle(img, e, 6, ink, -1, aa)
        cv2.ellipse(img, (mx, my + 4), (14, 20), 0, 0, 360, ink, -1, aa)
    elif name == "fear":
        for e in eyes:
            cv2.circle(img, e, 14, white, -1, aa)
            cv2.circle(img, (e[0], e[1] + 4), 5, ink, -1, aa)
        xs, ys = np.linspace(-34, 34, 9) + mx, my + 5 * np.where(np.arange(9) % 2, 1, -1)
        cv2.polylines(img, [np.stack([xs, ys], 1).astype(np.int32)], False, ink, t, aa)
    elif name == "disgust":
        for e in eyes:
            cv2.line(img, (e[0] - 12, e[1]), (e[0] + 12, e[1]), ink, t, aa)
        xs, ys = np.linspace(-34, 34, 40) + mx, my + 9 * np.sin(np.linspace(0, 3 * np.pi, 40))
        cv2.polylines(img, [np.stack([xs, ys], 1).astype(np.int32)], False, ink, t, aa)
        cv2.ellipse(img, (mx + 10, my + 12), (10, 12), 0, 0, 180, (90, 90, 230), -1, aa)
    elif name == "contempt":
        for e in eyes:
            cv2.line(img, (e[0] - 10, e[1]), (e[0] + 10, e[1]), ink, t, aa)
        cv2.line(img, (mx - 28, my + 6), (mx + 12, my + 6), ink, t, aa)
        cv2.ellipse(img, (mx + 22, my - 4), (12, 10), 0, 0, 100, ink, t, aa)
    else:  # neutral, and any class without its own face
        for e in eyes:
            cv2.circle(img, e, 7, ink, -1, aa)
        cv2.line(img, (mx - 30, my), (mx + 30, my), ink, t, aa)
    (tw, th), _ = cv2.getTextSize(name, FONT, 0.9, 2)
    text = (40, 40, 40) if 0.114 * band[0] + 0.587 * band[1] + 0.299 * band[2] > 150 else (255, 255, 255)
    cv2.putText(img, name, ((SIZE - tw) // 2, 196 + (SIZE - 196 + th) // 2), FONT, 0.9, text, 2, aa)
    return img


# ------------------------------------------------------------------------------------------------------- sounds
def _tone(freq: float | np.ndarray, seconds: float, wave_shape: str = "sine") -> np.ndarray:
    n = int(RATE * seconds)
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / RATE
    if wave_shape == "square":
        y = np.sign(np.sin(phase)) * 0.5
    elif wave_shape == "saw":
        y = (((phase / (2 * np.pi)) % 1.0) * 2 - 1) * 0.6
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


def write_wav(path: str | os.PathLike, samples: np.ndarray) -> None:
    """Write float samples in [-1, 1] as a mono 16-bit WAV file."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
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
