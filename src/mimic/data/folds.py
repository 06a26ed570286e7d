"""Splits by group: subject-wise folds for the posed sets (CK+, CK+48, JAFFE) and a split by image for ExpW, so the
faces of one person (or one photo) never sit on both sides of a split.

`fold_splits`: ``data.folds`` folds of subjects; fold ``data.fold`` is the test split, the next fold (cyclically) the
validation split, the rest the training split. Subjects are ordered by a seeded hash of their id and dealt to the
folds in turn, so every fold gets its share of subjects however few there are (JAFFE has ten: one a fold), and the
same set gives the same folds on every machine. `group_splits`: each group (an image) goes to a split
by a seeded hash of its name, in the given fractions (ExpW's 80/10/10).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from mimic.data.base import DataError


def _rank(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "big")


def subject_folds(subjects: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """{subject: its fold 0..folds-1} for every distinct subject (see the module docstring)."""
    order = sorted(set(subjects), key=lambda s: (_rank(s, seed), s))
    return {s: i % folds for i, s in enumerate(order)}


def fold_splits(subjects: Sequence[str], folds: int, fold: int, seed: int, name: str) -> dict[str, np.ndarray]:
    """{split: image indices}: fold ``fold`` of ``folds`` subject-wise folds is "test", fold ``fold + 1`` "val" and
    the rest "train". ``subjects``: each image's subject id. ``name``: the source, for errors."""
    n_subjects = len(set(subjects))
    if isinstance(folds, bool) or not isinstance(folds, int) or not 3 <= folds <= max(3, n_subjects):
        raise DataError(
            f"{name}: data.folds={folds!r}: give a whole number from 3 (a training, a validation and a test fold) to "
            f"{max(3, n_subjects)} (the set's {n_subjects} subjects, one fold each at most)."
        )
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise DataError(f"{name}: data.fold={fold!r}: the test fold is a whole number from 0 to {folds - 1}.")
    of = subject_folds(subjects, folds, seed)
    where = np.array([of[s] for s in subjects], np.int64)
    index = np.arange(len(where))
    return {
        "train": index[(where != fold) & (where != (fold + 1) % folds)],
        "val": index[where == (fold + 1) % folds],
        "test": index[where == fold],
    }


def group_splits(groups: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, np.ndarray]:
    """{"train", "val", "test": image indices}: each distinct group to one split, drawn by a seeded hash of its name
    in the proportions ``fractions`` (train, val, test)."""
    edges = np.cumsum(np.asarray(fractions, np.float64) / sum(fractions))
    draw = {g: _rank(g, seed) / 2.0**64 for g in set(groups)}
    where = np.minimum(np.searchsorted(edges, [draw[g] for g in groups], side="right"), 2)
    index = np.arange(len(groups))
    return {split: index[where == k] for k, split in enumerate(("train", "val", "test"))}
