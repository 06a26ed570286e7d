"""Class folders as a data source: your own photos, one folder per class, for fine-tuning (`FolderSource`).

Layout: ``root/<index>_<name>/`` (``0_happy/ 1_sad/ 2_neutral/``) gives the class order explicitly; plain
``root/<name>/`` folders take their order from ``classes`` (alphabetical without it). ``root/{train,val,test}/<class>/``
gives the splits explicitly; otherwise the photos are one pool, split by a seeded stratified draw (here with
``val_fraction`` / ``test_fraction``, else by the datamodule). Folders named ``unsorted`` or starting with ``.`` or
``_`` are not classes (the capture script's ``unsorted/`` waits there for review).

Photos may have any size and any format in `mimic.io.IMAGE_SUFFIXES`. A photo that is not a face crop is cropped at
load time with the realtime app's detector and crop (`mimic.data.face_crops`); crops are cached by content hash and the
detector's config (`FaceDetector.config`: its settings and model file's sha256).
``detect_faces``: ``"auto"`` takes small images (at most 160 px) as crops already and detects faces in the rest; true
detects in every image; false uses every image whole (a folder of face crops). Nothing is dropped quietly: photos with
no face or that do not decode, files mimic does not read, empty class folders and classes outside ``classes`` are
each named in a warning with the fix, and a source left with no images is a `DataError`. Exact duplicates (same
bytes) are kept once, so the same photo never lands in two splits.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimic.data.base import SPLITS, DataError, SplitData, stratified_split
from mimic.data.class_folders import ClassFolder, list_files, scan_class_folders
from mimic.data.face_crops import FaceCrops
from mimic.faces import FaceDetector
from mimic.io import IMAGE_SUFFIXES
from mimic.labels import KNOWN_CLASSES, validate_classes
from mimic.preprocessing import PreprocessSpec

log = logging.getLogger(__name__)

_MAX_LISTED = 20


class FolderSource:
    """Photos in class folders as a `Source` (see the module docstring for the layout).

    classes: the run's class names; orders plain ``<name>/`` folders, and folders of other classes are named in a
    warning (the datamodule leaves them out). detect_faces: True (always detect and crop), False (images are face
    crops), "auto". detector: the name of a config in conf/detector/ ("haar", "yunet"), such a config, or a detector
    object (Hydra builds one from a composed config). preprocess: the model's preprocess spec, whose framing cuts
    the faces out (`mimic.preprocessing.crop_face`; None: today's box crop with a 0.1 margin).
    cache_dir: where face crops are cached (None: the user cache, False: no cache). val_fraction / test_fraction: hold
    out that part of a pooled layout here, seeded by ``seed`` (val_fraction None: leave the validation split to the
    datamodule).
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        detect_faces: bool | str = "auto",
        detector: str | Mapping[str, Any] | FaceDetector = "yunet",
        cache_dir: str | Path | None | bool = None,
        name: str = "webcam",
        preprocess: Mapping[str, Any] | PreprocessSpec | None = None,
        val_fraction: float | None = None,
        test_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if detect_faces not in (True, False, "auto"):
            raise DataError(f"{name}: detect_faces must be true, false or auto, got {detect_faces!r}")
        self.root = Path(root).expanduser()
        self.name = name
        self.detect_faces = detect_faces
        self.spec = PreprocessSpec.from_dict(preprocess or {})
        self.faces = FaceCrops(self.spec, detector, cache_dir, name)
        self.mode = {True: "detect", False: "whole", "auto": "auto"}[detect_faces]
        self.val_fraction, self.test_fraction, self.seed = val_fraction, float(test_fraction), int(seed)
        self.requested = validate_classes(classes, where=f"{name}.classes") if classes is not None else None
        if not self.root.is_dir():
            raise DataError(
                f"{name}: folder {self.root} not found. Capture photos into it with "
                f"`python scripts/capture_dataset.py label=happy out={self.root}`, or point "
                f"data.sources.{name}.root at your class folders (<index>_<name>/ or <name>/ per class)."
            )
        self.split_dirs = {s: self.root / s for s in SPLITS if (self.root / s).is_dir()}
        if "train" not in self.split_dirs:
            self.split_dirs = {}
        self.folders = scan_class_folders(self.split_dirs.get("train", self.root), self.requested)
        self.class_names: tuple[str, ...] = tuple(validate_classes([f.name for f in self.folders], where=name))

    @property
    def detector(self) -> FaceDetector:
        """The detector that finds the faces in photos (loaded on first use, set to scan every photo in full)."""
        return self.faces.detector

    def __repr__(self) -> str:
        return f"FolderSource(root={str(self.root)!r}, classes={list(self.class_names)}, name={self.name!r})"

    # ---- loading -----------------------------------------------------------------------------------------------
    def files(self) -> dict[str, list[tuple[Path, int]]]:
        """{split: [(file, label)]} before reading; a pooled layout is all ``train``. Sets ``unused`` (files under
        root that are not read, and why) and ``scanned`` (the class folders of every split)."""
        self.unused: list[tuple[Path, str]] = []
        self.scanned: list[ClassFolder] = []
        out: dict[str, list[tuple[Path, int]]] = {}
        for split, d in self.split_dirs.items() or [("train", self.root)]:
            folders = self.folders if split == "train" else scan_class_folders(d, self.class_names)
            unknown = [f.path.name for f in folders if f.name not in self.class_names]
            if unknown:
                raise DataError(
                    f"{d}: class folder(s) {unknown} have no counterpart in {self.split_dirs['train']} "
                    f"(classes {list(self.class_names)})."
                )
            loose = [p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")]
            self.unused += [(p, "not in a class folder") for p in sorted(loose)]
            out[split] = []
            self.scanned += folders
            for f in folders:
                images, others = list_files(f.path)
                out[split] += [(p, self.class_names.index(f.name)) for p in images]
                self.unused += [(p, "a folder inside a class folder" if p.is_dir() else "not an image") for p in others]
        return out

    def load(self) -> dict[str, SplitData]:
        self.skipped: list[tuple[str, str]] = []  # (file, why)
        seen: dict[str, tuple[str, int]] = {}
        duplicates, conflicts = 0, []
        out: dict[str, SplitData] = {}
        listed: dict[Path, int] = {}  # class folder -> image files in it
        kept: dict[Path, int] = {}
        for split, files in self.files().items():
            images, labels, paths = [], [], []
            for path, label in files:
                listed[path.parent] = listed.get(path.parent, 0) + 1
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
                crop, why = self.faces.crop(data, digest, self.mode)
                if crop is None:
                    self.skipped.append((str(path), why))
                    continue
                seen[digest] = (str(path), label)
                kept[path.parent] = kept.get(path.parent, 0) + 1
                images.append(crop)
                labels.append(label)
                paths.append(str(path))
            out[split] = SplitData(images, np.asarray(labels, np.int64), paths, {"source": self.name})
        self._report(sum(listed.values()), duplicates, conflicts)
        self._check_classes(listed, kept)
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
            hint = ""
            if any(why == "no face found" for _, why in self.skipped):
                hint = (
                    f"\n  If these photos are face crops already, set data.sources.{self.name}.detect_faces=false "
                    "to use every photo whole."
                )
            log.warning(
                f"{self.name}: skipped {len(self.skipped)} of {n_files} photos (unreadable, or no face found):"
                f"{_listing(self.skipped)}{hint}"
            )
        if self.unused:
            log.warning(
                f"{self.name}: {len(self.unused)} files under {self.root} are not read:{_listing(self.unused)}\n  "
                f"mimic reads {' '.join(IMAGE_SUFFIXES)} files in class folders (<index>_<name>/); convert or move "
                "these."
            )
        if duplicates:
            log.info("%s: %d exact duplicate files kept once", self.name, duplicates)
        if conflicts:
            log.warning(
                f"{self.name}: {len(conflicts)} photos appear in two different class folders; the first copy's class "
                f"is kept: {'; '.join(conflicts[:_MAX_LISTED])}"
            )
        n_read = n_files - len(self.skipped) - duplicates
        log.info("%s: %d images from %s (%d skipped)", self.name, n_read, self.root, len(self.skipped))

    def _check_classes(self, listed: dict[Path, int], kept: dict[Path, int]) -> None:
        """Warn about class folders that give no images and classes the run does not use; a `DataError` when no
        image is left for the run."""
        folders = self.scanned
        why = lambda n: f"all {n} photos skipped" if n else "no image files"
        empty = [f"{_rel(f.path, self.root)}/ ({why(listed.get(f.path))})" for f in folders if not kept.get(f.path)]
        if empty:
            log.warning(
                f"{self.name}: {len(empty)} class folder(s) give no images: {', '.join(empty)}. Add photos (`python "
                f"scripts/capture_dataset.py label=<class> out={self.root}`) or remove them."
            )
        wanted = self.requested if self.requested is not None else KNOWN_CLASSES
        unused = [f for f in folders if f.name not in wanted and kept.get(f.path)]
        if unused:
            run = self.requested is not None
            why = (
                f"not used, their class is not among the run's classes {list(wanted)}"
                if run
                else "no emotion mimic knows, so a run uses them only if data.classes names their class"
            )
            listing = ", ".join(f"{_rel(f.path, self.root)}/ ({kept[f.path]})" for f in unused)
            guesses = {f.name: difflib.get_close_matches(f.name, wanted, 1, cutoff=0.5) for f in unused}
            log.warning(
                f"{self.name}: {sum(kept[f.path] for f in unused)} photos in {listing}: {why}. Name each class folder "
                f"<index>_<class> with a class from {'that list' if run else ', '.join(wanted)} (e.g. 0_{wanted[0]}/), "
                "or add the class to data.classes."
                + "".join(f" {n!r} looks like {g[0]!r}." for n, g in guesses.items() if g)
            )
        total = sum(kept.values())
        usable = total if self.requested is None else sum(kept.get(f.path, 0) for f in folders if f.name in wanted)
        if not usable:
            what = "no usable images" if not total else f"no images of the classes {list(wanted)}"
            raise DataError(
                f"{self.name}: {self.root} holds {what} ({sum(listed.values())} image files, {len(self.skipped)} "
                f"skipped; class folders: {', '.join(f.path.name for f in self.folders)}). Put face photos in one "
                f"folder per class, named <index>_<name> after data.classes (e.g. {self.root}/0_happy/); "
                f"`python scripts/capture_dataset.py label=happy out={self.root}` makes them."
            )


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _listing(items: Sequence[tuple[Any, str]]) -> str:
    """``items`` as indented ``path: why`` lines, at most `_MAX_LISTED` of them."""
    lines = "".join(f"\n  {p}: {why}" for p, why in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return lines + (f"\n  ... and {more} more" if more > 0 else "")
