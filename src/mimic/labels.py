"""Canonical emotion names, the label orders of the public datasets, and mapping between class sets by name.

A run's class set is a list of names (DESIGN.md contract 3). Every source knows its own names in its own index
order; `remap` turns its integer labels into indices of the run's class set and marks what the set lacks with -1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from mimic.errors import UserError

FER2013_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013's label order: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral."""

FERPLUS_CLASSES: tuple[str, ...] = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
"""FER+ vote columns in file order (fer2013new.csv: neutral, happiness, surprise, sadness, anger, disgust, fear,
contempt), under their canonical names."""

RAFDB_CLASSES: tuple[str, ...] = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")
"""RAF-DB's basic labels 1-7 (list_patition_label.txt), from label 1: Surprise, Fear, Disgust, Happiness, Sadness,
Anger, Neutral."""

AFFECTNET_CLASSES: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")
"""AffectNet's expression 0-7: Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt (8-10 are None,
Uncertain and Non-Face: no class)."""

CKPLUS_CLASSES: tuple[str, ...] = ("neutral", "angry", "contempt", "disgust", "fear", "happy", "sad", "surprise")
"""CK+'s emotion codes 0-7 (Emotion/*_emotion.txt): neutral, anger, contempt, disgust, fear, happy, sadness,
surprise."""

JAFFE_CODES: dict[str, str] = {
    "AN": "angry",
    "DI": "disgust",
    "FE": "fear",
    "HA": "happy",
    "SA": "sad",
    "SU": "surprise",
    "NE": "neutral",
}
"""JAFFE's two-letter expression codes in its file names (KA.AN1.39.tiff)."""

EXPW_CLASSES: tuple[str, ...] = FER2013_CLASSES
"""ExpW's expression labels 0-6 (label.lst): angry, disgust, fear, happy, sad, surprise, neutral: FER2013's order."""

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


CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_ -]{0,31}")
"""What a class name may be, wherever it comes from (a config, a model file, a folder, a web client): a letter first,
then letters, digits, ``_``, ``-`` or spaces, at most 32 characters, all ASCII (a folder name then reads the same on
every file system). So a name is safe as a file name, a CSV column and a config value: it can never be an OmegaConf
interpolation (``${...}``), a path or a Hydra key."""
CLASS_NAME_RULE = "an ASCII letter first, then letters, digits, _, - or spaces, at most 32 characters"


class UnknownClassError(UserError, ValueError):
    """A class name that no known emotion or source provides, or one that breaks `CLASS_NAME`."""


def check_class_name(name: object, where: str = "class name") -> str:
    """``name`` if it is a string that `CLASS_NAME` accepts, else an `UnknownClassError` naming ``where``."""
    if isinstance(name, str) and CLASS_NAME.fullmatch(name):
        return name
    shown = repr(name) if not isinstance(name, str) or len(name) <= 40 else f"{name[:40]!r}... ({len(name)} characters)"
    raise UnknownClassError(f"{where}: {shown} is not a class name; a class name is {CLASS_NAME_RULE}.")


def canonical(name: str) -> str:
    """Lower-case a class name and map common synonyms (``Happiness`` -> ``happy``) onto the canonical name."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def validate_classes(
    names: Sequence[str], known: Sequence[str] | None = None, where: str = "classes", at_least: int = 1
) -> list[str]:
    """Return the canonical names of ``names``; fewer than ``at_least`` names (a run's class set needs two), a name
    that breaks `CLASS_NAME`, duplicates or (if ``known`` is given) names outside ``known`` are a
    ``UnknownClassError`` that says what is allowed."""
    if len(names) < max(1, at_least):
        why = " (a classifier decides between classes)" if at_least > 1 else ""
        given = f"{list(names)} holds {len(names)} class name(s)"
        raise UnknownClassError(f"{where}: {given}; give at least {at_least}{why}.")
    for i, n in enumerate(names):
        check_class_name(n, f"{where}[{i}]")
    out = [canonical(n) for n in names]
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
