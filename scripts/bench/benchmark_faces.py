"""Benchmark the face detectors on FER2013 faces pasted into frames, and the full path's accuracy (issue 11).

    python scripts/bench/benchmark_faces.py [data=../shared/data/fer2013/fer2013.csv.gz] [faces=1000] [empty=1500]
                                            [webcam=300] [clips=30] [seed=0]
                                            [ckpt=<file.ckpt|file.onnx|bundled> [spec.<field>=<value> ...]] [split=test]

Frames (640x480, seeded, made on the fly):
- face frames: a PrivateTest face (``faces`` of them, sampled) enlarged to 15-60% of the frame's height and pasted at
  a random place on a background; once upright and once turned in-plane by up to ±20°. ``webcam`` more, upright, at
  30-80% of the height (a webcam at arm's length).
- the background: a tiling of Training-split faces enlarged to 64-160 px per tile, blurred with a sigma of
  ``BLUR`` x the tile's side. At that blur no detector setting here finds a face in a tiling (the face-free
  textured frames below check it), yet the frame stays textured and face-like in its light and shade.
- face-free frames, ``empty`` of each kind: ``textured`` (that background alone) and ``dark`` (a stage or a dim
  room: a dark, tinted base with soft silhouettes and a few lamps, strong sensor noise and JPEG artefacts).

A detected box is a hit when it and the pasted face's square overlap by at least 60% of the smaller of the two, and
it is 0.3 to 2 times the square's side high. Not IoU: FER2013's crops hold their faces at many scales; YuNet's tall,
narrow box around a face filling half the crop has an IoU of 0.2-0.4 with it (IoU >= 0.4 failed 3.7% of clearly right
boxes on PrivateTest faces on a plain frame), and around a tightly cropped face it reaches well past the crop, where
the rest of the head would be. On face frames, boxes that hit nothing count as false faces too. Not every PrivateTest
image is a face a detector can find (a few are text, profiles, hands over faces): "findable" faces are those YuNet at
full resolution and score >= 0.3 finds when the face alone fills 40% of a plain gray frame; "of findable" rates count
only those.

The settings compared, every frame a full scan (``full_every=1``: the frames are unrelated): Haar as in
src/mimic/conf/detector/haar.yaml; YuNet as it was before second looks (``second_look=null``) at each ``max_width``
and score threshold (it runs once per ``max_width`` at the lowest threshold and each higher threshold is read off
its scores: NMS keeps a box by its higher-scoring neighbours only, so that equals a run at that threshold); YuNet
with second looks at ``max_width=320``; and YuNet as in src/mimic/conf/detector/yunet.yaml (the default).

Video (``clips``): the first ``clips`` faces each in a `clip` of `CLIP_FRAMES` frames (moving, growing or
shrinking), a fresh detector per clip: the old default, the default as the live loop runs it (a full scan every
``full_every`` frames, the faces looked at again in between) and the default scanning every frame.

With ``ckpt=``: the full path (detect, `mimic.preprocessing.crop_face`, classify with
`mimic.models.predictor.Predictor`) on the face frames, for Haar and YuNet as in src/mimic/conf/detector/yunet.yaml,
against the same faces' 48x48 crops given directly (``split=val``: PublicTest's faces in place of PrivateTest's, to
choose a recipe by) (`Predictor.predict_crops`); a missed face counts as wrong. The
``square`` rows give the pasted face's own square cut from the frame (no detector, no framing; tilted faces stay
tilted): the part of the gap that enlarging, pasting, noise and resizing back cost before any detector is involved.
The ``scaled`` rows (eye framing) frame YuNet's found faces with their landmarks' centre and tilt but the pasted
square's side (`at_side`): what the framing would give if it knew each FER2013 crop's own scale.
``spec.<field>=<value>`` replaces a field of the checkpoint's preprocess spec for the full path (compare framings).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from mimic.args import Key, parse
from mimic.cli import user_errors
from mimic.data.fer2013 import FER2013Source
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import Detection, FaceDetector

REPO = Path(__file__).resolve().parents[2]
W, H = 640, 480
BLUR = 0.25  # background blur sigma as a fraction of the tile's side
THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
MAX_WIDTHS = (320, None)
PLAIN = {"second_look": None, "full_every": 1}  # YuNet as it was: one scan, no second looks
DEFAULT = "yunet (conf/detector/yunet.yaml)"
LOOKING = {"yunet max_width=320, second looks": {"max_width": 320, "full_every": 1}, DEFAULT: {"full_every": 1}}
KINDS = {"upright": 1, "tilted": 2, "webcam": 3, "textured": 4, "dark": 5, "video": 6}  # seeds kinds apart
CLIP_FRAMES = 30
REACH_BINS = ((0.0, 0.9), (0.9, 1.1), (1.1, 1.3), (1.3, 9.9))


def background(tiles: np.ndarray, rng: np.random.Generator, blur: float = BLUR) -> np.ndarray:
    """A gray H x W tiling of random 48x48 ``tiles`` enlarged to one random side (64-160 px), blurred."""
    side = int(rng.integers(64, 161))
    rows, cols = H // side + 2, W // side + 2
    grid = tiles[rng.integers(0, len(tiles), rows * cols)].reshape(rows, cols, 48, 48)
    grid = grid.transpose(0, 2, 1, 3).reshape(rows * 48, cols * 48).astype(np.float32)
    grid = cv2.GaussianBlur(grid, (0, 0), blur * 48)  # at tile scale: cheap, and the same as blurring after enlarging
    big = cv2.resize(grid, (cols * side, rows * side), interpolation=cv2.INTER_LINEAR)
    x0, y0 = (int(v) for v in rng.integers(0, side, 2))
    gain, offset = rng.uniform(0.6, 1.2), rng.uniform(-30, 30)
    return np.clip(big[y0 : y0 + H, x0 : x0 + W] * gain + offset, 0, 255).astype(np.uint8)


def hit(box: tuple, truth: tuple) -> bool:
    """``box`` and the pasted face's square ``truth`` overlap by at least 60% of the smaller one, and ``box`` is 0.3
    to 2 times the square's side high."""
    x0, y0 = max(box[0], truth[0]), max(box[1], truth[1])
    x1, y1 = min(box[0] + box[2], truth[0] + truth[2]), min(box[1] + box[3], truth[1] + truth[3])
    overlap = max(0, x1 - x0) * max(0, y1 - y0) / max(1, min(box[2] * box[3], truth[2] * truth[3]))
    return overlap >= 0.6 and 0.3 <= box[3] / truth[3] <= 2


def findable(faces: np.ndarray) -> np.ndarray:
    """Which faces YuNet (full resolution, score >= 0.3) finds when one fills 40% of a plain gray 640x480 frame."""
    detector, s = load_detector("yunet", **PLAIN, max_width=None, score_threshold=0.3), int(0.4 * H)
    x0, y0 = (W - s) // 2, (H - s) // 2
    out = []
    for face in faces:
        frame = np.full((H, W), 128, np.uint8)
        frame[y0 : y0 + s, x0 : x0 + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_CUBIC)
        out.append(any(hit(d.box, (x0, y0, s, s)) for d in detector.detect(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))))
    return np.asarray(out)


def _finish(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild sensor noise, then BGR."""
    noisy = gray.astype(np.float32) + rng.normal(0, rng.uniform(1, 4), gray.shape).astype(np.float32)
    return cv2.cvtColor(np.clip(noisy, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def face_frame(
    face: np.ndarray,
    tiles: np.ndarray,
    rng: np.random.Generator,
    height: tuple[float, float] = (0.15, 0.6),
    tilt: float = 0.0,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A BGR frame with the 48x48 ``face`` enlarged to ``height`` (fractions of the frame's), turned by up to ``tilt``
    degrees, pasted at a random place on a `background`; and the pasted face's square (x, y, w, h) before turning."""
    frame = background(tiles, rng).astype(np.float32)
    s = int(round(rng.uniform(*height) * H))
    angle = float(rng.uniform(-tilt, tilt)) if tilt else 0.0
    patch, mask = _turned(face, s, angle)
    side = len(patch)
    x0, y0 = int(rng.integers(0, W - side + 1)), int(rng.integers(0, H - side + 1))
    box = _paste(frame, patch, mask, x0, y0, s)
    return _finish(frame, rng), box


def clip(
    face: np.ndarray, tiles: np.ndarray, rng: np.random.Generator, frames: int = CLIP_FRAMES
) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """A video clip: the 48x48 ``face`` at 15-60% of the height on one `background`, moving in a straight line (up
    to a quarter of the frame's width over the clip) and growing or shrinking by up to 15%; each frame (BGR) with
    its own noise, and the face's square."""
    back = background(tiles, rng).astype(np.float32)
    s0 = rng.uniform(0.15, 0.6) * H
    s1 = float(np.clip(s0 * rng.uniform(0.85, 1.15), 0.15 * H, 0.6 * H))
    ends = [(rng.uniform(0, W - s), rng.uniform(0, H - s)) for s in (s0, s1)]
    ends[1] = tuple(min(max(e1, e0 - W / 8), e0 + W / 8) for e0, e1 in zip(*ends))  # noqa: B905
    out = []
    for t in np.linspace(0, 1, frames):
        s = int(round(s0 + t * (s1 - s0)))
        x, y = (int(round(min(e0 + t * (e1 - e0), lim - s))) for e0, e1, lim in zip(*ends, (W, H)))  # noqa: B905
        frame = back.copy()
        box = _paste(frame, *_turned(face, s, 0.0), x, y, s)
        out.append((_finish(frame, rng), box))
    return out


def _turned(face: np.ndarray, s: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``face`` enlarged to ``s`` pixels and turned by ``angle`` degrees, in its bounding square, with the mask that
    pastes it (a soft edge of s/40 pixels)."""
    patch = cv2.resize(face, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    edge = np.minimum(np.arange(s), np.arange(s)[::-1]) + 0.5
    ramp = np.clip(edge / max(1.0, s / 40), 0, 1)
    mask = np.outer(ramp, ramp).astype(np.float32)
    a = math.radians(angle)
    side = min(int(math.ceil(s * (abs(math.cos(a)) + abs(math.sin(a))))), H)  # the turned square's bounding box
    turn = cv2.getRotationMatrix2D((s / 2, s / 2), angle, 1.0)
    turn[:, 2] += (side - s) / 2
    patch = cv2.warpAffine(patch, turn, (side, side), flags=cv2.INTER_LINEAR)
    return patch, cv2.warpAffine(mask, turn, (side, side), flags=cv2.INTER_LINEAR)


def _paste(
    frame: np.ndarray, patch: np.ndarray, mask: np.ndarray, x0: int, y0: int, s: int
) -> tuple[int, int, int, int]:
    """Blend a `_turned` face of side ``s`` into the float ``frame`` at (x0, y0); the face's square before turning."""
    side = len(patch)
    region = frame[y0 : y0 + side, x0 : x0 + side]
    region += mask * (patch - region)
    off = (side - s) / 2
    return int(round(x0 + off)), int(round(y0 + off)), s, s


def dark_frame(rng: np.random.Generator) -> np.ndarray:
    """A face-free BGR frame like a stage or a dim room: a dark tinted base, soft silhouettes, a few lamps, strong
    noise and JPEG artefacts."""
    low = np.full((60, 80), rng.uniform(4, 35), np.float32)
    low += cv2.resize(rng.normal(0, rng.uniform(2, 10), (4, 5)).astype(np.float32), (80, 60))
    for _ in range(int(rng.integers(0, 14))):  # heads and shoulders against a slightly lit back, or the reverse
        cx, cy = int(rng.integers(0, 80)), int(rng.integers(20, 70))
        axes = (int(rng.integers(2, 10)), int(rng.integers(3, 12)))
        cv2.ellipse(low, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0, 45)), -1)
    for _ in range(int(rng.integers(0, 4))):  # lamps
        cv2.circle(low, (int(rng.integers(0, 80)), int(rng.integers(0, 30))), int(rng.integers(1, 4)), 255.0, -1)
    low = cv2.GaussianBlur(low, (0, 0), rng.uniform(0.8, 2.5))
    img = cv2.resize(low, (W, H), interpolation=cv2.INTER_LINEAR)[:, :, None] * rng.uniform(0.6, 1.3, 3)
    img = img + rng.normal(0, rng.uniform(3, 16), (H, W, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 81))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


SPLIT_NAMES = {"test": "PrivateTest", "val": "PublicTest"}
KEYS = {
    "data": Key(str, str(REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"), "FER2013"),
    "faces": Key(int, 1000, "PrivateTest (split=val: PublicTest) faces pasted, upright and tilted"),
    "empty": Key(int, 1500, "face-free frames of each kind"),
    "webcam": Key(int, 300, "faces pasted at webcam size"),
    "clips": Key(int, 30, "video clips"),
    "seed": Key(int, 0, "seed of the faces, frames and clips"),
    "split": Key(str, "test", "the faces pasted: test (PrivateTest) or val (PublicTest, to choose by)"),
    "ckpt": Key(str, None, "also measure the full path's accuracy with this model (a .ckpt, an .onnx, or bundled)"),
}


class Tally:
    """One detector setting's counts: faces found per frame kind, false boxes per kind, detect times."""

    def __init__(self) -> None:
        self.found: dict[str, list[bool]] = {}
        self.false: dict[str, int] = {}
        self.frames: dict[str, int] = {}
        self.seconds: list[float] = []

    def add(self, kind: str, found: list[Detection], truth: tuple | None) -> Detection | None:
        """Count one frame; the detection that hits ``truth`` best (None: missed, or no face in the frame)."""
        best = next((d for d in found if truth and hit(d.box, truth)), None)
        if truth:
            self.found.setdefault(kind, []).append(best is not None)
        self.false[kind] = self.false.get(kind, 0) + len(found) - (best is not None)
        self.frames[kind] = self.frames.get(kind, 0) + 1
        return best

    def rate(self, kind: str, among: np.ndarray | None = None) -> float:
        """Percent of ``kind``'s faces found (``among``: only those it marks); nan when none were run."""
        found = np.asarray(self.found.get(kind, []), dtype=bool)
        if not found.size:
            return float("nan")
        return 100 * float(found[among[: len(found)]].mean() if among is not None else found.mean())

    def per_1000(self, kind: str) -> float:
        """False faces per 1,000 frames of ``kind``; nan when none were run (``empty=0``)."""
        frames = self.frames.get(kind, 0)
        return 1000 * self.false.get(kind, 0) / frames if frames else float("nan")


def video(faces: np.ndarray, tiles: np.ndarray, seed: int, clips: int) -> None:
    """The detectors as the live loop runs them, on `clip`s of the first ``clips`` faces: found %, false faces per
    1,000 frames and time per frame (the default's full scans come every ``full_every`` frames)."""
    settings = {
        "yunet max_width=320 score>=0.6 (the old default)": {**PLAIN, "max_width": 320, "score_threshold": 0.6},
        DEFAULT: {},
        f"{DEFAULT} full_every=1": {"full_every": 1},
    }
    movies = [clip(faces[i], tiles, np.random.default_rng([seed, KINDS["video"], i])) for i in range(clips)]
    print(
        f"\nvideo: {clips} clips of {CLIP_FRAMES} frames, a face moving and growing or shrinking; a detector per clip"
    )
    print(f"{'setting':<50}{'found, %':>9}{'false/1000':>11}{'ms/frame: mean':>16}{'median':>8}{'90th %':>8}")
    for name, overrides in settings.items():
        tally = Tally()
        for frames in movies:
            detector = load_detector("yunet", **overrides)
            for frame, box in frames:
                t = time.perf_counter()
                found = detector.detect(frame)
                tally.seconds.append(time.perf_counter() - t)
                tally.add("video", found, box)
        ms = 1000 * np.asarray(tally.seconds)
        times = f"{ms.mean():>16.1f}{np.median(ms):>8.1f}{np.percentile(ms, 90):>8.1f}"
        print(f"{name:<50}{tally.rate('video'):>9.1f}{tally.per_1000('video'):>11.1f}{times}")


def at_side(matrix: np.ndarray, side: float, spec) -> np.ndarray:
    """An "eyes" framing ``matrix`` (frame -> crop pixels) scaled about the point the eyes land on, so that its crop
    covers ``side`` frame pixels a side: the landmarks' centre and tilt with another scale."""
    f = spec.size / side / math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    eyes = np.array([spec.eye_x, spec.eye_y]) * spec.size - 0.5
    return np.hstack([f * matrix[:, :2], (f * matrix[:, 2] + (1 - f) * eyes)[:, None]])


def print_reach(reach: dict[str, list[float]], correct: dict, direct: np.ndarray) -> None:
    """The default's full path on the faces it found, by the side of its crop over the pasted square's: above 1 the
    crop reaches past the pasted face into the background, below 1 it leaves part of the pasted crop out. FER2013's
    crops hold their faces at many scales and the framing puts every face at their average scale."""
    print("\nyunet's found faces by crop side / pasted square side (the framing's reach past the pasted face)")
    print(f"{'frames':<9}{'reach':<11}{'faces':>7}{'direct %':>10}{'full path %':>12}{'difference':>11}")
    for kind, ratios in reach.items():
        ratios, ok = np.asarray(ratios), np.asarray(correct[("yunet", kind)])
        for lo, hi in REACH_BINS:
            inside = (ratios >= lo) & (ratios < hi)
            if inside.any():
                base, full = 100 * direct[: len(ok)][inside].mean(), 100 * ok[inside].mean()
                print(f"{kind:<9}{f'{lo:.1f}-{hi:.1f}':<11}{int(inside.sum()):>7}{base:>10.1f}{full:>12.1f}"
                      f"{full - base:>+11.1f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__, extra="spec.", extra_help="spec.<field>=<value>")
        spec_overrides = {k.removeprefix("spec."): yaml.safe_load(v) for k, v in (w.split("=", 1) for w in args.extra)}
        if args.split not in SPLIT_NAMES:
            raise UserError(f"split={args.split}: choose test (PrivateTest) or val (PublicTest)")
        splits = FER2013Source(args.data).load()
    test, tiles = splits[args.split], np.asarray(splits["train"].images)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(test.labels), size=min(args.faces, len(test.labels)), replace=False)
    faces, labels = np.asarray(test.images)[pick], test.labels[pick]
    n_webcam = min(args.webcam, len(faces))
    start = time.monotonic()
    can_find = findable(faces)

    haar = load_detector("haar", full_every=1)
    plain = {mw: load_detector("yunet", **PLAIN, max_width=mw, score_threshold=min(THRESHOLDS)) for mw in MAX_WIDTHS}
    looking = {name: load_detector("yunet", **settings) for name, settings in LOOKING.items()}
    tallies = {"haar": Tally(), **{(mw, t): Tally() for mw in MAX_WIDTHS for t in THRESHOLDS}}
    tallies.update({name: Tally() for name in LOOKING})

    predictor, spec, model_file, correct, reach = None, None, None, {}, {}
    if args.ckpt:  # torch is imported only then: the detectors are timed without it
        from mimic.models.bundled import resolve_ckpt
        from mimic.models.predictor import Predictor
        from mimic.preprocessing import crop_face, framing_matrix, warp

        with user_errors():
            model_file = resolve_ckpt(args.ckpt)
            predictor = Predictor(model_file, threads=1)
            spec = dataclasses.replace(predictor.spec, **spec_overrides)

    def timed(detector: FaceDetector, frame: np.ndarray, tally: Tally) -> list[Detection]:
        t = time.perf_counter()
        found = detector.detect(frame)
        tally.seconds.append(time.perf_counter() - t)
        return found

    def run(kind: str, frame: np.ndarray, truth: tuple | None = None, label: int = -1) -> None:
        hits = {"haar": tallies["haar"].add(kind, timed(haar, frame, tallies["haar"]), truth)}
        for mw, detector in plain.items():
            found = timed(detector, frame, tallies[(mw, min(THRESHOLDS))])
            for th in THRESHOLDS:
                hits[(mw, th)] = tallies[(mw, th)].add(kind, [d for d in found if d.score >= th], truth)
        for name, detector in looking.items():
            hits[name] = tallies[name].add(kind, timed(detector, frame, tallies[name]), truth)
        if predictor is not None and truth:
            for name, key in (("haar", "haar"), ("yunet", DEFAULT)):
                d = hits[key]
                ok = d is not None and int(np.argmax(predictor.predict_crops([crop_face(frame, d, spec)]))) == label
                correct.setdefault((name, kind), []).append(ok)
            if spec.framing == "eyes":  # how far the default's crop reaches past the pasted square (nan: missed)
                d, side, ok = hits[DEFAULT], math.nan, False
                if d is not None:
                    matrix = framing_matrix(d, spec, spec.size)
                    side = spec.size / math.sqrt(abs(np.linalg.det(matrix[:, :2])))
                    crop = warp(frame, at_side(matrix, truth[2], spec), spec.size)
                    ok = int(np.argmax(predictor.predict_crops([crop]))) == label
                reach.setdefault(kind, []).append(side / truth[2])
                correct.setdefault(("scaled", kind), []).append(ok)
            x, y, s, _ = truth  # the pasted square itself, cut from the frame: no detector, no framing
            square = frame[max(0, y) : y + s, max(0, x) : x + s]
            correct.setdefault(("square", kind), []).append(int(np.argmax(predictor.predict_crops([square]))) == label)

    for kind, height, tilt, n in [
        ("upright", (0.15, 0.6), 0.0, len(faces)),
        ("tilted", (0.15, 0.6), 20.0, len(faces)),
        ("webcam", (0.3, 0.8), 0.0, n_webcam),
    ]:
        for i in range(n):
            frame, box = face_frame(faces[i], tiles, np.random.default_rng([args.seed, KINDS[kind], i]), height, tilt)
            run(kind, frame, box, int(labels[i]))
    for kind in ("textured", "dark"):
        for i in range(args.empty):
            r = np.random.default_rng([args.seed, KINDS[kind], i])
            run(kind, _finish(background(tiles, r), r) if kind == "textured" else dark_frame(r))

    print(
        f"\n{len(faces)} {SPLIT_NAMES[args.split]} faces (seed {args.seed}, {100 * can_find.mean():.1f}% findable) "
        f"pasted upright and tilted up to ±20° at 15-60% of the frame's height, the first {n_webcam} also at 30-80% "
        f"(webcam); "
        f"{args.empty} face-free frames of each kind; 640x480; every frame a full scan; OpenCV threads "
        f"{cv2.getNumThreads()}; {time.monotonic() - start:.0f} s"
    )
    print(f"{'':<40}{'faces found, %':^27}{'of findable, %':^27}{'false faces per 1000 frames':^33}")
    cols = ("upright", "tilted", "webcam") * 2 + ("textured", "dark", "face fr.", "ms/frame")
    print(f"{'setting':<40}" + "".join(f"{c:>9}" for c in cols[:6]) + "".join(f"{c:>11}" for c in cols[6:]))
    for key, tally in tallies.items():
        if isinstance(key, tuple):
            name, timed_by = f"yunet max_width={key[0]} score>={key[1]}", tallies[(key[0], min(THRESHOLDS))]
        else:
            name, timed_by = ("haar (conf/detector/haar.yaml)" if key == "haar" else key), tally
        kinds = ("upright", "tilted", "webcam")
        rates = [tally.rate(k) for k in kinds] + [tally.rate(k, can_find) for k in kinds]
        on_faces = 1000 * sum(tally.false.get(k, 0) for k in kinds) / sum(tally.frames.get(k, 0) for k in kinds)
        false = [
            tally.per_1000("textured"),
            tally.per_1000("dark"),
            on_faces,
            1000 * float(np.median(timed_by.seconds)),
        ]
        print(f"{name:<40}" + "".join(f"{v:>9.1f}" for v in rates) + "".join(f"{v:>11.1f}" for v in false))
    if args.clips:
        video(faces, tiles, args.seed, args.clips)
    if predictor is not None:
        direct = predictor.predict_crops(list(faces)).argmax(1) == labels
        print(f"\naccuracy of {model_file}\nfull path: detect, crop_face with {spec}, classify; a missed face is wrong")
        print(
            f"{'detector':<10}{'frames':<9}{'direct %':>9}{'full path %':>12}{'difference':>11}{'on found faces %':>17}"
        )
        for (name, kind), ok in correct.items():
            ok = np.asarray(ok)
            tally = {"haar": tallies["haar"], "yunet": tallies[DEFAULT], "scaled": tallies[DEFAULT]}.get(name)
            found = np.asarray(tally.found[kind]) if tally else np.ones(len(ok), bool)
            base = 100 * direct[: len(ok)].mean()
            on_found = 100 * ok[found].mean() if found.any() else float("nan")
            print(
                f"{name:<10}{kind:<9}{base:>9.1f}{100 * ok.mean():>12.1f}{100 * ok.mean() - base:>+11.1f}"
                f"{on_found:>17.1f}"
            )
        if reach:
            print_reach(reach, correct, direct)


if __name__ == "__main__":
    main()
