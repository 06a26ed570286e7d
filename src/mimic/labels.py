"""Canonical emotion names, the label orders of the public datasets, and mapping between class sets by name.

A run's class set is a list of names (DESIGN.md contract 3). Every source knows its own names in its own index
order; `remap` turns its integer labels into indices of the run's class set and marks what the set lacks with -1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mimic.errors import UserError

FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013's label order: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral."""

FERPLUS_CLASSES: tuple[str, ...] = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
"""FER+ vote columns in file order (fer2013new.csv: neutral, happiness, surprise, sadness, anger, disgust, fear,
contempt), under their canonical names."""

KNOWN_CLASSES: tuple[str, ...] = FER2013_CLASSES + ("contempt",)

_ALIASES = {
    "anger": "angry",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
    "calm": "neutral",
}


class UnknownClassError(UserError, ValueError):
    """A class name that no known emotion or source provides."""


def canonical(name: str) -> str:
    """Lower-case a class name and map common synonyms (``Happiness`` -> ``happy``) onto the canonical name."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def validate_classes(names: Sequence[str], known: Sequence[str] | None = None, where: str = "classes") -> list[str]:
    """Return the canonical names of ``names``; duplicates, empty names or (if ``known`` is given) names outside
    ``known`` are a ``UnknownClassError`` that lists what is allowed."""
    out = [canonical(n) for n in names]
    if not out:
        raise UnknownClassError(f"{where}: the class list is empty; give at least two class names.")
    if any(not n for n in out):
        raise UnknownClassError(f"{where}: empty class name in {list(names)}.")
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise UnknownClassError(f"{where}: class names must be unique, {dupes} appear more than once in {list(names)}.")
    if known is not None:
        known_c = [canonical(k) for k in known]
        unknown = [n for n in out if n not in known_c]
        if unknown:
            raise UnknownClassError(f"{where}: unknown class name(s) {unknown}. Known classes: {', '.join(known_c)}.")
    return out


def remap(labels: np.ndarray, source_classes: Sequence[str], target_classes: Sequence[str]) -> np.ndarray:
    """Map integer labels of a source (indices into ``source_classes``) onto ``target_classes`` by name.

    Labels whose class the target set lacks become -1 (the caller drops and counts them).
    """
    src = [canonical(n) for n in source_classes]
    dst = [canonical(n) for n in target_classes]
    table = np.array([dst.index(n) if n in dst else -1 for n in src], dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(src)):
        raise ValueError(f"label out of range 0..{len(src) - 1} for classes {src}")
    return table[labels] if labels.size else labels
