"""Class folders as a data source: your own photos, one folder per class, for fine-tuning (`FolderSource`).

Layout: ``root/<index>_<name>/`` (``0_happy/ 1_sad/ 2_neutral/``) gives the class order explicitly; plain
``root/<name>/`` folders take their order from ``classes`` (alphabetical without it). ``root/{train,val,test}/<class>/``
gives the splits explicitly; otherwise the photos are one pool, split by a seeded stratified draw (here with
``val_fraction`` / ``test_fraction``, else by the datamodule). Folders named ``unsorted`` or starting with ``.`` or
``_`` are not classes (the capture script's ``unsorted/`` waits there for review).

Photos may have any size and any format OpenCV reads. A photo that is not a face crop is cropped at load time with
the realtime app's detector and crop (`mimic.faces`, `mimic.preprocessing.crop_face`); crops are cached
by content hash. ``detect_faces="auto"`` treats small images (at most 160 px) as crops already, detects faces in the
rest, and keeps a square-ish image the detector finds no face in whole (an already-cropped face); other faceless or
unreadable files are skipped, listed in one warning. Exact duplicates (same bytes) are kept once, so the same photo
never lands in two splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mimic.cache import cache_dir
from mimic.data.base import SPLITS, DataError, SplitData, stratified_split
from mimic.faces import largest_face, make_detector
from mimic.labels import canonical, validate_classes
from mimic.preprocessing import PreprocessSpec, crop_face

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif")
NOT_CLASSES = ("unsorted",)
CROP_MAX_SIDE = 160  # detect_faces="auto": images this small are taken as face crops already
CACHE_VERSION = 1
_INDEXED = re.compile(r"^(\d+)_(.+)$")
_MAX_LISTED = 20


@dataclass(frozen=True)
class ClassFolder:
    """One class folder: its class ``index`` (None for a plain ``<name>/`` folder), canonical ``name`` and ``path``."""

    index: int | None
    name: str
    path: Path


def default_cache_dir() -> Path:
    """``cache_dir("faces")``: $MIMIC_CACHE_DIR/faces, else ~/.cache/mimic/faces."""
    return cache_dir("faces")


def is_class_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith((".", "_")) and path.name.lower() not in NOT_CLASSES


def list_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` in name order (hidden and partly written ``.*`` files are left out)."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def scan_class_folders(root: Path | str, classes: Sequence[str] | None = None) -> list[ClassFolder]:
    """The class folders of ``root`` in class order, validated.

    ``<index>_<name>/`` folders must use the indices 0..n-1 once each and distinct names; a conflict is a `DataError`
    naming the folders. Plain ``<name>/`` folders are ordered as in ``classes`` (names it lacks go last,
    alphabetically). Mixing both kinds is an error.
    """
    root = Path(root)
    dirs = sorted(p for p in root.iterdir() if is_class_dir(p))
    if not dirs:
        raise DataError(
            f"{root}: no class folders found. Make one folder per class, e.g. {root}/0_happy/, "
            f"{root}/1_sad/ (scripts/capture_dataset.py --label happy does it for you)."
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
    folders = [
        ClassFolder(int(m.group(1)) if m else None, canonical(m.group(2) if m else p.name), p)
        for p, m in indexed.items()
    ]
    by_name: dict[str, list[str]] = {}
    for f in folders:
        by_name.setdefault(f.name, []).append(f.path.name)
    clashes = [names for names in by_name.values() if len(names) > 1]
    if clashes:
        raise DataError(
            f"{root}: these folders name the same class: "
            + "; ".join(" and ".join(c) for c in clashes)
            + ". Merge them into one folder."
        )
    if folders[0].index is None:
        order = [canonical(c) for c in classes] if classes else []
        if not order:
            log.info("%s: plain class folders without a class list: using alphabetical order", root)
        rank = {n: i for i, n in enumerate(order)}
        return sorted(folders, key=lambda f: (rank.get(f.name, len(rank)), f.name))
    by_index: dict[int, list[str]] = {}
    for f in folders:
        by_index.setdefault(f.index, []).append(f.path.name)
    dupes = {i: names for i, names in by_index.items() if len(names) > 1}
    if dupes:
        detail = "; ".join(f"{' and '.join(n)} both use index {i}" for i, n in sorted(dupes.items()))
        raise DataError(f"{root}: {detail}. Every class needs its own index 0..{len(folders) - 1}; rename a folder.")
    missing = sorted(set(range(len(folders))) - set(by_index))
    if missing:
        raise DataError(
            f"{root}: class indices must be 0..{len(folders) - 1}, each used once; index "
            f"{', '.join(map(str, missing))} is missing (folders: "
            f"{', '.join(f.path.name for f in sorted(folders, key=lambda f: f.index))}). Rename a folder."
        )
    return sorted(folders, key=lambda f: f.index)


def read_image(data: bytes) -> np.ndarray | None:
    """Encoded image bytes -> uint8 BGR (EXIF orientation applied), or None when OpenCV cannot decode them."""
    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img if img is not None and img.size else None


def write_image_atomic(path: Path, img: np.ndarray) -> None:
    """Encode ``img`` by ``path``'s suffix and move it into place in one step: never a half-written file."""
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise OSError(f"could not encode an image for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FolderSource:
    """Photos in class folders as a `Source` (see the module docstring for the layout).

    classes: class order for plain ``<name>/`` folders. detect_faces: True (always detect and crop), False (images
    are crops), "auto". detector: a detector name ("haar", "yunet"), a config mapping for
    `mimic.faces.make_detector`, or a detector object. crop_margin: as the model's
    ``preprocess.crop_margin``. cache_dir: where face crops are cached (None: the user cache, False: no cache).
    val_fraction / test_fraction: hold out that part of a pooled layout here, seeded by ``seed`` (val_fraction None:
    leave the validation split to the datamodule).
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        detect_faces: bool | str = "auto",
        detector: str | Mapping[str, Any] | object = "haar",
        cache_dir: str | Path | None | bool = None,
        name: str = "webcam",
        crop_margin: float = 0.1,
        val_fraction: float | None = None,
        test_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if detect_faces not in (True, False, "auto"):
            raise DataError(f"{name}: detect_faces must be true, false or auto, got {detect_faces!r}")
        self.root = Path(root).expanduser()
        self.name = name
        self.detect_faces = detect_faces
        if hasattr(detector, "detect"):  # a detector object (Hydra instantiates a mapping with _target_)
            self._detector = detector
            settings = {k: v for k, v in vars(detector).items() if isinstance(v, int | float | str | bool | tuple)}
            self.detector_spec = {"_target_": type(detector).__qualname__, **settings}
        else:
            self._detector = None
            self.detector_spec = detector if isinstance(detector, str) else dict(detector)
        self.margin = float(crop_margin)
        if cache_dir is None:
            self.cache_dir: Path | None = default_cache_dir()
        else:
            self.cache_dir = Path(cache_dir).expanduser() if cache_dir not in (False, "") else None
        self.val_fraction, self.test_fraction, self.seed = val_fraction, float(test_fraction), int(seed)
        self.requested = list(classes) if classes is not None else None
        if not self.root.is_dir():
            raise DataError(
                f"{name}: folder {self.root} not found. Capture photos into it with "
                f"`python scripts/capture_dataset.py --label happy --out {self.root}`, or point "
                f"data.sources.{name}.root at your class folders (<index>_<name>/ or <name>/ per class)."
            )
        self.split_dirs = {s: self.root / s for s in SPLITS if (self.root / s).is_dir()}
        if "train" not in self.split_dirs:
            self.split_dirs = {}
        self.folders = scan_class_folders(self.split_dirs.get("train", self.root), self.requested)
        self.class_names: tuple[str, ...] = tuple(validate_classes([f.name for f in self.folders], where=name))
        self.skipped: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"FolderSource(root={str(self.root)!r}, classes={list(self.class_names)}, name={self.name!r})"

    # ---- loading -----------------------------------------------------------------------------------------------
    def files(self) -> dict[str, list[tuple[Path, int]]]:
        """{split: [(file, label)]} before reading; a pooled layout is all ``train``."""
        if not self.split_dirs:
            return {"train": [(p, i) for i, f in enumerate(self.folders) for p in list_images(f.path)]}
        out = {}
        for split, d in self.split_dirs.items():
            folders = self.folders if split == "train" else scan_class_folders(d, self.class_names)
            unknown = [f.path.name for f in folders if f.name not in self.class_names]
            if unknown:
                raise DataError(
                    f"{d}: class folder(s) {unknown} have no counterpart in {self.split_dirs['train']} "
                    f"(classes {list(self.class_names)})."
                )
            out[split] = [(p, self.class_names.index(f.name)) for f in folders for p in list_images(f.path)]
        return out

    def load(self) -> dict[str, SplitData]:
        self.skipped = []
        seen: dict[str, tuple[str, int]] = {}
        duplicates, conflicts = 0, []
        out: dict[str, SplitData] = {}
        n_files = 0
        for split, files in self.files().items():
            images, labels, paths = [], [], []
            for path, label in files:
                n_files += 1
                try:
                    data = path.read_bytes()
                except OSError as e:
                    self.skipped.append((str(path), f"unreadable ({e.strerror or e})"))
                    continue
                digest = hashlib.sha1(data).hexdigest()
                if digest in seen:
                    duplicates += 1
                    first, first_label = seen[digest]
                    if first_label != label:
                        conflicts.append(f"{path} (also in {first})")
                    continue
                crop, why = self._face(data, digest)
                if crop is None:
                    self.skipped.append((str(path), why))
                    continue
                seen[digest] = (str(path), label)
                images.append(crop)
                labels.append(label)
                paths.append(str(path))
            out[split] = SplitData(images, np.asarray(labels, np.int64), paths, {"source": self.name})
        self._report(n_files, duplicates, conflicts)
        if not self.split_dirs and (self.test_fraction > 0 or self.val_fraction is not None):
            out = self._split(out["train"])
        return out

    def _split(self, pool: SplitData) -> dict[str, SplitData]:
        out = {}
        rest, held = stratified_split(pool.labels, self.test_fraction, self.seed)
        if self.test_fraction > 0:
            out["test"] = pool.subset(held)
        pool = pool.subset(rest)
        if self.val_fraction:
            frac = min(1.0, self.val_fraction / max(1e-9, 1.0 - self.test_fraction))
            rest, held = stratified_split(pool.labels, frac, self.seed + 1)
            out["val"] = pool.subset(held)
            pool = pool.subset(rest)
        out["train"] = pool
        return out

    def _report(self, n_files: int, duplicates: int, conflicts: list[str]) -> None:
        if self.skipped:
            listed = "\n  ".join(f"{p}: {why}" for p, why in self.skipped[:_MAX_LISTED])
            more = f"\n  ... and {len(self.skipped) - _MAX_LISTED} more" if len(self.skipped) > _MAX_LISTED else ""
            log.warning(
                "%s: skipped %d of %d files (unreadable, or no face found):\n  %s%s",
                self.name,
                len(self.skipped),
                n_files,
                listed,
                more,
            )
        if duplicates:
            log.info("%s: %d exact duplicate files kept once", self.name, duplicates)
        if conflicts:
            log.warning(
                "%s: %d photos appear in two different class folders; the first copy's class is kept: %s",
                self.name,
                len(conflicts),
                "; ".join(conflicts[:_MAX_LISTED]),
            )
        log.info(
            "%s: %d images from %s (%d skipped)",
            self.name,
            n_files - len(self.skipped) - duplicates,
            self.root,
            len(self.skipped),
        )

    # ---- face crops --------------------------------------------------------------------------------------------
    def _face(self, data: bytes, digest: str) -> tuple[np.ndarray | None, str]:
        """(crop, "") or (None, why). Cached by content hash and crop settings."""
        key = hashlib.sha1(
            json.dumps(
                [CACHE_VERSION, digest, self.detect_faces, self.detector_spec, self.margin], sort_keys=True, default=str
            ).encode()
        ).hexdigest()
        cached = self.cache_dir / key[:2] / f"{key}.png" if self.cache_dir else None
        if cached is not None:
            if cached.is_file():
                crop = cv2.imread(str(cached), cv2.IMREAD_UNCHANGED)
                if crop is not None:
                    return crop, ""
            if cached.with_suffix(".noface").is_file():
                return None, "no face found"
        img = read_image(data)
        if img is None:
            return None, "not an image OpenCV can read"
        crop = self._crop(img)
        if cached is not None and crop is not img:  # only detector results are worth caching
            try:
                if crop is None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.with_suffix(".noface").touch()
                else:
                    write_image_atomic(cached, crop)
            except OSError as e:
                log.warning("%s: cannot write the face cache in %s (%s); caching off", self.name, self.cache_dir, e)
                self.cache_dir = None
        return (crop, "") if crop is not None else (None, "no face found")

    def _crop(self, img: np.ndarray) -> np.ndarray | None:
        h, w = img.shape[:2]
        if self.detect_faces is False or (self.detect_faces == "auto" and max(h, w) <= CROP_MAX_SIDE):
            return img
        if self._detector is None:
            self._detector = make_detector(self.detector_spec)
        face = largest_face(self._detector.detect(img))
        if face is not None:
            return np.ascontiguousarray(crop_face(img, face.box, PreprocessSpec(crop_margin=self.margin)))
        if self.detect_faces == "auto" and 0.8 <= w / h <= 1.25:
            return img
        return None
