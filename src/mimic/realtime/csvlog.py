"""The per-face CSV log: one row per face per processed frame, written so that a crash or a kill keeps every row.

Columns: ``timestamp`` (ISO 8601, local time with offset), ``mono_s`` (monotonic seconds since the run started),
``media_s`` (the frame's time in the video, or since the camera opened), ``frame``, ``face_id``, ``x, y, w, h``,
``det_score``, ``raw_label``, ``raw_conf`` (the model's top class and probability for this frame), ``label``, ``conf``
(the smoothed, shown label and its smoothed probability), ``reaction`` (the class whose reaction fired on this row,
else empty), ``model`` (the model that made the row: its file's name; the web page's model name) and ``p_<class>`` for
every class (the model's probabilities for this frame).

All the rows of a frame go to the file in one unbuffered ``write`` call, so the file only ever ends on a whole row.
The file is always a new one: `CsvLog` never opens an existing file (the app picks a free name first).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mimic.realtime.pipeline import FrameResult

# fmt: off
BASE_COLUMNS = [
    "timestamp", "mono_s", "media_s", "frame", "face_id", "x", "y", "w", "h",
    "det_score", "raw_label", "raw_conf", "label", "conf", "reaction", "model",
]
# fmt: on


def columns(class_names: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"p_{c}" for c in class_names)]


class CsvLog:
    """Writes rows to the new file ``path`` (parent folders are created; an existing file is an error, never
    truncated); ``write(result)`` writes a frame's rows and flushes them at once; ``rows`` counts them."""

    def __init__(self, path: str | os.PathLike, class_names: Sequence[str], model: str = "") -> None:
        self.path, self.model, self.rows = Path(path).expanduser(), model, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115  closed in close()
        self._write([columns(class_names)])

    def _write(self, rows: Sequence[Sequence]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        data = memoryview(text.getvalue().encode())
        while data:  # a raw write may take only part of the data
            data = data[self._file.write(data) :]

    def write(self, result: FrameResult) -> None:
        """Write the rows of one frame, in `columns` order, with a single system call."""
        when = [result.timestamp, result.mono_s, round(result.time, 4), result.index]
        rows = [
            [*when, f.id, *f.box, round(f.score, 4), f.raw_label, round(f.raw_conf, 4), f.label, round(f.conf, 4)]
            + [f.reaction or "", self.model, *(round(float(v), 4) for v in f.probs)]
            for f in result.faces
        ]
        if rows:
            self._write(rows)
            self.rows += len(rows)

    def close(self) -> None:
        self._file.close()
