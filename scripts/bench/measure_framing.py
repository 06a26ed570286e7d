"""Measure where FER2013's faces sit in their 48x48 crops: the figures behind `mimic.preprocessing`'s eye framing.

    python scripts/bench/measure_framing.py [csv=../shared/data/fer2013/fer2013.csv.gz] [sample=10000] [seed=0]
                                            [min_score=0.8]

Each Training face is enlarged (48 -> 96 px, cubic) and padded (32 px of replicated border on every side: 160x160) so
the detectors see a whole head. YuNet (the bundled ONNX file, full resolution) must find exactly one face with score
>= ``min_score``; its landmarks, mapped back to 48x48 crop coordinates, give the eye midpoint, the eye distance, the
eye-line angle and the mouth centre (midpoint of the mouth corners). On the same faces, Haar (the project's
``detector=haar`` config, full resolution) must find exactly one face; its box, in crop coordinates, gives the crop's
side and centre relative to the box (scale = 48 / box width, offset = (crop centre - box centre) / box width).
Prints mean, standard deviation and median of each; the means are `mimic.preprocessing`'s eye and Haar defaults.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from mimic.args import Key, parse
from mimic.cli import user_errors
from mimic.data.fer2013_files import read_csv
from mimic.detectors import load_detector
from mimic.haar import HaarDetector
from mimic.yunet import YuNetDetector

ENLARGE, PAD = 2, 32
KEYS = {
    "csv": Key(str, "../shared/data/fer2013/fer2013.csv.gz", "FER2013 (fer2013.csv, .gz, .tar)"),
    "sample": Key(int, 10000, "a seeded sample of Training faces; 0: all"),
    "seed": Key(int, 0, "the sample's seed"),
    "min_score": Key(float, 0.8, "the YuNet score a face needs to be measured"),
}


def enlarged(face: np.ndarray) -> np.ndarray:
    big = cv2.resize(face, None, fx=ENLARGE, fy=ENLARGE, interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2BGR)


def to_crop(xy: np.ndarray, pixel: bool = True) -> np.ndarray:
    """Enlarged-image coordinates -> 48x48 crop coordinates in which the crop spans [0, 48] (pixel centres at 0.5,
    1.5, ...). ``pixel``: the input is a pixel index (landmarks); else an edge coordinate (box corners)."""
    return (np.asarray(xy, float) + (0.5 if pixel else 0.0) - PAD) / ENLARGE


def measure(faces: np.ndarray, yunet: YuNetDetector, haar: HaarDetector, min_score: float) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {
        k: [] for k in ("eye_x", "eye_y", "eye_distance", "angle", "mouth_y", "right_eye", "left_eye")
    }
    haar_rows: list[tuple[float, float, float]] = []
    for face in faces:
        img = enlarged(face)
        found = yunet.detect(img)
        if len(found) != 1 or found[0].score < min_score:
            continue
        p = to_crop(found[0].landmarks)
        right, left, mouth = p[0], p[1], (p[3] + p[4]) / 2  # right eye: the person's, on the image's left
        mid, d = (right + left) / 2, left - right
        rows["eye_x"].append(mid[0] / 48)
        rows["eye_y"].append(mid[1] / 48)
        rows["eye_distance"].append(np.hypot(*d) / 48)
        rows["angle"].append(np.degrees(np.arctan2(d[1], d[0])))
        rows["mouth_y"].append(mouth[1] / 48)
        rows["right_eye"].append(right)
        rows["left_eye"].append(left)
        boxes = haar.detect(img)
        if len(boxes) == 1:
            x, y, w, h = to_crop(boxes[0].box[:2], pixel=False).tolist() + [v / ENLARGE for v in boxes[0].box[2:]]
            haar_rows.append((48 / w, (24 - (x + w / 2)) / w, (24 - (y + h / 2)) / w))
    out = {k: np.asarray(v) for k, v in rows.items()}
    h = np.asarray(haar_rows).reshape(-1, 3)
    out.update(box_scale=h[:, 0], box_x=h[:, 1], box_y=h[:, 2])
    return out


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        faces = read_csv(args.csv)["train_images"]
        yunet = YuNetDetector(max_width=None, score_threshold=0.5, second_look=None)
        haar = load_detector("haar", max_width=None, full_every=1)
    if args.sample and args.sample < len(faces):
        faces = faces[np.sort(np.random.default_rng(args.seed).choice(len(faces), args.sample, replace=False))]
    t0 = time.perf_counter()
    m = measure(faces, yunet, haar, args.min_score)
    n_yunet, n_haar = len(m["eye_x"]), len(m["box_scale"])
    print(f"{len(faces)} FER2013 Training faces (seed {args.seed}), enlarged x{ENLARGE} and padded {PAD} px per side")
    print(f"YuNet: exactly one face with score >= {args.min_score} in {n_yunet} ({n_yunet / len(faces):.1%})")
    print(f"Haar: exactly one face in {n_haar} of those ({n_haar / max(1, n_yunet):.1%})")
    print(f"measured in {time.perf_counter() - t0:.0f} s")
    print(f"{'figure':<14}{'mean':>9}{'std':>9}{'median':>9}   (fractions of the crop's side; angle in degrees)")
    for k in ("eye_x", "eye_y", "eye_distance", "angle", "mouth_y", "box_scale", "box_x", "box_y"):
        v = m[k]
        print(f"{k:<14}{v.mean():9.4f}{v.std():9.4f}{np.median(v):9.4f}")
    for k in ("right_eye", "left_eye"):
        print(f"{k:<14}mean (x, y) = ({m[k][:, 0].mean():.2f}, {m[k][:, 1].mean():.2f}) px of 48")


if __name__ == "__main__":
    main()
