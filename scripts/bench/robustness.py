"""How a model carries over to the faces a real camera sees (issue 25): FER2013's PrivateTest as given, dimmed as a dim
room dims it, shrunk as a face across a room, and CK+48 (posed faces of another source); then the full path's gap and
the classify cost from the two benchmarks that measure them. Every figure is seeded.

    python scripts/bench/robustness.py [ckpt=<file.ckpt|file.onnx>] [data.path=../shared/data/fer2013/fer2013.csv.gz]
                                       [ckplus=../shared/data/ckplus48] [seed=0] [faces=0] [full_path=1000]
                                       [cost=true] [split=test] [ferplus=../shared/data/ferplus/fer2013new.csv]
                                       [against=<file.ckpt|file.onnx|bundled>]

No ``ckpt``: the bundled model. Rows, each through the model's own inference (`mimic.models.predictor.open_model`:
its flip TTA and temperature, one thread):

- ``as given``: PrivateTest's 48x48 crops (``faces``: a seeded sample of that many; 0: all 3,589). ``split=val``:
  PublicTest's instead (here and in the full path), for choosing between models (recipes, levers, epochs); CK+48 and
  the cost are then left out, so that nothing is chosen by CK+48.
- ``FER+ majority``: the same faces scored against FER+'s crowd labels (plurality of ten votes; the faces whose
  plurality is contempt, unknown, not a face or a tie left out), so a change of training labels shows; skipped when
  ``ferplus`` is not there.
- ``dim x0.3, noise 3``: each pixel x 0.3 plus Gaussian noise of sigma 3, clipped and rounded to uint8 (mean grey ~39
  instead of ~129); ``dim x0.2 + 5, noise 4`` likewise.
- ``shrunk to 20 px``: down to 20x20 (area) and back up (linear): a face across a room.
- ``CK+48``: the 927 faces of the six FER2013 classes it has (contempt left out), accuracy, balanced accuracy and each
  class's recall. A measuring set only: never train on it or choose by it. Under it, each figure's 95% interval over
  resamples of its 309 sequences (a subject's one posed expression, three frames): how finely CK+48 tells models apart.
  ``against=<file>``: also the model's CK+48 figures minus that model's, each class's recall too, with 95% intervals
  over the same resamples (a paired comparison: about ±3 points on balanced accuracy where each model's own is ±5).
- ``full path``: `benchmark_faces.py` on ``full_path`` PrivateTest (or PublicTest) faces pasted into frames (its
  "difference" rows: detect, frame, classify against the same faces' direct crops); 0 skips it. A checkpoint or an
  ONNX file.
- ``cost``: `benchmark_classify.py`'s ms per face, float and int8 on onnxruntime (a checkpoint only: it exports it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from mimic.args import Key, boolean, parse
from mimic.cli import user_errors
from mimic.data.fer2013 import FER2013Source
from mimic.errors import UserError
from mimic.labels import FERPLUS_CLASSES, remap
from mimic.models.bundled import resolve_ckpt
from mimic.models.classifier import class_scores
from mimic.models.onnx_model import is_onnx
from mimic.models.predictor import open_model

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
KEYS = {
    "ckpt": Key(str, None, "the model file (default: the bundled model)"),
    "data.path": Key(Path, DATA / "fer2013" / "fer2013.csv.gz", "FER2013 (.csv, .csv.gz, .tar.gz or its folder)"),
    "ckplus": Key(Path, DATA / "ckplus48", "CK+48's class folders (anger, disgust, ...)"),
    "seed": Key(int, 0, "the seed of the noise and of any sample"),
    "faces": Key(int, 0, "PrivateTest faces (a seeded sample); 0: all"),
    "full_path": Key(int, 1000, "PrivateTest faces benchmark_faces.py pastes for the full path; 0: none"),
    "cost": Key(boolean, True, "run benchmark_classify.py for the classify cost (a checkpoint only)"),
    "split": Key(str, "test", "test (PrivateTest: the outcome) or val (PublicTest: to choose by)"),
    "ferplus": Key(Path, DATA / "ferplus" / "fer2013new.csv", "FER+'s fer2013new.csv, for the FER+ majority row"),
    "against": Key(str, None, "a second model file (or bundled): CK+48's figures also as differences from it"),
}
SPLITS = {"test": "PrivateTest", "val": "PublicTest"}
DIMMED = {"dim x0.3, noise 3": (0.3, 0.0, 3.0), "dim x0.2 + 5, noise 4": (0.2, 5.0, 4.0)}
SHRUNK = 20
CKPLUS = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "sadness": "sad",
          "surprise": "surprise"}  # fmt: skip


def dimmed(faces: np.ndarray, gain: float, offset: float, sigma: float, seed: int) -> np.ndarray:
    """``faces`` (uint8) x ``gain`` + ``offset`` plus Gaussian noise of ``sigma``, clipped and rounded to uint8."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, faces.shape)
    return np.clip(np.rint(faces.astype(np.float64) * gain + offset + noise), 0, 255).astype(np.uint8)


def shrunk(faces: np.ndarray, side: int) -> np.ndarray:
    """Each face down to ``side`` pixels (area) and back to its size (linear)."""
    h, w = faces.shape[1:3]
    small = [cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in faces]
    return np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_LINEAR) for s in small])


def predicted(model, faces: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict_crops(list(faces[i : i + 256])).argmax(1) for i in range(0, len(faces), 256)])


def ckplus(folder: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """CK+48's faces of the classes both it and the model have, their labels (the model's indices), those classes and
    each face's sequence (``S010_004`` of ``S010_004_00000017.png``: one subject's one posed expression)."""
    if not folder.is_dir():
        raise UserError(f"ckplus={folder}: no such folder (CK+48's class folders: anger, disgust, ...)")
    faces, labels, classes, sequences = [], [], [], []
    for theirs, ours in CKPLUS.items():
        files = sorted((folder / theirs).glob("*.png"))
        if ours not in class_names or not files:
            continue
        classes.append(ours)
        for file in files:
            face = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
            if face is None:
                raise UserError(f"{file}: not an image OpenCV can read")
            faces.append(face)
            labels.append(class_names.index(ours))
            sequences.append("_".join(file.stem.split("_")[:2]))
    return np.stack(faces), np.asarray(labels), classes, np.asarray(sequences)


def sequence_interval(
    labels: np.ndarray, guess: np.ndarray, sequences: np.ndarray, seed: int, base: np.ndarray | None = None
) -> np.ndarray:
    """95% intervals, in %, of accuracy, balanced accuracy and each present class's recall (rows, in the order of
    ``np.unique(labels)``; columns low, high) over 2,000 resamples of whole sequences, each class's drawn with
    replacement: a sequence's frames are one posed expression, not independent faces. With ``base`` (another model's
    guesses at the same faces), the intervals of ``guess``'s figures minus ``base``'s over the same resamples."""
    rng = np.random.default_rng(seed)
    right = [guess == labels] + ([base == labels] if base is not None else [])
    by_class = [[np.flatnonzero(sequences == q) for q in np.unique(sequences[labels == c])] for c in np.unique(labels)]
    scores = np.zeros((2000, len(right), 2 + len(by_class)))
    for n in range(len(scores)):
        drawn = [np.concatenate([seqs[i] for i in rng.integers(len(seqs), size=len(seqs))]) for seqs in by_class]
        for m, r in enumerate(right):
            recalls = [r[d].mean() for d in drawn]
            scores[n, m] = [r[np.concatenate(drawn)].mean(), np.mean(recalls), *recalls]
    figures = scores[:, 0] - scores[:, 1] if base is not None else scores[:, 0]
    return 100 * np.percentile(figures, [2.5, 97.5], axis=0).T


def against(ckpt: str, class_names: list[str]):
    """The model ``against=`` names, of the same ``class_names`` as the model measured, or a one-line error that
    names the setting."""
    try:
        other = open_model(resolve_ckpt(ckpt), threads=1)
    except UserError as e:
        raise UserError(f"against={ckpt}: {e}") from None
    if list(other.class_names) != class_names:
        raise UserError(
            f"against={ckpt}: its classes {list(other.class_names)} are not the model's {class_names}; compare "
            "models of the same classes"
        )
    return other


def versus(labels: np.ndarray, guess: np.ndarray, base: np.ndarray, sequences: np.ndarray, names: list[str], args):
    """CK+48's figures of the model minus those of ``against=``, each with its 95% interval over the same resamples."""
    (acc, balanced, recalls), (acc0, balanced0, recalls0) = figures(labels, guess, names), figures(labels, base, names)
    differences = [acc - acc0, balanced - balanced0, *(recalls[c] - recalls0[c] for c in recalls)]
    low_high = sequence_interval(labels, guess, sequences, args.seed, base=base)
    parts = [f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" for d, (lo, hi) in zip(differences, low_high, strict=True)]
    classes = ", ".join(f"{c[:3]} {p}" for c, p in zip(recalls, parts[2:], strict=True))
    print(f"  minus against={args.against}, same resamples: accuracy {parts[0]}, balanced {parts[1]}; {classes}")


def majority(args, class_names) -> tuple[np.ndarray, np.ndarray]:
    """The split's faces that FER+'s plurality gives one of the model's classes, and those labels (its indices)."""
    data = FER2013Source(args.data_path, labels="ferplus", ferplus_path=args.ferplus).load()[args.split]
    labels = remap(data.labels, FERPLUS_CLASSES, class_names)
    keep = labels >= 0
    return np.asarray(data.images)[keep], labels[keep]


def figures(labels: np.ndarray, guess: np.ndarray, names: list[str]) -> tuple[float, float, dict[str, float]]:
    """Accuracy, balanced accuracy and each present class's recall, in %, as evaluate.py computes them."""
    k = len(names)
    confusion = torch.from_numpy(np.bincount(labels * k + guess, minlength=k * k).reshape(k, k))
    scores = class_scores(confusion, names, "")  # evaluate.py's recall and balanced accuracy: absent classes left out
    recalls = {c: 100 * float(scores[f"recall_{c}"]) for c in names if f"recall_{c}" in scores}
    return 100 * float(np.mean(guess == labels)), 100 * float(scores["balanced_acc"]), recalls


def row(name: str, labels: np.ndarray, guess: np.ndarray, names: list[str], base: float | None = None) -> float:
    acc, balanced, recalls = figures(labels, guess, names)
    versus = f"{acc - base:+6.1f}" if base is not None else f"{'':>6}"
    per_class = " ".join(f"{k[:3]} {v:3.0f}" for k, v in recalls.items())
    print(f"{name:<24}{len(labels):>6}{acc:>8.1f}{versus}{balanced:>10.1f}   {per_class}")
    return acc


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        if args.split not in SPLITS:
            raise UserError(f"split={args.split}: choose test (PrivateTest) or val (PublicTest)")
        choosing = args.split == "val"
        path = resolve_ckpt(args.ckpt)
        model = open_model(path, threads=1)
        test = FER2013Source(args.data_path).load()[args.split]
        plus = majority(args, model.class_names) if args.ferplus.is_file() else None
        if not choosing:
            ck_faces, ck_labels, ck_classes, ck_sequences = ckplus(args.ckplus, list(model.class_names))
        other = None if choosing or args.against is None else against(args.against, list(model.class_names))
    names = list(model.class_names)
    faces, labels = np.asarray(test.images), np.asarray(test.labels)
    if args.faces:
        pick = np.sort(np.random.default_rng(args.seed).permutation(len(labels))[: args.faces])
        faces, labels = faces[pick], labels[pick]
    size = path.stat().st_size / 1e6
    print(f"{path} ({size:.2f} MB): {model.backend}, flip TTA {model.tta_flip}, seed {args.seed}")
    print(f"{'faces':<24}{'n':>6}{'acc %':>8}{'vs':>6}{'balanced':>10}   recall % per class")
    base = row(f"{SPLITS[args.split]} as given", labels, predicted(model, faces), names)
    if plus is not None:
        row("  FER+ majority labels", plus[1], predicted(model, plus[0]), names)
    for k, (name, (gain, offset, sigma)) in enumerate(DIMMED.items()):
        row(name, labels, predicted(model, dimmed(faces, gain, offset, sigma, args.seed + k)), names, base)
    row(f"shrunk to {SHRUNK} px", labels, predicted(model, shrunk(faces, SHRUNK)), names, base)
    if not choosing:
        guess = predicted(model, ck_faces)
        row(f"CK+48, {len(ck_classes)} classes", ck_labels, guess, names)
        acc, balanced = sequence_interval(ck_labels, guess, ck_sequences, args.seed)[:2]
        print(
            f"  95% interval over CK+48's {len(np.unique(ck_sequences))} sequences (2,000 resamples): accuracy "
            f"{acc[0]:.1f}-{acc[1]:.1f}%, balanced {balanced[0]:.1f}-{balanced[1]:.1f}%"
        )
        if other is not None:
            versus(ck_labels, guess, predicted(other, ck_faces), ck_sequences, names, args)
    sys.stdout.flush()
    bench = REPO / "scripts" / "bench"
    if args.full_path:
        print("\nfull path against direct crops (benchmark_faces.py; its 'difference' column):", flush=True)
        settings = [f"faces={args.full_path}", "empty=0", "webcam=0", "clips=0", f"seed={args.seed}"]
        settings.append(f"split={args.split}")
        subprocess.run([sys.executable, bench / "benchmark_faces.py", f"data={args.data_path}", f"ckpt={path}",
                        *settings], check=False)  # fmt: skip
    if args.cost and not is_onnx(path) and not choosing:
        print("\nclassify cost (benchmark_classify.py; ms per face):", flush=True)
        subprocess.run([sys.executable, bench / "benchmark_classify.py", f"ckpt={path}",
                        f"data.path={args.data_path}", "repeats=200"], check=False)  # fmt: skip


if __name__ == "__main__":
    main()
