"""The Extended Cohn-Kanade set: CK+ as its authors distribute it (`CKPlusSource`, ``data=ckplus``) and CK+48, its
48x48 crops in class folders (`CKPlus48Source`, ``data=ckplus48``).

CK+, under ``data.path``::

    cohn-kanade-images/S005/001/S005_001_00000001.png ...    each sequence from neutral to the expression's peak
    Emotion/S005/001/S005_001_00000011_emotion.txt           one number, e.g. "   3.0000000e+00", for the labelled
                                                             sequences only: 0 neutral, 1 anger, 2 contempt,
                                                             3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise
    Landmarks/S005/001/S005_001_00000011_landmarks.txt       68 "x y" lines per frame (optional)

The last ``peak_frames`` frames (3) of each labelled sequence get its label, and with ``first_frame_neutral`` its
first frame is a neutral face. A frame with its landmark file gets mimic's eye framing from them, one without it
the detector's face.

CK+48 (``ckplus48/anger/S010_004_00000017.png``; anger, contempt, disgust, fear, happy, sadness, surprise): faces
already cropped, taken whole; the subject is the file name's ``S010`` prefix.

Both are split subject-wise (`mimic.data.folds.fold_splits`): ``data.folds`` folds of subjects (10), ``data.fold``
the test fold, the next one validation, so the frames of one person, and so of one sequence, never sit on both sides.
CK+ is for measuring how a model carries over to posed faces of other people; evaluating a model trained elsewhere
on the whole set: ``scripts/evaluate.py data=ckplus48 split=all``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimic.data.base import DataError, SplitData, missing_dataset
from mimic.data.face_crops import FaceCrops, Item, five_of_68, numbers, read_items, to_splits
from mimic.data.folders import FolderSource
from mimic.data.folds import fold_splits
from mimic.faces import FaceDetector
from mimic.labels import CKPLUS_CLASSES
from mimic.preprocessing import PreprocessSpec

IMAGES, EMOTION, LANDMARKS = "cohn-kanade-images", "Emotion", "Landmarks"
SUBJECT = re.compile(r"^(S\d+)_")
HOW_TO_GET = (
    "CK+ is given by its authors on request, for non-commercial research, after signing their agreement: "
    "https://www.jeffcohn.net/Resources/ (CK+48, its 48x48 crops, is shared on Kaggle under the same terms)."
)


class CKPlusSource:
    """CK+ as a `Source` (see the module docstring). peak_frames: the labelled frames at the end of each sequence;
    first_frame_neutral: each labelled sequence's first frame as a neutral face; folds, fold, seed: the subject-wise
    folds; preprocess: the model's spec; detector: for frames without landmarks; cache_dir: the face cache."""

    class_names = CKPLUS_CLASSES

    def __init__(
        self,
        path: str | Path,
        folds: int = 10,
        fold: int = 0,
        peak_frames: int = 3,
        first_frame_neutral: bool = False,
        preprocess: Mapping[str, Any] | PreprocessSpec | None = None,
        detector: str | Mapping[str, Any] | FaceDetector = "yunet",
        cache_dir: str | Path | None | bool = None,
        seed: int = 0,
        name: str = "ckplus",
    ) -> None:
        self.name, self.root = name, Path(path).expanduser()
        if not (self.root / IMAGES).is_dir() or not (self.root / EMOTION).is_dir():
            raise missing_dataset("CK+", self.root, [f"{IMAGES}/", f"{EMOTION}/"], HOW_TO_GET)
        if isinstance(peak_frames, bool) or not isinstance(peak_frames, int) or peak_frames < 1:
            raise DataError(
                f"data.sources.{name}.peak_frames={peak_frames!r}: give a whole number of frames, 1 or more."
            )
        self.peak_frames, self.first_frame_neutral = peak_frames, bool(first_frame_neutral)
        self.folds, self.fold, self.seed = folds, fold, int(seed)
        self.faces = FaceCrops(PreprocessSpec.from_dict(preprocess or {}), detector, cache_dir, name, to_spec=True)

    def items(self) -> list[Item]:
        """The labelled frames of every labelled sequence, each grouped by its subject."""
        out = []
        for label_file in sorted((self.root / EMOTION).glob("S*/*/*_emotion.txt")):
            subject, sequence = label_file.parent.parent.name, label_file.parent.name
            label = _emotion(label_file)
            folder = self.root / IMAGES / subject / sequence
            frames = sorted(p for p in folder.glob("*.png") if p.name[0] != ".")
            if not frames:
                raise DataError(
                    f"{label_file}: labels sequence {subject}/{sequence}, but {folder} holds no .png frames. Restore "
                    "the sequence from the dataset, or delete the label file."
                )
            chosen = [(f, label) for f in frames[-self.peak_frames :]]
            if self.first_frame_neutral and len(frames) > self.peak_frames:
                chosen.insert(0, (frames[0], CKPLUS_CLASSES.index("neutral")))
            out += [self._item(frame, label, subject, sequence) for frame, label in chosen]
        return out

    def _item(self, frame: Path, label: int, subject: str, sequence: str) -> Item:
        marks = self.root / LANDMARKS / subject / sequence / f"{frame.stem}_landmarks.txt"
        if not marks.is_file():
            return Item(frame, label, "detect", group=subject)
        try:
            lines = marks.read_text(encoding="utf-8", errors="replace").splitlines()
            points = np.array([numbers(line.split()) for line in lines if line.strip()])
            face = five_of_68(points)
        except ValueError:
            raise DataError(
                f"{marks}: expected 68 lines 'x y', as CK+ gives them. Restore the file from the dataset, or delete it "
                "to have the detector find the face."
            ) from None
        return Item(frame, label, "landmarks", face, group=subject)

    def load(self) -> dict[str, SplitData]:
        faces, items = read_items(self.faces, self.items(), self.name)
        splits = fold_splits([it.group for it in items], self.folds, self.fold, self.seed, self.name)
        return to_splits(faces, items, splits, self.name)


def _emotion(path: Path) -> int:
    """The label in a CK+ ``*_emotion.txt`` file (one number 0-7, written as a float)."""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value != int(value) or not 0 <= value < len(CKPLUS_CLASSES):
        raise DataError(
            f"{path}, line 1: {text[:60]!r} is not a CK+ emotion code (one number 0-7, e.g. 3.0000000e+00). Restore "
            "the file from the dataset, or delete it to leave its sequence out."
        )
    return int(value)


class CKPlus48Source:
    """CK+48's class folders as a `Source`, split subject-wise (see the module docstring)."""

    def __init__(self, path: str | Path, folds: int = 10, fold: int = 0, seed: int = 0, name: str = "ckplus48") -> None:
        self.name, self.root = name, Path(path).expanduser()
        if not self.root.is_dir():
            looked = ["anger/", "contempt/", "disgust/", "fear/", "happy/", "sadness/", "surprise/"]
            raise missing_dataset("CK+48", self.root, looked, HOW_TO_GET)
        self.folder = FolderSource(self.root, detect_faces=False, cache_dir=False, name=name)
        self.class_names = self.folder.class_names
        self.folds, self.fold, self.seed = folds, fold, int(seed)

    def load(self) -> dict[str, SplitData]:
        pool = self.folder.load()["train"]
        subjects = []
        for path in pool.paths:
            match = SUBJECT.match(Path(path).name)
            if match is None:
                raise DataError(
                    f"{path}: a CK+48 file name starts with its subject (S010_004_00000017.png), which the "
                    "subject-wise folds need. Rename or remove the file."
                )
            subjects.append(match.group(1))
        splits = fold_splits(subjects, self.folds, self.fold, self.seed, self.name)
        return {split: pool.subset(index) for split, index in splits.items() if len(index)}
