"""JAFFE (the Japanese Female Facial Expression set) as its authors distribute it (`JAFFESource`, ``data=jaffe``).

Layout: one folder of 213 images named ``<subject>.<expression><take>.<number>.tiff`` (``KA.AN1.39.tiff``): ten
subjects, the two-letter expression codes AN, DI, FE, HA, SA, SU, NE (`mimic.labels.JAFFE_CODES`, mapped by name).
Files of other names (its README) are left alone; an image whose name breaks the pattern is an error that names it.
The faces are found by the detector (JAFFE gives no boxes). Split subject-wise (`mimic.data.folds.fold_splits`):
``data.folds`` (10: one subject a fold) and ``data.fold``, the test fold; the next fold is validation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mimic.data.base import DataError, SplitData, missing_dataset
from mimic.data.face_crops import FaceCrops, Item, read_items, to_splits
from mimic.data.folds import fold_splits
from mimic.faces import FaceDetector
from mimic.labels import JAFFE_CODES
from mimic.preprocessing import PreprocessSpec

NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)\.tiff?$", re.IGNORECASE)
SUFFIXES = (".tiff", ".tif")
HOW_TO_GET = (
    "JAFFE is given by its authors on request, for non-commercial scientific research: "
    "https://zenodo.org/record/3451524."
)


class JAFFESource:
    """JAFFE as a `Source` (see the module docstring). folds, fold, seed: the subject-wise folds; preprocess: the
    model's spec; detector: finds each face; cache_dir: the face cache (None: the user cache, false: none)."""

    class_names = tuple(JAFFE_CODES.values())

    def __init__(
        self,
        path: str | Path,
        folds: int = 10,
        fold: int = 0,
        preprocess: Mapping[str, Any] | PreprocessSpec | None = None,
        detector: str | Mapping[str, Any] | FaceDetector = "yunet",
        cache_dir: str | Path | None | bool = None,
        seed: int = 0,
        name: str = "jaffe",
    ) -> None:
        self.name, self.root = name, Path(path).expanduser()
        if not self.root.is_dir() or not any(p.suffix.lower() in SUFFIXES for p in self.root.iterdir()):
            raise missing_dataset("JAFFE", self.root, ["KA.AN1.39.tiff and the other .tiff images"], HOW_TO_GET)
        self.folds, self.fold, self.seed = folds, fold, int(seed)
        self.faces = FaceCrops(PreprocessSpec.from_dict(preprocess or {}), detector, cache_dir, name, to_spec=True)

    def items(self) -> list[Item]:
        """Every image as an `Item`, grouped by its subject."""
        out = []
        codes = list(JAFFE_CODES)
        for path in sorted(p for p in self.root.iterdir() if p.suffix.lower() in SUFFIXES and p.name[0] != "."):
            match = NAME.match(path.name)
            if match is None or match.group(2).upper() not in JAFFE_CODES:
                raise DataError(
                    f"{path}: not a JAFFE name <subject>.<expression><take>.<number>.tiff (KA.AN1.39.tiff) with an "
                    f"expression among {', '.join(codes)}. Rename or move the file."
                )
            out.append(Item(path, codes.index(match.group(2).upper()), "detect", group=match.group(1).upper()))
        return out

    def load(self) -> dict[str, SplitData]:
        faces, items = read_items(self.faces, self.items(), self.name)
        splits = fold_splits([it.group for it in items], self.folds, self.fold, self.seed, self.name)
        return to_splits(faces, items, splits, self.name)
