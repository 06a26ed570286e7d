"""AffectNet's manually annotated faces as its authors distribute them (`AffectNetSource`, ``data=affectnet``).

Layout, under ``data.path``::

    training.csv, validation.csv    subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
                                    expression,valence,arousal (landmarks: 136 numbers x1;y1;x2;y2;...)
    Manually_Annotated_Images/      689/737db2...ca.jpg, as subDirectory_filePath names them (or
                                    Manually_Annotated/Manually_Annotated_Images/)

Expressions 0-7: neutral, happy, sad, surprise, fear, disgust, anger, contempt (`mimic.labels.AFFECTNET_CLASSES`);
8-10 (none, uncertain, non-face) are no class: left out, and counted in one line. The 68 landmarks get mimic's eye
framing; a row without them gets the detector inside its box. ``training.csv`` is the training split;
``validation.csv``, the only labelled held-out part AffectNet publishes, is the test split, and the datamodule holds
out a seeded, stratified ``data.val_fraction`` of the training part for validation. About 290,000 photos: each is
decoded and cropped once, then read from the face cache. The training set is heavily skewed (about 75,000 happy
faces, 4,000 contempt): ``data.balance_classes=true`` draws every class equally often.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimic.data.base import SplitData, missing_dataset, row_error
from mimic.data.face_crops import FaceCrops, Item, five_of_68, inside, numbers, read_items, to_splits
from mimic.faces import FaceDetector
from mimic.labels import AFFECTNET_CLASSES
from mimic.preprocessing import PreprocessSpec

log = logging.getLogger(__name__)

FILES = {"train": "training.csv", "test": "validation.csv"}
IMAGE_DIRS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks", "expression")
NO_CLASS = {8: "none", 9: "uncertain", 10: "non-face"}
HOW_TO_GET = (
    "AffectNet is given by its authors on request, for non-commercial research, after signing their licence "
    "agreement: http://mohammadmahoor.com/affectnet/."
)


class AffectNetSource:
    """AffectNet as a `Source` (see the module docstring). preprocess: the model's spec; detector: for rows without
    landmarks; cache_dir: the face cache (None: the user cache, false: none); limit: read at most this many rows of
    each file (a quick look at a large set; null: all)."""

    class_names = AFFECTNET_CLASSES

    def __init__(
        self,
        path: str | Path,
        preprocess: Mapping[str, Any] | PreprocessSpec | None = None,
        detector: str | Mapping[str, Any] | FaceDetector = "yunet",
        cache_dir: str | Path | None | bool = None,
        limit: int | None = None,
        name: str = "affectnet",
    ) -> None:
        self.name, self.root, self.limit = name, Path(path).expanduser(), limit
        looked = [*FILES.values(), *(f"{d}/" for d in IMAGE_DIRS)]
        if not all((self.root / f).is_file() for f in FILES.values()):
            raise missing_dataset("AffectNet", self.root, looked, HOW_TO_GET)
        found = [self.root / d for d in IMAGE_DIRS if (self.root / d).is_dir()]
        if not found:
            raise missing_dataset("AffectNet's images", self.root, looked, HOW_TO_GET)
        self.images = found[0]
        self.faces = FaceCrops(PreprocessSpec.from_dict(preprocess or {}), detector, cache_dir, name, to_spec=True)

    def items(self, split: str) -> list[Item]:
        """The labelled rows of ``split``'s file as `Item` s; rows of no class are counted in one line."""
        path = self.root / FILES[split]
        out, no_class = [], dict.fromkeys(NO_CLASS.values(), 0)
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise row_error(path, 1, ",".join(header), f"AffectNet's header (it lacks {', '.join(missing)})")
            col = {c: header.index(c) for c in COLUMNS}
            for row in reader:
                if self.limit is not None and len(out) + sum(no_class.values()) >= self.limit:
                    break
                number = reader.line_num
                expected = "a row of AffectNet's columns: " + ",".join(COLUMNS)
                try:
                    label = int(row[col["expression"]])
                    box = numbers([row[col[c]] for c in ("face_x", "face_y", "face_width", "face_height")])
                    file = row[col["subDirectory_filePath"]]
                    marks = numbers([v for v in row[col["facial_landmarks"]].split(";") if v.strip()])
                except (ValueError, IndexError):
                    raise row_error(path, number, ",".join(row), expected) from None
                if not 0 <= label <= 10 or (marks and len(marks) != 136):
                    raise row_error(path, number, ",".join(row), expected + " (expression 0-10, 136 landmark numbers)")
                if label in NO_CLASS:
                    no_class[NO_CLASS[label]] += 1
                    continue
                image = inside(self.images, file, f"{path}, line {number}")
                if marks:
                    out.append(Item(image, label, "landmarks", five_of_68(np.reshape(marks, (68, 2)))))
                elif box[2] > 0 and box[3] > 0:
                    out.append(Item(image, label, "box", tuple(box)))
                else:
                    out.append(Item(image, label, "detect"))
        if any(no_class.values()):
            counts = ", ".join(f"{n} {k}" for k, n in no_class.items())
            log.info("%s: %s: left out %d rows of no class (%s)", self.name, path.name, sum(no_class.values()), counts)
        return out

    def load(self) -> dict[str, SplitData]:
        out = {}
        for split in FILES:
            faces, items = read_items(self.faces, self.items(split), f"{self.name}/{split}")
            out.update(to_splits(faces, items, {split: np.arange(len(items))}, self.name))
        return out
