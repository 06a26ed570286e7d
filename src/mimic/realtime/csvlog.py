"""The per-face CSV log: one row per face per processed frame, written so that a crash or a kill keeps every row.

Columns: ``timestamp`` (ISO 8601, local time with offset), ``mono_s`` (monotonic seconds since the run started),
``media_s`` (the frame's time in the video, or since the camera opened), ``frame``, ``face_id``, ``x, y, w, h``,
``det_score``, ``raw_label``, ``raw_conf`` (the model's top class and probability for this frame), ``label``, ``conf``
(the smoothed, shown label and its smoothed probability), ``reaction`` (the class whose reaction fired on this row,
else empty) and ``p_<class>`` for every class (the model's probabilities for this frame).

All the rows of a frame go to the file in one unbuffered ``write`` call, so the file only ever ends on a whole row.
The file is always a new one: `CsvLog` never opens an existing file (the app picks a free name first).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mimic.realtime.pipeline import FrameResult

BASE_COLUMNS = (
    "timestamp",
    "mono_s",
    "media_s",
    "frame",
    "face_id",
    "x",
    "y",
    "w",
    "h",
    "det_score",
    "raw_label",
    "raw_conf",
    "label",
    "conf",
    "reaction",
)


def columns(class_names: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"p_{c}" for c in class_names)]


def rows(result: FrameResult) -> list[list]:
    """The rows of one frame's result, in `columns` order."""
    out = []
    for f in result.faces:
        row = [result.timestamp, result.mono_s, round(result.time, 4), result.index, f.id, *f.box, round(f.score, 4)]
        row += [f.raw_label, round(f.raw_conf, 4), f.label, round(f.conf, 4), f.reaction or ""]
        out.append(row + [round(float(v), 4) for v in f.probs])
    return out


class CsvLog:
    """Writes rows to the new file ``path`` (parent folders are created; an existing file is an error, never
    truncated); ``write(result)`` writes a frame's rows and flushes them at once."""

    def __init__(self, path: str | os.PathLike, class_names: Sequence[str]) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = columns(class_names)
        self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115  closed in close()
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self.rows = 0
        self._write([self.columns])

    def _write(self, rows: Sequence[Sequence]) -> None:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerows(rows)
        data = memoryview(self._buffer.getvalue().encode())
        while data:
            data = data[self._file.write(data) :]

    def write(self, result: FrameResult) -> None:
        """Write the rows of one frame with a single system call."""
        if result.faces:
            self._write(rows(result))
            self.rows += len(result.faces)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> CsvLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def now_iso() -> str:
    """The current local time as ISO 8601 with milliseconds and UTC offset."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")
