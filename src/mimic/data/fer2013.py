"""FER2013 as a data source: finding the user's copy, and its splits cached between runs.

``data.path`` is the Kaggle CSV (plain, gzipped or in its tar.gz) or the image-folder version; `locate` finds which
(`mimic.data.fer2013_files` reads both). The CSV's ``Usage`` gives ``train``/``val``/``test``; the image folders have no
``val``: the datamodule holds out part of ``train``. With ``labels="ferplus"`` the FER2013 images get the FER+ crowd
labels (`mimic.data.ferplus`).

The parsed arrays are cached as an uncompressed .npz keyed by the source file's path, size and mtime, so later runs
load in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mimic.data.base import DataError, SplitData
from mimic.data.fer2013_files import (
    FOLDER_SPLITS,
    SPLIT_NAMES,
    WHERE_TO_GET,
    list_folders,
    read_csv,
    read_folders,
    split_dir,
)
from mimic.data.ferplus import ferplus_splits, find_ferplus, read_votes, usage_codes, vote_targets
from mimic.io import atomic_write
from mimic.io import cache_dir as user_cache_dir
from mimic.labels import FER2013_CLASSES, FERPLUS_CLASSES

log = logging.getLogger(__name__)

CSV_NAMES = ("fer2013.csv", "fer2013.csv.gz", "fer2013.tar.gz")
CACHE_VERSION = 1


class FER2013Source:
    """FER2013 images with FER2013 labels (``labels="fer2013"``, 7 classes) or FER+ labels (``"ferplus"``, 8).

    ``path`` is ``fer2013.csv``, ``fer2013.csv.gz``, ``fer2013.tar.gz``, a directory holding one of those (or a
    ``fer2013/`` folder with it), or a directory in the image-folder layout. ``ferplus_path`` is fer2013new.csv; when
    left out it is looked for beside the CSV and in ``../ferplus/``.

    ``ferplus_votes`` (0 to 1, FER2013 labels and the CSV only): the training split's targets become soft, FER+'s
    ten votes per face beside FER2013's label, weighted so (`mimic.data.ferplus.vote_targets`: contempt, unknown and
    NF votes left out; 1 puts the votes in place of the label), and the training faces FER+ calls not a face are
    dropped. Validation and test keep FER2013's labels, so their figures stay comparable with every other run.
    """

    def __init__(
        self,
        path: str | Path,
        labels: str = "fer2013",
        ferplus_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        name: str = "fer2013",
        ferplus_votes: float = 0.0,
    ) -> None:
        if labels not in ("fer2013", "ferplus"):
            raise DataError(f"FER2013Source: labels={labels!r}; use 'fer2013' (7 classes) or 'ferplus' (8 classes).")
        if isinstance(ferplus_votes, bool) or not isinstance(ferplus_votes, int | float) or not 0 <= ferplus_votes <= 1:
            raise DataError(
                f"data.sources.{name}.ferplus_votes={ferplus_votes!r}: give a number from 0 (FER2013's labels only) to "
                f"1 (FER+'s votes in place of them)."
            )
        if ferplus_votes and labels == "ferplus":
            raise DataError(
                f"data.sources.{name}: ferplus_votes mixes FER+'s votes into FER2013's labels; with labels=ferplus the "
                f"labels are FER+'s already. Set ferplus_votes=0 or labels=fer2013."
            )
        self.ferplus_votes = float(ferplus_votes)
        self.path = Path(path).expanduser()
        self.labels = labels
        self.ferplus_path = Path(ferplus_path).expanduser() if ferplus_path is not None else None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else user_cache_dir("fer2013")
        self.name = name
        self.class_names: tuple[str, ...] = FERPLUS_CLASSES if labels == "ferplus" else FER2013_CLASSES

    def __repr__(self) -> str:
        return f"FER2013Source(path={str(self.path)!r}, labels={self.labels!r}, name={self.name!r})"

    def load(self) -> dict[str, SplitData]:
        """Splits ``train``/``val``/``test`` (CSV) or ``train``/``test`` (image folders); parsed once, then cached."""
        kind, found = locate(self.path)
        if kind == "folders":
            if self.labels == "ferplus" or self.ferplus_votes:
                raise DataError(
                    f"{found}: FER+ labels need the FER2013 CSV (they map onto its rows by order), not the image "
                    f"folders; set data.path to fer2013.csv, or use labels=fer2013 and ferplus_votes=0."
                )
            files = list_folders(found)
            stats = [(str(f), *_stat(f)) for _, _, f in files]
            arrays = _cached(self.cache_dir, "folders", found, stats, lambda: read_folders(files))
            origin = str(found)
            paths = {s: arrays[f"{s}_paths"].tolist() for s in FOLDER_SPLITS if f"{s}_paths" in arrays}
        else:
            arrays = _cached(self.cache_dir, "csv", found, list(_stat(found)), lambda: read_csv(found))
            origin = str(arrays["origin"])
            if self.labels == "ferplus":
                return ferplus_splits(arrays, find_ferplus(found, self.ferplus_path), origin, self.name)
            paths = {s: [f"{origin}:{line}" for line in arrays[f"{s}_lines"].tolist()] for s in SPLIT_NAMES}
        meta = {"source": self.name, "origin": origin, "dropped": {}}
        # a CSV without PublicTest rows has no val split: the datamodule makes one
        out = {s: SplitData(arrays[f"{s}_images"], arrays[f"{s}_labels"], p, meta) for s, p in paths.items() if p}
        if self.ferplus_votes and "train" in out:
            out["train"] = self._with_votes(out["train"], arrays, find_ferplus(found, self.ferplus_path), origin)
        return out

    def _with_votes(self, train: SplitData, arrays: dict, path: Path, origin: str) -> SplitData:
        votes, named = read_votes(path, usage_codes(arrays), origin)
        index = arrays["train_index"]
        targets, keep = vote_targets(votes[index], named[index], train.labels, self.class_names, self.ferplus_votes)
        log.info(
            "%s train: FER+ votes as soft targets (weight %g, %s); %d of %d rows dropped as not a face",
            self.name,
            self.ferplus_votes,
            path,
            int((~keep).sum()),
            len(keep),
        )
        kept = np.flatnonzero(keep)
        out = train.subset(kept)
        out.targets = targets[kept]
        out.meta["labels_from"] = f"FER2013 labels with FER+ votes (weight {self.ferplus_votes:g}) from {path}"
        out.meta["dropped"] = {"not_a_face": int((~keep).sum())}
        return out


# --------------------------------------------------------------------------------------------------- finding the data


def locate(path: str | Path) -> tuple[str, Path]:
    """``("csv", file)`` or ``("folders", dir)`` for a user's ``data.path``; a DataError listing all tries if absent."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() == ".zip":
            raise DataError(
                f"{p}: a .zip is not read directly; unzip it and set data.path to the fer2013.tar.gz or fer2013.csv "
                f"inside (or to the unzipped image folder)."
            )
        return "csv", p
    base = p if p.is_dir() else p.parent
    tried: list[str] = [] if p.is_dir() else [str(p.absolute())]
    for d in (base, base / "fer2013"):
        for name in CSV_NAMES:
            if (d / name).is_file():
                return "csv", d / name
            tried.append(str((d / name).absolute()))
    if base.is_dir() and any(split_dir(base, s) for s in FOLDER_SPLITS):
        return "folders", base
    tried.append(f"{(base / 'train').absolute()}/<class>/*.jpg and {(base / 'test').absolute()}/<class>/*.jpg")
    looked = "\n".join(f"  {t}" for t in dict.fromkeys(tried))
    raise DataError(f"FER2013 not found at data.path={str(path)!r}. Looked for:\n{looked}\n{WHERE_TO_GET}")


def found(path: str | Path) -> bool:
    """Whether `locate` finds FER2013 at ``path``."""
    try:
        locate(path)
    except DataError:
        return False
    return True


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


# ------------------------------------------------------------------------------------------------------------- cache


def _cached(
    cache_dir: Path, kind: str, source: Path, state: list, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Arrays of ``build()``, from ``cache_dir`` when ``source`` is unchanged (same path, size and mtime).

    A cache file that cannot be read is rebuilt; one that cannot be written only costs a warning.
    """
    resolved = str(source.resolve())
    key = hashlib.sha256(json.dumps([CACHE_VERSION, kind, resolved, state]).encode()).hexdigest()
    stem = f"{kind}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"
    file = cache_dir / f"{stem}-{key[:16]}.npz"
    if file.is_file():
        try:
            with open(file, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if str(arrays.pop("cache_key")) == key:
                log.debug("FER2013 from cache %s", file)
                return arrays
        except Exception as e:  # noqa: BLE001 -- any unreadable cache (truncated, not a zip, bad keys) is rebuilt
            log.warning("FER2013 cache %s is unreadable (%s); rebuilding it", file, e)
    start = time.perf_counter()
    arrays = build()
    log.info("parsed %s in %.1f s", source, time.perf_counter() - start)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, cache_key=np.array(key), **arrays)

    try:
        atomic_write(file, save)
        for old in cache_dir.glob(f"{stem}-*.npz"):
            if old != file:
                old.unlink(missing_ok=True)
    except OSError as e:
        log.warning("could not write the FER2013 cache in %s (%s); the next run parses again", cache_dir, e)
    return arrays
