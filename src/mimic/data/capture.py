"""Photos of your face into class folders: the one path `scripts/capture_dataset.py` and the web page's captures share.

A frame's largest face is found by the detector and cut out with the eye framing models are trained with
(`mimic.preprocessing.crop_face`), `CROP_SIZE` pixels square so that any model can use it. It is saved as
``<root>/<index>_<name>/NNNN.png``, numbering on from the highest number in the folder at that moment, under a name
`mimic.io.free_path` guarantees is free and written atomically: nothing existing is overwritten, and nothing is ever
half written.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mimic.data.class_folders import (
    NOT_CLASSES,
    is_class_dir,
    linked_classes,
    scan_class_folders,
    stays_in,
    write_image_atomic,
)
from mimic.errors import UserError
from mimic.faces import FaceDetector, largest_face
from mimic.io import free_path
from mimic.labels import canonical, check_class_name
from mimic.preprocessing import PreprocessSpec, crop_face

CROP_SIZE = 128  # eye-framed crops are saved this large (or the model's size if larger): any model can use them
_NUMBER = re.compile(r"^(\d+)")


def class_folder(root: Path, label: str, links: bool = True) -> Path:
    """The folder of class ``label`` under ``root``: the existing one with that class name, else a new
    ``<next index>_<label>/`` (a plain ``<label>/`` when ``root`` already uses plain folders). ``links`` False: a
    symlinked folder is no class folder; a `UserError` when one names the class or the new folder's name is taken.
    """
    name = canonical(check_class_name(label, "label"))
    if name in NOT_CLASSES:
        raise UserError(f"label: {label!r} is not a class name: it names the folder of photos not sorted yet")
    if not links and (link := linked_classes(root).get(name)):
        raise UserError(
            f"{root.name}/{link.name} is a symlink, not a class folder of {root.name}: remove it or save your photos "
            "under another class"
        )
    folder = root / f"0_{name}"
    if root.is_dir() and any(is_class_dir(p, links) for p in root.iterdir()):
        folders = scan_class_folders(root, links=links)
        for f in folders:
            if f.name == name:
                return f.path
        folder = root / (name if folders[0].index is None else f"{len(folders)}_{name}")
    if not links and (folder.exists() or folder.is_symlink()) and not (folder.is_dir() and stays_in(root, folder)):
        raise UserError(
            f"{root.name}/{folder.name} is a link or a file, not a class folder of {root.name}: remove or rename it"
        )
    return folder


def next_number(folder: Path) -> int:
    """One past the highest leading number of the files in ``folder`` (0 for an empty or missing folder)."""
    if not folder.is_dir():
        return 0
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBER.match(p.name))]
    return max(numbers, default=-1) + 1


def face_crop(frame: np.ndarray, detector: FaceDetector, spec: PreprocessSpec | None = None) -> np.ndarray | None:
    """The largest face of ``frame`` framed as ``spec`` says (default: the eye framing), at least `CROP_SIZE`
    pixels square; None when the detector finds no face."""
    spec = spec or PreprocessSpec(framing="eyes")
    face = largest_face(detector.detect(frame))
    if face is None:
        return None
    return np.ascontiguousarray(crop_face(frame, face, spec, size=max(spec.size, CROP_SIZE)))


def save_crop(folder: Path, crop: np.ndarray, suffix: str = "") -> Path:
    """Write ``crop`` as ``folder/NNNN<suffix>.png`` under the next free number; returns the path written."""
    path = free_path(folder / f"{next_number(folder):04d}{suffix}.png")  # rescanned: files may have come meanwhile
    write_image_atomic(path, crop)
    return path
