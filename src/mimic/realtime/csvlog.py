"""The per-face CSV log: one row per face per processed frame (`mimic.realtime.result` names the columns), written
so that a crash or a kill keeps every row.

All the rows of a frame go to the file in one unbuffered ``write`` call, so the file only ever ends on a whole row.
The file is always a new one: `CsvLog` never opens an existing file (the front-end picks a free name first).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from mimic.realtime.result import FrameResult, columns


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
        """Write the rows of one frame with a single system call."""
        rows = result.csv_rows(self.model)
        if rows:
            self._write(rows)
            self.rows += len(rows)

    def close(self) -> None:
        self._file.close()
