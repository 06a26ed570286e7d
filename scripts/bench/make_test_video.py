"""Make a test video of moving, scaling faces: real portraits pasted into frames, or synthetic faces without them.

    python scripts/bench/make_test_video.py out=clip.mp4 [faces_dir=../shared/data/faces] [frames=300]
                                            [size=640x360] [layout=one-two|one|two|two-three|crowd] [fps=30] [noise=6]
                                            [lighting=false] [seed=0]

The first half of ``one-two`` shows one face drifting and zooming, the second half two faces side by side;
``two-three`` shows two faces, then three (the third a mirrored copy of the first portrait when there are only two).
``crowd`` is a stage recording's audience: a scene cut every `CROWD_SHOT_S` seconds to another place and another
crowd of 5-8 small, dim faces (the portraits, mirrored and resized), each sitting still but for a slight sway.
Lighting changes (on here by default, off in `make_video` unless asked; see `light_schedule`): slow drifts of
contrast and brightness over the clip and a lamp switched on about a quarter in and off about three quarters in,
applied to the whole frame before the sensor noise. Without ``faces_dir`` (or when it holds no usable photo)
synthetic faces from `mimic.data.synthetic` stand in. The tests, scripts/bench/benchmark_realtime.py and
scripts/bench/benchmark_web.py import `make_video` from here.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from mimic.args import Key, boolean, choice, parse
from mimic.cli import user_errors
from mimic.errors import UserError

HEAD_MARGIN = 0.6  # the patch around a face is its box grown by this fraction on every side


def _square(img: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """The square of ``side`` centred on (cx, cy), padded by edge replication where it leaves the image."""
    half = int(side / 2)
    pad = cv2.copyMakeBorder(img, half, half, half, half, cv2.BORDER_REPLICATE)
    x0, y0 = int(cx), int(cy)
    return pad[y0 : y0 + 2 * half, x0 : x0 + 2 * half]


PORTRAITS = ("biden.jpg", "obama.jpg")  # the shared data's portraits (faces/), one frontal face each


def photo_patches(faces_dir: str | Path, names: tuple[str, ...] | None = None) -> list[np.ndarray]:
    """A square head-and-shoulders patch from every photo in ``faces_dir`` (or its ``names``) in which Haar finds
    exactly one face: a portrait."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    folder = Path(faces_dir)
    paths = [folder / n for n in names] if names else sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))
    patches = []
    for path in paths:
        img = cv2.imread(str(path))
        if img is None:
            continue
        scale = 400 / max(img.shape[:2])
        small = cv2.cvtColor(
            cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        )
        boxes, _ = cascade.detectMultiScale2(small, 1.1, 5, minSize=(30, 30))
        if len(boxes) != 1:
            continue
        x, y, w, h = (v / scale for v in boxes[0])
        patches.append(_square(img, x + w / 2, y + h / 2, w * (1 + 2 * HEAD_MARGIN)))
    return patches


def synthetic_patches(n: int = 2) -> list[np.ndarray]:
    """Synthetic stand-ins (cartoon faces, BGR) for when the real photos are absent."""
    from mimic.data.synthetic import draw_face

    # Faces Haar finds at every size and place the videos use. Not every cartoon is one: a sad face with a fringe on a
    # light background (the second face here once) was missed in a fifth of the frames (the same face with a cap, or
    # on a dark background, in none), and the tests of two faces failed wherever the real photos were absent.
    faces = [
        ("happy", dict(skin=190.0, background=60.0, hair=1)),
        ("angry", dict(skin=150.0, background=215.0, hair=2)),
        ("neutral", dict(skin=170.0, background=120.0, hair=1)),
    ]
    return [draw_face(name, 256, bgr=True, scale=0.8, **look) for name, look in (faces * n)[:n]]


def _background(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    img = np.stack([90 + 60 * x + 0 * y, 110 + 40 * y + 0 * x, 130 - 50 * x * y], -1)
    for i in range(6):  # a few soft shapes, so the detector sees some structure that is not a face
        cx, cy = int(width * (0.1 + 0.16 * i)), int(height * (0.85 if i % 2 else 0.12))
        cv2.circle(img, (cx, cy), int(height * 0.08), (60 + 20 * i, 150, 200 - 20 * i), -1, cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, patch: np.ndarray, cx: float, cy: float, side: int) -> tuple[int, int, int, int]:
    """Paste ``patch`` resized to ``side`` centred on (cx, cy); returns the face box inside it (frame pixels)."""
    h, w = frame.shape[:2]
    side = int(side)
    img = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    frame[fy0:fy1, fx0:fx1] = img[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    face = side / (1 + 2 * HEAD_MARGIN)
    return int(cx - face / 2), int(cy - face / 2), int(face), int(face)


LAYOUTS = ("one-two", "one", "two", "two-three", "crowd")
CROWD_SHOT_S = 3.0  # crowd: seconds between scene cuts
CROWD_DIM = 0.3  # crowd: the room's light, as a gain on the whole frame
CROWD_SHADE = (0.6, 1.0)  # crowd: each face's own light, as a gain on the room's


def light_schedule(frames: int, seed: int = 0) -> np.ndarray:
    """Per frame (gain, offset) of the scene's light, shape (frames, 2): a frame becomes ``clip(gain * frame +
    offset)``. Slow drifts over the clip, one cycle of contrast (gain x(1 +- 0.15)) and one and a half of brightness
    (offset +-15 gray levels), and a lamp: off (gain x0.9, offset -8) until a frame drawn in [0.2, 0.3) of the clip,
    then on (x1.15, +12) until a frame drawn in [0.7, 0.8), then off again. The phases and switch frames come from
    ``seed``; the same ``seed`` gives the same light."""
    rng = np.random.default_rng([seed, 1])  # apart from the noise's generator: the noise is the same with or without
    phase, phase2 = rng.uniform(0, 2 * math.pi, 2)
    on, off = int(frames * rng.uniform(0.2, 0.3)), int(frames * rng.uniform(0.7, 0.8))
    u = np.arange(frames) / max(1, frames)
    lamp = (np.arange(frames) >= on) & (np.arange(frames) < off)
    gain = (1 + 0.15 * np.sin(2 * math.pi * u + phase)) * np.where(lamp, 1.15, 0.9)
    offset = 15 * np.sin(3 * math.pi * u + phase2) + np.where(lamp, 12.0, -8.0)
    return np.stack([gain, offset], 1)


def _face_patches(patches: list[np.ndarray], n: int) -> list[np.ndarray]:
    """The ``n`` faces of a frame, left to right: the first and last patch for two; for three also the second patch,
    or the first one mirrored when there are only two."""
    first, last = patches[0], patches[-1]
    if n == 1:
        return [first]
    if n == 2:
        return [first, last]
    return [first, last, patches[1] if len(patches) > 2 else cv2.flip(first, 1)]


def make_video(
    path: str | Path,
    patches: list[np.ndarray],
    frames: int = 300,
    size: tuple[int, int] = (640, 360),
    fps: float = 30.0,
    layout: str = "one-two",
    noise: float = 0.0,
    seed: int = 0,
    lighting: bool = False,
) -> list[list[tuple[int, int, int, int]]]:
    """Write the video; returns per frame the face boxes pasted (left to right), the ground truth for tests.
    ``noise``: sigma of a webcam-like sensor noise in gray levels, with a matching flicker of the exposure.
    ``lighting``: the light changes of `light_schedule` (``seed``'s)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    rng = np.random.default_rng(seed)
    light = light_schedule(frames, seed) if lighting else None
    width, height = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write a video to {path}")
    background = _background(width, height)
    truth = []
    shot_frames = max(1, int(round(CROWD_SHOT_S * fps)))
    for i in range(frames):
        if layout == "crowd":
            frame, boxes = _crowd(background, patches, i // shot_frames, i % shot_frames, seed)
            truth.append(boxes)
            writer.write(_sensor(frame, light, i, noise, rng))
            continue
        frame = background.copy()
        phase = 2 * math.pi * i / max(1, frames)
        late = i >= frames // 2
        n = {"one": 1, "two": 2, "one-two": 1 + late, "two-three": 2 + late}[layout]
        boxes = []
        for k, patch in enumerate(_face_patches(patches, n)):
            if n == 1:
                side = height * (0.62 + 0.12 * math.sin(3 * phase))
                cx = width / 2 + width * 0.18 * math.sin(2 * phase)
                cy = height / 2 + height * 0.05 * math.cos(2 * phase)
            elif n == 2:
                side = height * (0.52 + 0.08 * math.sin(3 * phase + k))
                cx = width * (0.27 + 0.46 * k) + width * 0.04 * math.sin(2 * phase + k)
                cy = height / 2 + height * 0.04 * math.cos(2 * phase)
            else:  # three: smaller, each drifting and zooming on its own phase, never overlapping
                side = height * (0.40 + 0.05 * math.sin(3 * phase + k))
                cx = width * (0.18 + 0.32 * k) + width * 0.03 * math.sin(2 * phase + k)
                cy = height / 2 + height * 0.05 * math.cos(2 * phase + k)
            boxes.append(_paste(frame, patch, cx, cy, int(side)))
        writer.write(_sensor(frame, light, i, noise, rng))
        truth.append(boxes)
    writer.release()
    return truth


def _sensor(frame: np.ndarray, light: np.ndarray | None, i: int, noise: float, rng) -> np.ndarray:
    """The frame as the camera records it: under the light's gain and offset, with sensor noise."""
    if light is not None:
        gain, offset = light[i]
        frame = np.clip(frame.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    if noise > 0:
        jitter = rng.normal(0, noise, frame.shape).astype(np.float32) + rng.normal(0, noise / 2)
        frame = np.clip(frame + jitter, 0, 255).astype(np.uint8)
    return frame


def _crowd(
    background: np.ndarray, patches: list[np.ndarray], shot: int, i: int, seed: int
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Frame ``i`` of shot ``shot`` of the crowd layout, and its face boxes: a place of its own (the background
    turned, mirrored and tinted by the shot) and 5-8 faces 22-40 px wide on a jittered grid, dimmed. As in a real
    audience, each face sits in its own light (x`CROWD_SHADE` of the room's) and some are out of focus, so a few
    score near the detector's threshold; and a face now and then looks away (its head seen from behind for a third
    of a second to a second, no face in the boxes) and back."""
    rng = np.random.default_rng([seed, shot, 7])
    height, width = background.shape[:2]
    place = [background, cv2.flip(background, 1), cv2.flip(background, 0), cv2.flip(background, -1)][shot % 4]
    frame = np.clip(place.astype(np.float32) * rng.uniform(0.7, 1.2, 3), 0, 255).astype(np.uint8)
    n = int(rng.integers(5, 9))
    cols, rows = 4, 2
    cells = rng.permutation(cols * rows)[:n]
    boxes = []
    for k, cell in enumerate(cells):
        patch = patches[k % len(patches)]
        patch = cv2.flip(patch, 1) if (k + shot) % 2 else patch
        face = rng.uniform(22, 40)
        shade, blur = rng.uniform(*CROWD_SHADE), rng.uniform(0, 1.5)
        away_at, away_for = rng.uniform(0, 90), rng.uniform(10, 30)  # frames into the shot; only some are in it
        side = int(face * (1 + 2 * HEAD_MARGIN))
        cx = width * (cell % cols + 0.5) / cols + rng.uniform(-0.08, 0.08) * width / cols
        cy = height * (cell // cols + 0.5) / rows + rng.uniform(-0.1, 0.1) * height / rows
        sway = 2.0 * math.sin(2 * math.pi * (i / 45.0 + k / n))
        if away_at <= i < away_at + away_for and k % 3 == 0:  # the back of the head: hair, no face
            head = int(face * 0.45)
            centre = (int(round(cx + sway)), int(round(cy)))
            cv2.ellipse(frame, centre, (head, int(head * 1.2)), 0, 0, 360, (40, 45, 55), -1, cv2.LINE_AA)
            continue
        patch = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)  # shaded and blurred at its size
        patch = np.clip(patch.astype(np.float32) * shade, 0, 255).astype(np.uint8)
        if blur > 0.5:
            patch = cv2.GaussianBlur(patch, (0, 0), blur)
        boxes.append(_paste(frame, patch, cx + sway, cy, side))
    frame = np.clip(frame.astype(np.float32) * CROWD_DIM, 0, 255).astype(np.uint8)
    return frame, boxes


KEYS = {
    "out": Key(Path, None, "the video file to write (.mp4, or .avi for MJPG)", required=True),
    "faces_dir": Key(Path, None, "a folder of portrait photos, e.g. ../shared/data/faces (default: synthetic faces)"),
    "frames": Key(int, 300, "frames"),
    "size": Key(str, "640x360", "WIDTHxHEIGHT"),
    "fps": Key(float, 30.0, "frames per second"),
    "layout": Key(choice(*LAYOUTS), "one-two", "how many faces, when"),
    "noise": Key(float, 0.0, "webcam-like sensor noise, sigma in gray levels"),
    "lighting": Key(boolean, True, "slow contrast and brightness drifts and a lamp switched on and off"),
    "seed": Key(int, 0, "seed of the noise and of the lighting's phases and times"),
}


def main(argv: list[str] | None = None) -> None:
    """Write the video the command line (``key=value`` words; default: ``sys.argv``) describes."""
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        width, x, height = args.size.lower().partition("x")
        if not (x and width.isdigit() and height.isdigit()):
            raise UserError(f"size={args.size}: expected WIDTHxHEIGHT, e.g. size=640x360")
    patches = photo_patches(args.faces_dir) if args.faces_dir else []
    if not patches:
        print("no usable photos: using synthetic faces")
        patches = synthetic_patches()
    size = (int(width), int(height))
    make_video(args.out, patches, args.frames, size, args.fps, args.layout, args.noise, args.seed, args.lighting)
    light = f"lighting changes (seed {args.seed})" if args.lighting else "no lighting changes"
    print(f"wrote {args.frames} frames of {args.size} ({args.layout}, noise {args.noise}, {light}) to {args.out}")


if __name__ == "__main__":
    main()
