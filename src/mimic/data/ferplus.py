"""FER+ labels for FER2013's images: the crowd's votes (fer2013new.csv, one row per FER2013 row, in order), by
plurality, with the rows no single emotion wins dropped and counted by reason.

Get fer2013new.csv from https://github.com/microsoft/FERPlus; `mimic.data.fer2013.FER2013Source` uses it with
``labels="ferplus"``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from mimic.data.base import DataError, SplitData
from mimic.data.fer2013_files import SPLIT_CODES, SPLIT_NAMES, USAGES
from mimic.labels import FERPLUS_CLASSES, canonical

log = logging.getLogger(__name__)

FERPLUS_NAME = "fer2013new.csv"


def find_ferplus(csv_path: Path, ferplus_path: Path | None) -> Path:
    """fer2013new.csv: ``ferplus_path`` (the file or its folder), or, when None, beside the FER2013 CSV or in
    ``../ferplus/``; a DataError listing the tries when it is not there."""
    if ferplus_path is not None:
        tried = [ferplus_path, ferplus_path / FERPLUS_NAME]
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


def ferplus_splits(arrays: dict[str, np.ndarray], path: Path, origin: str, name: str) -> dict[str, SplitData]:
    """The splits of FER2013's parsed CSV (`mimic.data.fer2013_files.read_csv`'s ``arrays``, from ``origin``)
    relabelled by the FER+ votes in ``path``, for the source named ``name``; each split's dropped rows counted by
    reason in its meta."""
    labels, reasons = read_ferplus(path, usage_codes(arrays), origin)
    out = {}
    for split in SPLIT_NAMES:
        index = arrays[f"{split}_index"]
        why = reasons[index]
        keep = np.flatnonzero(why == "")
        dropped = {str(r): int(n) for r, n in zip(*np.unique(why[why != ""], return_counts=True), strict=True)}
        lines = arrays[f"{split}_lines"][keep].tolist()
        out[split] = SplitData(
            arrays[f"{split}_images"][keep],
            labels[index[keep]],
            [f"{origin}:{line}" for line in lines],
            {"source": name, "origin": origin, "labels_from": str(path), "dropped": dropped},
        )
        if dropped:
            log.info("%s %s: FER+ dropped %s of %d rows", name, split, dropped, len(index))
    return {split: data for split, data in out.items() if len(data)}


def usage_codes(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each FER2013 CSV row's split code (0 train, 1 val, 2 test), from `read_csv`'s ``arrays``."""
    usage = np.empty(sum(len(arrays[f"{s}_index"]) for s in SPLIT_NAMES), np.int8)
    for code, split in enumerate(SPLIT_NAMES):
        usage[arrays[f"{split}_index"]] = code
    return usage


def read_ferplus(path: Path, usage: np.ndarray, fer_origin: str = "fer2013.csv") -> tuple[np.ndarray, np.ndarray]:
    """FER+ majority labels for the FER2013 rows (indices into ``FERPLUS_CLASSES``) and per row why it is dropped.

    Rule: plurality over the 10 vote columns (8 emotions, unknown, NF). A row is dropped as ``not_a_face`` (empty
    image name), ``tie`` (the top count is shared by two or more columns), ``unknown`` or ``nf`` (that column wins
    alone); the reason is "" for a kept row. ``usage`` (codes 0 train, 1 val, 2 test per FER2013 row) checks that the
    two files list the same rows in the same order.
    """
    votes, named = read_votes(path, usage, fer_origin)
    top = votes.max(axis=1)
    winner = votes.argmax(axis=1)
    n_emotions = len(FERPLUS_CLASSES)
    reasons = np.full(len(votes), "", dtype="<U10")
    reasons[winner == n_emotions] = "unknown"
    reasons[winner == n_emotions + 1] = "nf"
    reasons[(votes == top[:, None]).sum(axis=1) > 1] = "tie"
    reasons[~named] = "not_a_face"
    return np.where(winner < n_emotions, winner, -1), reasons


def vote_targets(
    votes: np.ndarray, named: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Soft training targets over ``classes`` from FER+'s votes, beside or in place of the hard ``labels``.

    target = (1 - weight) * one-hot(label) + weight * (the row's votes for ``classes``, normalised). Votes for
    classes outside ``classes`` (for FER2013's seven: contempt), "unknown" and "NF" are left out, so the target is
    the crowd's split between the emotions the model has. A row with no vote for any of ``classes`` keeps its
    one-hot label. Returns (targets float32 (N, len(classes)), keep): ``keep`` is False for the rows FER+ says are
    not faces (no image name, or NF the largest count alone), which a training split should drop.
    """
    cols = [FERPLUS_CLASSES.index(canonical(c)) for c in classes]
    picked = votes[:, cols].astype(np.float64)
    total = picked.sum(axis=1, keepdims=True)
    onehot = np.eye(len(classes))[labels]
    crowd = np.where(total > 0, picked / np.maximum(total, 1), onehot)
    nf = len(FERPLUS_CLASSES) + 1
    nf_wins = (votes.argmax(axis=1) == nf) & ((votes == votes.max(axis=1, keepdims=True)).sum(axis=1) == 1)
    return ((1 - weight) * onehot + weight * crowd).astype(np.float32), named & ~nf_wins


def read_votes(path: Path, usage: np.ndarray, fer_origin: str = "fer2013.csv") -> tuple[np.ndarray, np.ndarray]:
    """FER+'s votes per FER2013 row: int64 (N, 10), the columns ``FERPLUS_CLASSES`` then unknown and NF, and a bool
    (N,): the row has an image name (FER+ leaves it empty for a row that is not a face). ``usage`` (codes 0 train,
    1 val, 2 test per FER2013 row) checks that the two files list the same rows in the same order."""
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
    fp_usage = np.array([SPLIT_CODES.get(r[i_usage].strip().encode(), -1) for _, r in rows])
    mismatch = np.flatnonzero(fp_usage != usage)
    if len(mismatch):
        i = int(mismatch[0])
        raise DataError(
            f"{path}: line {rows[i][0]} says Usage {rows[i][1][i_usage]!r} but data row {i + 1} of {fer_origin} is "
            f"{list(USAGES)[usage[i]]}; the files do not list the same rows in the same order "
            f"({len(mismatch)} rows differ)."
        )
    return votes, np.array([bool(r[i_name].strip()) for _, r in rows], dtype=bool)
