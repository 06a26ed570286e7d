"""The photos a fine-tuning job of the web page works on (`mimic.jobs`): how many a class needs, the copy a job takes
of them into its folder (`snapshot`) and what its report says when it rests on single photos (`photo_note`).

A class needs `MIN_PHOTOS` photos, exact duplicates counted once: one is held out for the report, one is trained on
(the recipe mirrors it at random). From `VAL_FROM` photos on, a class gives some to validation too. A job with no
validation photos validates on FER2013 when it is merged, else keeps its last epoch (`mimic.finetune.job_config`).
Only a class folder's own photos are taken: a symlink (`mimic.data.class_folders.stays_in`) is not one.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

from mimic.data.class_folders import list_files

HELD_OUT, VAL = 0.25, 0.15  # of each class's photos: held out for the report, and for validation
MIN_PHOTOS = 2  # a class with photos needs this many: one held out, one to train on
VAL_FROM = 4  # a class with this many photos or more gives at least one to validation; fewer: none


def unique_photos(folder: Path) -> list[Path]:
    """The photos of the class folder ``folder`` in name order, its own only (no symlink), exact duplicates once."""
    unique: dict[str, Path] = {}
    for path in list_files(folder, links=False)[0]:
        unique.setdefault(hashlib.sha1(path.read_bytes()).hexdigest(), path)
    return sorted(unique.values())


def snapshot(folders: dict[str, Path], out: Path, classes: list[str], seed: int = 0) -> dict[str, dict[str, int]]:
    """Copy the `unique_photos` of ``classes`` into ``out/{train,val,test}/<class>/``: per class a seeded draw of
    `HELD_OUT` of them (at least one) for the report, `VAL` (at least one; none below `VAL_FROM` photos) for
    validation, the rest to train on. Every split's class folder is made, empty or not (an empty validation folder
    keeps the training photos out of validation). Returns {class: {split: count}}."""
    counts = {}
    for i, name in enumerate(classes):
        photos = unique_photos(folders[name])
        order = np.random.default_rng([seed, i]).permutation(len(photos))
        n_test = max(1, round(HELD_OUT * len(photos)))
        n_val = max(1, round(VAL * len(photos))) if len(photos) >= VAL_FROM else 0
        parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        for split, idx in parts.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in idx:
                shutil.copy2(photos[k], folder / photos[k].name)
        counts[name] = {split: len(idx) for split, idx in parts.items()}
    return counts


def photo_note(captured: dict[str, dict[str, int]]) -> str | None:
    """What a job's report says of the photos ``captured`` ({class: {split: count}}, as `snapshot` returns them) when
    a class was trained on or is judged on a single photo; None when every class has more."""

    def which(split: str) -> str | None:
        one = [c for c, n in captured.items() if n.get(split) == 1]
        return None if not one else "per class" if len(one) == len(captured) else f"of {', '.join(one)}"

    trained, judged = which("train"), which("test")
    if not (trained or judged):
        return None
    parts = ([f"trained on one photo {trained}"] if trained else []) + (
        [f"judged on one held-out photo {judged}"] if judged else []
    )
    return f"This rests on single photos: {' and '.join(parts)}. Take more photos for a surer result."
