"""FER2013 as a data source: the Kaggle CSV (plain, gzipped or in its tar.gz), or the image-folder layout.

The CSV (``emotion,pixels,Usage``, 48x48 gray faces as 2,304 space-separated numbers) is split by ``Usage``:
Training -> ``train``, PublicTest -> ``val``, PrivateTest -> ``test``. The image-folder layout (``train/<class>/*.jpg``,
``test/<class>/*.jpg``) has no ``val``: the datamodule holds out part of ``train``. With ``labels="ferplus"`` the
FER2013 images get the FER+ crowd labels (fer2013new.csv, same row order) by majority vote.

Parsing the 301 MB CSV takes seconds (numpy's C text parser per row, while a second thread reads and decompresses);
the parsed arrays are cached as an uncompressed .npz keyed by the source file's path, size and mtime, so later runs
load in well under a second.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import queue
import tarfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import cv2
import numpy as np

from mimic.data.base import DataError, SplitData
from mimic.io import IMAGE_SUFFIXES, atomic_write
from mimic.io import cache_dir as user_cache_dir
from mimic.labels import FER2013_CLASSES, FERPLUS_CLASSES, canonical

log = logging.getLogger(__name__)

SIZE = 48
N_PIXELS = SIZE * SIZE
USAGES = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_SPLITS = ("train", "test")
CSV_NAMES = ("fer2013.csv", "fer2013.csv.gz", "fer2013.tar.gz")
FERPLUS_NAME = "fer2013new.csv"
CACHE_VERSION = 1

WHERE_TO_GET = (
    "Get FER2013 from Kaggle: the competition 'challenges-in-representation-learning-facial-expression-recognition-"
    "challenge' (fer2013.tar.gz, holding fer2013/fer2013.csv), or the image-folder version 'msambare/fer2013' "
    "(train/<class>/*.jpg, test/<class>/*.jpg). Then point the run at it with the Hydra override "
    "data.path=/path/to/fer2013.csv (a .csv.gz, the .tar.gz or the image folder work too)."
)

_SPLIT_CODES = {name.encode(): i for i, name in enumerate(USAGES)}  # b"Training" -> 0, in the order of SPLITS
_SPLIT_NAMES = tuple(USAGES.values())
_EMOTION_CODES = {str(i).encode(): i for i in range(len(FER2013_CLASSES))}
_BLOCK = 4 << 20  # bytes per read; keeps the per-block int64 pixel buffer small
_MAX_PROBLEMS = 10


class FER2013Source:
    """FER2013 images with FER2013 labels (``labels="fer2013"``, 7 classes) or FER+ labels (``"ferplus"``, 8).

    ``path`` is ``fer2013.csv``, ``fer2013.csv.gz``, ``fer2013.tar.gz``, a directory holding one of those (or a
    ``fer2013/`` folder with it), or a directory in the image-folder layout. ``ferplus_path`` is fer2013new.csv; when
    left out it is looked for beside the CSV and in ``../ferplus/``.
    """

    def __init__(
        self,
        path: str | Path,
        labels: str = "fer2013",
        ferplus_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        name: str = "fer2013",
    ) -> None:
        if labels not in ("fer2013", "ferplus"):
            raise DataError(f"FER2013Source: labels={labels!r}; use 'fer2013' (7 classes) or 'ferplus' (8 classes).")
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
            if self.labels == "ferplus":
                raise DataError(
                    f"{found}: FER+ labels need the FER2013 CSV (they map onto its rows by order), not the image "
                    f"folders; set data.path to fer2013.csv or use labels=fer2013."
                )
            files = _list_folders(found)
            stats = [(str(f), *_stat(f)) for _, _, f in files]
            arrays = _cached(self.cache_dir, "folders", found, stats, lambda: _read_folders(files))
            origin = str(found)
            paths = {s: arrays[f"{s}_paths"].tolist() for s in FOLDER_SPLITS if f"{s}_paths" in arrays}
        else:
            arrays = _cached(self.cache_dir, "csv", found, list(_stat(found)), lambda: read_csv(found))
            origin = str(arrays["origin"])
            if self.labels == "ferplus":
                return self._ferplus_splits(found, arrays, origin)
            paths = {s: [f"{origin}:{line}" for line in arrays[f"{s}_lines"].tolist()] for s in _SPLIT_NAMES}
        meta = {"source": self.name, "origin": origin, "dropped": {}}
        # a CSV without PublicTest rows has no val split: the datamodule makes one
        return {s: SplitData(arrays[f"{s}_images"], arrays[f"{s}_labels"], p, meta) for s, p in paths.items() if p}

    def _ferplus_splits(self, csv_path: Path, arrays: dict[str, np.ndarray], origin: str) -> dict[str, SplitData]:
        fp = self._find_ferplus(csv_path)
        n_rows = sum(len(arrays[f"{s}_index"]) for s in _SPLIT_NAMES)
        usage = np.empty(n_rows, np.int8)
        for code, split in enumerate(_SPLIT_NAMES):
            usage[arrays[f"{split}_index"]] = code
        labels, reasons = read_ferplus(fp, usage, origin)
        out = {}
        for split in _SPLIT_NAMES:
            index = arrays[f"{split}_index"]
            why = reasons[index]
            keep = np.flatnonzero(why == "")
            dropped = {str(r): int(n) for r, n in zip(*np.unique(why[why != ""], return_counts=True), strict=True)}
            lines = arrays[f"{split}_lines"][keep].tolist()
            out[split] = SplitData(
                arrays[f"{split}_images"][keep],
                labels[index[keep]],
                [f"{origin}:{line}" for line in lines],
                {"source": self.name, "origin": origin, "labels_from": str(fp), "dropped": dropped},
            )
            if dropped:
                log.info("%s %s: FER+ dropped %s of %d rows", self.name, split, dropped, len(index))
        return {split: data for split, data in out.items() if len(data)}

    def _find_ferplus(self, csv_path: Path) -> Path:
        if self.ferplus_path is not None:
            tried = [self.ferplus_path, self.ferplus_path / FERPLUS_NAME]
        else:
            tried = [csv_path.parent / FERPLUS_NAME, csv_path.parent.parent / "ferplus" / FERPLUS_NAME]
        for p in tried:
            if p.is_file():
                return p
        looked = "\n".join(f"  {p.absolute()}" for p in tried)
        raise DataError(
            f"FER+ labels (fer2013new.csv) not found. Looked for:\n{looked}\n"
            f"Get fer2013new.csv from https://github.com/microsoft/FERPlus and set "
            f"data.ferplus_path=/path/to/fer2013new.csv."
        )


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
    if base.is_dir() and any(_split_dir(base, s) for s in FOLDER_SPLITS):
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


def _split_dir(root: Path, split: str) -> Path | None:
    """``root/<split>`` matched case-insensitively (``Train`` works too)."""
    if (root / split).is_dir():
        return root / split
    for d in root.iterdir():
        if d.is_dir() and d.name.lower() == split:
            return d
    return None


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


# --------------------------------------------------------------------------------------------------------- the CSV


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Parse fer2013.csv (plain, .gz or inside a tar) into arrays, without any cache.

    Keys, per split ``s`` in train/val/test: ``s_images`` uint8 (N, 48, 48), ``s_labels`` int64, ``s_lines`` (1-based
    line numbers in the file, the header being line 1), ``s_index`` (0-based data-row numbers); and ``origin``.
    A malformed row is a DataError naming the file, its line number and what is wrong.
    """
    path = Path(path).absolute()
    with closing(_read_in_background(path)) as items:
        parser = _CsvParser(next(items))  # the origin comes first
        for block in items:
            parser.feed(block)
    return parser.finish()


@contextmanager
def _open_csv(path: Path) -> Iterator[tuple[BinaryIO, str]]:
    """A binary stream of the CSV text and its name for messages (``archive:member`` for a tar)."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        member = _tar_member(path)
        with tarfile.open(path, "r|*") as tf:
            for m in tf:
                if m.name == member:
                    yield tf.extractfile(m), f"{path}:{m.name}"
                    return
        raise DataError(f"{path}: member {member} vanished while reading")  # pragma: no cover
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
        yield f, str(path)


def _tar_member(path: Path) -> str:
    """The CSV member of a tar: ``*/fer2013.csv``, else the only ``*.csv``."""
    csvs = []
    with tarfile.open(path, "r|*") as tf:
        for m in tf:
            if m.isfile() and m.name.lower().endswith(".csv"):
                if PurePosixPath(m.name).name.lower() == "fer2013.csv":
                    return m.name
                csvs.append(m.name)
    if len(csvs) == 1:
        return csvs[0]
    raise DataError(
        f"{path}: expected a member named fer2013.csv in the archive, found "
        f"{'the CSV files ' + ', '.join(csvs) if csvs else 'no .csv file'}. {WHERE_TO_GET}"
    )


def _read_in_background(path: Path) -> Iterator[str | bytes]:
    """The origin string, then raw blocks of the file; read and decompressed by a thread so parsing overlaps it."""
    q: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with _open_csv(path) as (f, origin):
                if put(origin):
                    while (block := f.read(_BLOCK)) and put(block):
                        pass
        except Exception as e:  # noqa: BLE001 -- handed to the consuming thread, which raises it
            put(e)
        finally:
            put(None)

    thread = threading.Thread(target=produce, name="fer2013-reader", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not None:
            if isinstance(item, (OSError, EOFError, zlib.error, tarfile.TarError)):
                raise DataError(
                    f"{path}: cannot read it ({type(item).__name__}: {item}); the file is damaged or truncated, "
                    f"download it again. {WHERE_TO_GET}"
                ) from item
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class _CsvParser:
    """Incremental parser of FER2013 CSV text: each row's pixel field goes through numpy's C parser in one call."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.tail = b""
        self.next_line = 1  # 1-based line number of the next line to parse
        self.columns: list[str] | None = None
        self.col = (0, 1, 2)  # positions of emotion, pixels, Usage; set from the header
        self.n_rows = 0
        self.parts: dict[str, list[tuple[np.ndarray, ...]]] = {split: [] for split in _SPLIT_NAMES}
        self.problems: list[tuple[int, bytes]] = []

    def feed(self, block: bytes) -> None:
        if b'"' in block:
            block = block.replace(b'"', b"")  # quoted fields: no field of this format holds a comma
        lines = block.split(b"\n")
        lines[0] = self.tail + lines[0]
        self.tail = lines.pop()
        self._parse(lines)

    def finish(self) -> dict[str, np.ndarray]:
        if self.tail:
            self._parse([self.tail])
        self._raise_problems()
        if self.columns is None:
            raise DataError(f"{self.origin}: the file is empty; expected the header 'emotion,pixels,Usage'.")
        if not self.n_rows:
            raise DataError(f"{self.origin}: the header is there but there are no data rows.")
        arrays: dict[str, np.ndarray] = {"origin": np.array(self.origin)}
        for split, parts in self.parts.items():
            images, labels, lines, index = (np.concatenate(p) for p in zip(*parts, strict=True))
            arrays[f"{split}_images"] = images.reshape(-1, SIZE, SIZE)
            arrays[f"{split}_labels"] = labels.astype(np.int64)
            arrays[f"{split}_lines"] = lines
            arrays[f"{split}_index"] = index
        return arrays

    def _header(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").lstrip("\ufeff").strip()
        names = [c.strip().lower() for c in text.split(",")]
        missing = [c for c in ("emotion", "pixels", "usage") if c not in names]
        if missing:
            raise DataError(
                f"{self.origin}: line 1 must be the header 'emotion,pixels,Usage', found {text[:80]!r} "
                f"(missing column(s): {', '.join(missing)}). Is this the FER2013 CSV? {WHERE_TO_GET}"
            )
        self.columns = names
        self.col = (names.index("emotion"), names.index("pixels"), names.index("usage"))

    def _parse(self, lines: list[bytes]) -> None:
        first = self.next_line
        self.next_line += len(lines)
        if self.columns is None and lines:
            self._header(lines[0].rstrip(b"\r"))
            lines, first = lines[1:], first + 1
        if not lines:
            return
        n_cols = len(self.columns)
        ie, ip, iu = self.col
        pixels = np.empty((len(lines), N_PIXELS), np.int64)
        emotion = np.empty(len(lines), np.int8)
        usage = np.empty(len(lines), np.int8)
        numbers = np.empty(len(lines), np.int32)
        fromstring, emotions, splits = np.fromstring, _EMOTION_CODES, _SPLIT_CODES
        k = 0
        for j, line in enumerate(lines):
            fields = line.split(b",")
            try:
                if len(fields) != n_cols:
                    raise ValueError
                emotion[k] = emotions[fields[ie].strip()]
                usage[k] = splits[fields[iu].strip()]
                values = fromstring(fields[ip], dtype=np.int64, sep=" ")  # ValueError on non-numbers
                if values.size != N_PIXELS:
                    raise ValueError
                pixels[k] = values
            except (KeyError, ValueError):
                if not line.strip():  # blank line, e.g. at the end of the file
                    continue
                self._problem(first + j, line)
                continue
            numbers[k] = first + j
            k += 1
        pixels, emotion, usage, numbers = pixels[:k], emotion[:k], usage[:k], numbers[:k]
        out_of_range = (pixels.min(axis=1) < 0) | (pixels.max(axis=1) > 255)
        for r in np.flatnonzero(out_of_range):
            self._problem(int(numbers[r]), lines[numbers[r] - first])
        if self.problems:
            return
        pixels = pixels.astype(np.uint8)
        index = np.arange(self.n_rows, self.n_rows + k, dtype=np.int32)
        self.n_rows += k
        for code, split in enumerate(_SPLIT_NAMES):
            rows = usage == code
            self.parts[split].append((pixels[rows], emotion[rows], numbers[rows], index[rows]))

    def _problem(self, line_number: int, line: bytes) -> None:
        self.problems.append((line_number, line))
        if len(self.problems) >= _MAX_PROBLEMS:
            self._raise_problems(stopped=True)

    def _raise_problems(self, stopped: bool = False) -> None:
        if not self.problems:
            return
        listing = "\n".join(f"  line {n}: {describe_row(line, self.columns)}" for n, line in self.problems)
        more = f"\n  (stopped after the first {_MAX_PROBLEMS} problems)" if stopped else ""
        raise DataError(
            f"{self.origin}: malformed FER2013 CSV (line numbers count the file's lines from 1, the header is "
            f"line 1):\n{listing}{more}\nFix these rows or download the file again."
        )


def describe_row(line: bytes, columns: list[str]) -> str:
    """What is wrong with one data row of the CSV (the fast parser only says *that* something is)."""
    text = line.decode("utf-8", "replace").replace('"', "").strip()
    fields = text.split(",")
    if len(fields) != len(columns):
        return f"{len(fields)} comma-separated field(s), expected {len(columns)} ({','.join(columns)})"
    named = dict(zip(columns, fields, strict=True))
    emotion, usage = named["emotion"].strip(), named["usage"].strip()
    if emotion.encode() not in _EMOTION_CODES:
        return f"emotion label {emotion!r} is not one of 0..{len(FER2013_CLASSES) - 1}"
    if usage not in USAGES:
        return f"unknown Usage {usage!r}; expected one of {', '.join(USAGES)}"
    tokens = named["pixels"].split()
    for i, tok in enumerate(tokens, start=1):
        if not (tok.isascii() and tok.isdigit()):
            return f"pixel {i} is {tok[:20]!r}, not a number 0..255"
        if int(tok) > 255:
            return f"pixel {i} is {tok[:20]}, out of range 0..255"
    if len(tokens) != N_PIXELS:
        return f"{len(tokens)} pixel values, expected {N_PIXELS} (48x48)"
    return "could not be parsed"


# -------------------------------------------------------------------------------------------------------------- FER+


def read_ferplus(path: Path, usage: np.ndarray, fer_origin: str = "fer2013.csv") -> tuple[np.ndarray, np.ndarray]:
    """FER+ majority labels for the FER2013 rows (indices into ``FERPLUS_CLASSES``) and per row why it is dropped.

    Rule: plurality over the 10 vote columns (8 emotions, unknown, NF). A row is dropped as ``not_a_face`` (empty
    image name), ``tie`` (the top count is shared by two or more columns), ``unknown`` or ``nf`` (that column wins
    alone); the reason is "" for a kept row. ``usage`` (codes 0 train, 1 val, 2 test per FER2013 row) checks that the
    two files list the same rows in the same order.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if r]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read the FER+ labels ({e}).") from e
    if not rows:
        raise DataError(f"{path}: empty file; expected the FER+ header 'Usage,Image name,neutral,...,unknown,NF'.")
    header = [canonical(c) for c in rows[0][1]]
    wanted = ["usage", "image name", *FERPLUS_CLASSES, "unknown", "nf"]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}: the FER+ header lacks column(s) {missing}; found {rows[0][1]}.")
    rows = rows[1:]
    if len(rows) != len(usage):
        raise DataError(
            f"{path} has {len(rows)} rows but {fer_origin} has {len(usage)}; FER+ labels map onto FER2013 rows by "
            f"order, so both files must be the complete originals."
        )
    i_usage, i_name, *i_votes = (header.index(c) for c in wanted)
    try:
        votes = np.loadtxt(
            path, np.int64, delimiter=",", skiprows=1, usecols=i_votes, ndmin=2, encoding="utf-8-sig", quotechar='"'
        )
        if len(votes) != len(rows):
            raise ValueError(f"{len(votes)} vote rows for {len(rows)} rows")
    except ValueError as e:
        line, r = next(
            ((n, r) for n, r in rows if len(r) != len(header) or not all(r[c].strip().isdigit() for c in i_votes)),
            ("?", e),
        )
        raise DataError(f"{path}: line {line}: expected {len(i_votes)} whole vote counts, found {r}.") from e
    fp_usage = np.array([_SPLIT_CODES.get(r[i_usage].strip().encode(), -1) for _, r in rows])
    mismatch = np.flatnonzero(fp_usage != usage)
    if len(mismatch):
        i = int(mismatch[0])
        raise DataError(
            f"{path}: line {rows[i][0]} says Usage {rows[i][1][i_usage]!r} but data row {i + 1} of {fer_origin} is "
            f"{list(USAGES)[usage[i]]}; the files do not list the same rows in the same order "
            f"({len(mismatch)} rows differ)."
        )
    top = votes.max(axis=1)
    winner = votes.argmax(axis=1)
    n_emotions = len(FERPLUS_CLASSES)
    reasons = np.full(len(rows), "", dtype="<U10")
    reasons[winner == n_emotions] = "unknown"
    reasons[winner == n_emotions + 1] = "nf"
    reasons[(votes == top[:, None]).sum(axis=1) > 1] = "tie"
    reasons[np.array([not r[i_name].strip() for _, r in rows], dtype=bool)] = "not_a_face"
    return np.where(winner < n_emotions, winner, -1), reasons


# ------------------------------------------------------------------------------------------------- the image folders


def _list_folders(root: Path) -> list[tuple[str, int, Path]]:
    """(split, label, file) for every image under root/{train,test}/<class>/, in a stable order."""
    files = []
    for split in FOLDER_SPLITS:
        d = _split_dir(root, split)
        if d is None:
            continue
        class_dirs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))
        unknown = [p.name for p in class_dirs if canonical(p.name) not in FER2013_CLASSES]
        if unknown:
            raise DataError(
                f"{d}: unknown class folder(s) {unknown}. Known FER2013 classes: {', '.join(FER2013_CLASSES)} "
                f"(matched case-insensitively; synonyms such as 'happiness' work). Rename or remove those folders."
            )
        for cd in class_dirs:
            label = FER2013_CLASSES.index(canonical(cd.name))
            files += [
                (split, label, f)
                for f in sorted(cd.iterdir())
                if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            ]
    if not files:
        raise DataError(
            f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) under train/<class>/ or test/<class>/. {WHERE_TO_GET}"
        )
    return files


def _read_folders(files: list[tuple[str, int, Path]]) -> dict[str, np.ndarray]:
    arrays = {}
    for split in FOLDER_SPLITS:
        chosen = [(label, f) for s, label, f in files if s == split]
        if not chosen:
            continue
        arrays[f"{split}_images"] = np.stack([_read_gray48(f) for _, f in chosen])
        arrays[f"{split}_labels"] = np.array([label for label, _ in chosen], dtype=np.int64)
        arrays[f"{split}_paths"] = np.array([str(f) for _, f in chosen])
    return arrays


def _read_gray48(file: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(file, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError(f"{file}: not a readable image; delete or replace it.")
    if image.shape != (SIZE, SIZE):
        image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return image
