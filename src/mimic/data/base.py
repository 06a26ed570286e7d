"""What every data source hands the datamodule: images, integer labels, and the names those labels index.

A source is any object with a ``name``, its own ``class_names`` (in its own index order) and ``load()``, which
returns a dict with some of the splits ``"train"``, ``"val"``, ``"test"``. A source without ``"val"`` gets a seeded,
stratified part of its ``"train"`` split from the datamodule. Mapping onto the run's class set happens in the
datamodule, by name (DESIGN.md contract 3), never in a source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from mimic.errors import UserError

SPLITS = ("train", "val", "test")


class DataError(UserError, ValueError):
    """A dataset that is missing or malformed; the message names the file, row or setting and says what to do."""


def missing_dataset(title: str, root: Path, looked_for: Sequence[str], how_to_get: str) -> DataError:
    """The one error for a dataset that is not where ``data.path`` points: where it looked, what it looked for (paths
    relative to ``root``), and how to get the set."""
    where = "; ".join(str(root / p) for p in looked_for)
    return DataError(
        f"{title} not found: looked for {where}. {how_to_get} Unpack it as distributed and point data.path at it "
        f"(now {root})."
    )


def row_error(path: Path | str, line: int, text: str, expected: str) -> DataError:
    """A malformed line of a dataset's label file: the file, the line number (from 1), the line and what it should
    hold."""
    shown = text if len(text) <= 120 else text[:120] + "..."
    return DataError(f"{path}, line {line}: {shown!r} is not {expected}. Fix or delete the line.")


@dataclass
class SplitData:
    """One split of one source.

    images: uint8, either an array (N, H, W) / (N, H, W, C) or a list of N arrays of any size (gray or BGR).
    labels: int64 (N,), indices into the source's ``class_names``.
    paths: optional per-image origin (file path or "file:row") for error messages and de-duplication.
    targets: optional float32 (N, number of the source's classes): the training target per image as a distribution
    over the source's classes (soft labels, e.g. FER+'s votes), each row summing to 1; None: ``labels`` one-hot.
    ``labels`` stay the hard labels that metrics and stratification use.
    """

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray
    paths: list[str] | None = None
    meta: dict = field(default_factory=dict)
    targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.targets is not None:
            self.targets = np.asarray(self.targets, dtype=np.float32)
            if self.targets.ndim != 2 or len(self.targets) != len(self.labels):
                raise ValueError(f"targets of shape {self.targets.shape} for {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> SplitData:
        index = np.asarray(index, dtype=np.int64)
        images = self.images[index] if isinstance(self.images, np.ndarray) else [self.images[i] for i in index]
        paths = [self.paths[i] for i in index] if self.paths is not None else None
        targets = self.targets[index] if self.targets is not None else None
        return SplitData(images, self.labels[index], paths, dict(self.meta), targets)


class Source(Protocol):
    name: str
    class_names: tuple[str, ...]

    def load(self) -> dict[str, SplitData]: ...


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): ``fraction`` of every class held out (at least one where a class has two or more)."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        if n == 0 and len(idx) >= 2 and fraction > 0:
            n = 1
        held.append(idx[:n])
        keep.append(idx[n:])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)  # noqa: E731
    return cat(keep), cat(held)
