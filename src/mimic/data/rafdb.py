"""RAF-DB (Real-world Affective Faces, basic emotions) as its authors distribute it (`RAFDBSource`, ``data=rafdb``).

Layout, under ``data.path`` (the folder holding ``basic/``, or ``basic/`` itself)::

    basic/EmoLabel/list_patition_label.txt      train_00001.jpg 5     (the file's own spelling of "partition")
    basic/Image/aligned/train_00001_aligned.jpg  100x100 faces, already aligned: taken whole
    basic/Image/original/train_00001.jpg         the photos, with
    basic/Annotation/manual/train_00001_manu_attri.txt   5 landmark lines "x<tab>y" (eyes, nose, mouth corners),
                                                          then gender, race and age: the landmarks get mimic's framing

Labels 1-7: surprise, fear, disgust, happiness, sadness, anger, neutral (`mimic.labels.RAFDB_CLASSES`), mapped onto
the run's classes by name. The split is the file's: ``train_*`` training, ``test_*`` test; the datamodule holds out a
seeded, stratified ``data.val_fraction`` of the training part for validation. ``images``: ``aligned``, ``original``
or ``auto`` (aligned where that folder exists).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimic.data.base import DataError, SplitData, missing_dataset, row_error
from mimic.data.face_crops import FaceCrops, Item, landmark_face, numbers, read_items, to_splits
from mimic.faces import FaceDetector
from mimic.labels import RAFDB_CLASSES
from mimic.preprocessing import PreprocessSpec

LABELS = Path("basic/EmoLabel/list_patition_label.txt")
HOW_TO_GET = (
    "RAF-DB is given by its authors on request, for non-commercial research, after signing their agreement: "
    "http://www.whdeng.cn/RAF/model1.html."
)


class RAFDBSource:
    """RAF-DB's basic-emotion set as a `Source` (see the module docstring). preprocess: the model's spec (its
    framing of the original photos); detector: for an original photo without its landmark file; cache_dir: the face
    cache (None: the user cache, false: none)."""

    class_names = RAFDB_CLASSES

    def __init__(
        self,
        path: str | Path,
        images: str = "auto",
        preprocess: Mapping[str, Any] | PreprocessSpec | None = None,
        detector: str | Mapping[str, Any] | FaceDetector = "yunet",
        cache_dir: str | Path | None | bool = None,
        name: str = "rafdb",
    ) -> None:
        self.name = name
        root = Path(path).expanduser()
        self.root = root.parent if root.name == "basic" else root
        if not (self.root / LABELS).is_file():
            raise missing_dataset("RAF-DB", self.root, [str(LABELS)], HOW_TO_GET)
        if images not in ("auto", "aligned", "original"):
            raise DataError(f"data.sources.{name}.images={images!r}: choose aligned, original or auto.")
        aligned = self.root / "basic/Image/aligned"
        self.images = ("aligned" if aligned.is_dir() else "original") if images == "auto" else images
        folder = self.root / "basic/Image" / self.images
        if not folder.is_dir():
            raise missing_dataset(
                f"RAF-DB's {self.images} images", self.root, [f"basic/Image/{self.images}/"], HOW_TO_GET
            )
        self.faces = FaceCrops(PreprocessSpec.from_dict(preprocess or {}), detector, cache_dir, name, to_spec=True)

    def items(self) -> list[Item]:
        """Every labelled image as an `Item`, its group "train" or "test" (the file's split)."""
        path = self.root / LABELS
        out = []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            expected = "'<train_NNNNN.jpg or test_NNNN.jpg> <label 1-7>'"
            if len(fields) != 2 or not fields[1].isdigit() or not 1 <= int(fields[1]) <= 7:
                raise row_error(path, number, line, expected)
            image, label = fields[0], int(fields[1]) - 1
            split = image.split("_", 1)[0]
            if split not in ("train", "test") or "/" in image or "\\" in image or not image.endswith(".jpg"):
                raise row_error(path, number, line, expected)
            out.append(self._item(image, label, split))
        return out

    def _item(self, image: str, label: int, split: str) -> Item:
        stem = image[: -len(".jpg")]
        if self.images == "aligned":
            return Item(self.root / "basic/Image/aligned" / f"{stem}_aligned.jpg", label, "whole", group=split)
        photo = self.root / "basic/Image/original" / image
        attributes = self.root / "basic/Annotation/manual" / f"{stem}_manu_attri.txt"
        if not attributes.is_file():
            return Item(photo, label, "detect", group=split)  # no landmarks given: the detector finds the face
        return Item(photo, label, "landmarks", _landmarks(attributes), group=split)

    def load(self) -> dict[str, SplitData]:
        faces, items = read_items(self.faces, self.items(), self.name)
        groups = np.array([it.group for it in items])
        return to_splits(faces, items, {s: np.flatnonzero(groups == s) for s in ("train", "test")}, self.name)


def _landmarks(path: Path):
    """The five landmarks of a ``*_manu_attri.txt`` file (its first five lines, ``x y``) as a face."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    try:
        points = [numbers(lines[i].split()) for i in range(5)]
        if any(len(p) != 2 for p in points):
            raise ValueError
    except (ValueError, IndexError):
        raise DataError(
            f"{path}: the first five lines must be landmarks 'x y' (eyes, nose, mouth corners), as RAF-DB gives "
            "them. Restore the file from the dataset, or delete it to have the detector find the face."
        ) from None
    return landmark_face(points)
