"""ExpW (Expression in-the-Wild) as its authors distribute it (`ExpWSource`, ``data=expw``).

Layout, under ``data.path``::

    label/label.lst     image_name face_id_in_image face_box_top face_box_left face_box_right face_box_bottom
                        face_box_confidence expression_label (space-separated, one face a line)
    image/origin/       the photos (or origin/, as the archive unpacks)

Labels 0-6: angry, disgust, fear, happy, sad, surprise, neutral (`mimic.labels.EXPW_CLASSES`). A photo holds one or
more faces; each face's box is given, and the detector runs inside it (the face nearest the box's centre gets mimic's
eye framing; the box's own framing where none is found). ExpW has no official split: every photo goes, with all its
faces, to training, validation or test by a seeded hash of its name, 80/10/10 (``fractions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mimic.data.base import DataError, SplitData, missing_dataset, row_error
from mimic.data.face_crops import FaceCrops, Item, inside, numbers, read_items, to_splits
from mimic.data.folds import group_splits
from mimic.faces import FaceDetector
from mimic.labels import EXPW_CLASSES
from mimic.preprocessing import PreprocessSpec

LABELS = Path("label/label.lst")
IMAGE_DIRS = ("image/origin", "origin")
HOW_TO_GET = (
    "ExpW is given by its authors for research use: "
    "https://mmlab.ie.cuhk.edu.hk/projects/socialrelation/index.html (its images come from the web; their "
    "copyright stays with their owners)."
)


class ExpWSource:
    """ExpW as a `Source` (see the module docstring). preprocess: the model's spec; detector: run inside each given
    box; cache_dir: the face cache (None: the user cache, false: none); fractions: train, val, test shares of the
    photos; seed: the split's seed."""

    class_names = EXPW_CLASSES

    def __init__(
        self,
        path: str | Path,
        preprocess: Mapping[str, Any] | PreprocessSpec | None = None,
        detector: str | Mapping[str, Any] | FaceDetector = "yunet",
        cache_dir: str | Path | None | bool = None,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        seed: int = 0,
        name: str = "expw",
    ) -> None:
        self.name, self.root, self.seed = name, Path(path).expanduser(), int(seed)
        looked = [str(LABELS), *(f"{d}/" for d in IMAGE_DIRS)]
        found = [self.root / d for d in IMAGE_DIRS if (self.root / d).is_dir()]
        if not (self.root / LABELS).is_file() or not found:
            raise missing_dataset("ExpW", self.root, looked, HOW_TO_GET)
        self.images = found[0]
        fractions = list(fractions)
        if len(fractions) != 3 or any(not isinstance(f, int | float) or f < 0 for f in fractions) or not fractions[0]:
            raise DataError(
                f"data.sources.{name}.fractions={fractions}: give three shares (train, val, test), e.g. "
                "[0.8, 0.1, 0.1]."
            )
        self.fractions = fractions
        self.faces = FaceCrops(PreprocessSpec.from_dict(preprocess or {}), detector, cache_dir, name, to_spec=True)

    def items(self) -> list[Item]:
        """Every labelled face as an `Item`, grouped by its photo."""
        path = self.root / LABELS
        out = []
        expected = "'<image> <face id> <top> <left> <right> <bottom> <confidence> <label 0-6>'"
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 8:
                    raise ValueError
                top, left, right, bottom = numbers(fields[2:6])
                label = int(fields[7])
            except ValueError:
                raise row_error(path, number, line, expected) from None
            if not 0 <= label <= 6 or right <= left or bottom <= top:
                raise row_error(path, number, line, expected + " (a box with right > left and bottom > top)")
            image = inside(self.images, fields[0], f"{path}, line {number}")
            out.append(Item(image, label, "box", (left, top, right - left, bottom - top), group=fields[0]))
        return out

    def load(self) -> dict[str, SplitData]:
        faces, items = read_items(self.faces, self.items(), self.name)
        splits = group_splits([it.group for it in items], self.fractions, self.seed)
        return to_splits(faces, items, splits, self.name)
