"""The layout of a folder of class folders on disk: ``root/<index>_<name>/`` (``0_happy/ 1_sad/``) or plain
``root/<name>/`` folders, found, named and ordered by `scan_class_folders`, and the photos in them read and written
(`read_image`, `write_image_atomic`). The data source (`mimic.data.folders`), the capture script and the web page's
captures all go through here. A folder's name is its class, under the one class-name rule (`mimic.labels`); folders
named ``unsorted`` (photos waiting for review) or starting with ``.`` or ``_`` are not classes. The web server's
captures take ``links=False``: a symlinked folder or file (one that resolves anywhere but its own place) is not theirs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mimic.data.base import DataError
from mimic.io import IMAGE_SUFFIXES, write_bytes
from mimic.labels import UnknownClassError, canonical, check_class_name

log = logging.getLogger(__name__)

NOT_CLASSES = ("unsorted",)
_INDEXED = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class ClassFolder:
    """One class folder: its class ``index`` (None for a plain ``<name>/`` folder), canonical ``name`` and ``path``."""

    index: int | None
    name: str
    path: Path


def stays_in(folder: Path, path: Path) -> bool:
    """Whether ``path``, resolved, is ``folder``'s own entry of its name: not a symlink (to a folder or a file) nor a
    name that leads anywhere else."""
    return path.resolve() == folder.resolve() / path.name


def is_class_dir(path: Path, links: bool = True) -> bool:
    """Whether ``path`` is a class folder by its name; ``links`` False: not when it is a symlink (`stays_in`)."""
    named = path.is_dir() and not path.name.startswith((".", "_")) and path.name.lower() not in NOT_CLASSES
    return named and (links or stays_in(path.parent, path))


def linked_classes(root: Path) -> dict[str, Path]:
    """{class name: folder} of the symlinked folders of ``root`` that would be class folders by their names (none
    when ``root`` is no folder); the names are canonical but not checked."""
    if not root.is_dir():
        return {}
    linked = [p for p in root.iterdir() if is_class_dir(p) and not stays_in(root, p)]
    return {canonical(m.group(2) if (m := _INDEXED.match(p.name)) else p.name): p for p in sorted(linked)}


def list_files(folder: Path, links: bool = True) -> tuple[list[Path], list[Path]]:
    """``(images, others)``: the files of ``folder`` in name order, split by suffix (`mimic.io.IMAGE_SUFFIXES`), and
    the folders in it. Hidden and partly written ``.*`` files are in neither; ``links`` False: symlinked images are
    others."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not links:
        images = [p for p in images if stays_in(folder, p)]
    return images, [p for p in entries if p not in images]


def scan_class_folders(root: Path | str, classes: Sequence[str] | None = None, links: bool = True) -> list[ClassFolder]:
    """The class folders of ``root`` in class order, validated; ``links`` False: a symlinked folder is none.

    ``<index>_<name>/`` folders must use the indices 0..n-1 once each and distinct names; a conflict is a `DataError`
    naming the folders. Plain ``<name>/`` folders are ordered as in ``classes`` (names it lacks go last,
    alphabetically). Mixing both kinds is an error.
    """
    root = Path(root)
    dirs = sorted(p for p in root.iterdir() if is_class_dir(p, links))
    if not dirs:
        raise DataError(
            f"{root}: no class folders found. Make one folder per class, e.g. {root}/0_happy/, "
            f"{root}/1_sad/ (scripts/capture_dataset.py label=happy does it for you)."
        )
    indexed = {p: _INDEXED.match(p.name) for p in dirs}
    kinds = {m is not None for m in indexed.values()}
    if len(kinds) > 1:
        with_index = [p.name for p, m in indexed.items() if m]
        plain = [p.name for p, m in indexed.items() if not m]
        raise DataError(
            f"{root}: mixes <index>_<name> folders ({', '.join(with_index)}) with plain <name> folders "
            f"({', '.join(plain)}). Name them all one way, e.g. 0_happy/ 1_sad/."
        )
    folders = [ClassFolder(int(m.group(1)) if m else None, _folder_class(p, m), p) for p, m in indexed.items()]
    clashes = _shared(folders, "name")
    if clashes:
        detail = "; ".join(" and ".join(names) for names in clashes.values())
        raise DataError(f"{root}: these folders name the same class: {detail}. Merge them into one folder.")
    if folders[0].index is None:
        order = [canonical(c) for c in classes] if classes else []
        if not order:
            log.info("%s: plain class folders without a class list: using alphabetical order", root)
        rank = {n: i for i, n in enumerate(order)}
        return sorted(folders, key=lambda f: (rank.get(f.name, len(rank)), f.name))
    dupes = _shared(folders, "index")
    if dupes:
        detail = "; ".join(f"{' and '.join(n)} both use index {i}" for i, n in sorted(dupes.items()))
        raise DataError(f"{root}: {detail}. Every class needs its own index 0..{len(folders) - 1}; rename a folder.")
    missing = sorted(set(range(len(folders))) - {f.index for f in folders})
    if missing:
        raise DataError(
            f"{root}: class indices must be 0..{len(folders) - 1}, each used once; index "
            f"{', '.join(map(str, missing))} is missing (folders: "
            f"{', '.join(f.path.name for f in sorted(folders, key=lambda f: f.index))}). Rename a folder."
        )
    return sorted(folders, key=lambda f: f.index)


def _folder_class(path: Path, indexed: re.Match | None) -> str:
    """The canonical class name of the class folder ``path``; a `DataError` naming it when the name breaks the class
    name rule (`mimic.labels.CLASS_NAME`)."""
    name = indexed.group(2) if indexed else path.name
    try:
        return canonical(check_class_name(name, str(path)))
    except UnknownClassError as e:
        near = re.fullmatch(r"(\d+)\W+(.+)", name)  # 0-happy, "1 sad": an index with another separator
        hint = f" as {near.group(1)}_{near.group(2)}/" if near and not indexed else ""
        raise DataError(f"{e} Rename the folder{hint}.") from None


def _shared(folders: list[ClassFolder], key: str) -> dict:
    """{value: folder names} for every value of ``key`` that two or more folders share."""
    groups: dict = {}
    for f in folders:
        groups.setdefault(getattr(f, key), []).append(f.path.name)
    return {k: names for k, names in groups.items() if len(names) > 1}


def read_image(data: bytes) -> np.ndarray | None:
    """Encoded image bytes -> uint8 BGR (EXIF orientation applied), or None when OpenCV cannot decode them."""
    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img if img is not None and img.size else None


def write_image_atomic(path: Path, img: np.ndarray) -> None:
    """Encode ``img`` by ``path``'s suffix and write it in one step (`mimic.io.write_bytes`): never half a file."""
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise OSError(f"could not encode an image for {path}")
    write_bytes(path, buf.tobytes())
