"""FER2013's file layouts, read into arrays: the Kaggle CSV (plain, gzipped or in its tar.gz) and the image folders.

The CSV (``emotion,pixels,Usage``, 48x48 gray faces as 2,304 space-separated numbers) is split by ``Usage``:
Training -> ``train``, PublicTest -> ``val``, PrivateTest -> ``test``. `read_csv` parses the 301 MB file in seconds
(numpy's C text parser per row, while a second thread reads and decompresses) and names the line and the fault of any
malformed row. The image-folder layout (``train/<class>/*.jpg``, ``test/<class>/*.jpg``) has no ``val``.

`mimic.data.fer2013.FER2013Source` finds the files, caches these arrays and makes them splits.
"""

from __future__ import annotations

import gzip
import queue
import tarfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import cv2
import numpy as np

from mimic.data.base import DataError
from mimic.io import IMAGE_SUFFIXES
from mimic.labels import FER2013_CLASSES, canonical

SIZE = 48
N_PIXELS = SIZE * SIZE
USAGES = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_SPLITS = ("train", "test")

WHERE_TO_GET = (
    "Get FER2013 from Kaggle: the competition 'challenges-in-representation-learning-facial-expression-recognition-"
    "challenge' (fer2013.tar.gz, holding fer2013/fer2013.csv), or the image-folder version 'msambare/fer2013' "
    "(train/<class>/*.jpg, test/<class>/*.jpg). Then point the run at it with the Hydra override "
    "data.path=/path/to/fer2013.csv (a .csv.gz, the .tar.gz or the image folder work too)."
)

SPLIT_CODES = {name.encode(): i for i, name in enumerate(USAGES)}  # b"Training" -> 0, in the order of SPLIT_NAMES
SPLIT_NAMES = tuple(USAGES.values())
_EMOTION_CODES = {str(i).encode(): i for i in range(len(FER2013_CLASSES))}
_BLOCK = 4 << 20  # bytes per read; keeps the per-block int64 pixel buffer small
_MAX_PROBLEMS = 10


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
        self.parts: dict[str, list[tuple[np.ndarray, ...]]] = {split: [] for split in SPLIT_NAMES}
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
        fromstring, emotions, splits = np.fromstring, _EMOTION_CODES, SPLIT_CODES
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
        for code, split in enumerate(SPLIT_NAMES):
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


# ------------------------------------------------------------------------------------------------- the image folders


def split_dir(root: Path, split: str) -> Path | None:
    """``root/<split>`` matched case-insensitively (``Train`` works too)."""
    if (root / split).is_dir():
        return root / split
    for d in root.iterdir():
        if d.is_dir() and d.name.lower() == split:
            return d
    return None


def list_folders(root: Path) -> list[tuple[str, int, Path]]:
    """(split, label, file) for every image under root/{train,test}/<class>/, in a stable order."""
    files = []
    for split in FOLDER_SPLITS:
        d = split_dir(root, split)
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


def read_folders(files: list[tuple[str, int, Path]]) -> dict[str, np.ndarray]:
    """`list_folders`' images as 48x48 gray arrays: per split ``s``, ``s_images``, ``s_labels`` and ``s_paths``."""
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
