"""One table of a model across data sets: a multirun of `scripts/evaluate.py` over data configs ends with a row per
job, printed and written to the sweep folder as ``cross_dataset.csv``::

    python scripts/evaluate.py ckpt=best.ckpt data=ckplus48,jaffe,rafdb split=all -m
    python scripts/evaluate.py ckpt=best.ckpt data=ckplus48,folder data.path=path/to/ckplus48 split=all -m

(the second reads CK+48's class folders both ways: an override such as ``data.path`` applies to every job; each
data config otherwise reads its own ``data.path``, and a folder of your own is a config in ``conf/data/`` of the
folder you run from.)

A row: the job's number (its folder in the sweep), the data config's name (``hydra.runtime.choices.data``), the split
(``all``: every image of the data was test data), n, accuracy, balanced accuracy, macro-F1 and the recall of every
class. The class columns are the classes of every row, in order of first appearance; a class with no test image in a
data set, or not among that model's classes, is n/a (in the CSV an empty cell, the missing value of CSV readers:
pandas reads NaN). The CSV's numbers are plain decimals with 6 places; it also names each job's checkpoint and
overrides. An existing CSV is kept and the new one numbered (`mimic.io.new_file`).

A job that fails is a row saying so with its error's first line, and the others still run: in a multirun a user's
mistake (a folder that does not exist) fails its job only (`job_errors`; the command's handler would end the whole
sweep on it), and `CrossDatasetReport` takes the failure over from Hydra's sweeper, which would raise it after the
jobs, before any report. After the table the command exits 2 (1 when a job failed on a bug, whose traceback is in that
job's log).

`CrossDatasetReport` is a Hydra callback (``hydra.callbacks`` in conf/evaluate.yaml): ``on_job_end`` keeps each job's
result (what `mimic.evaluate.run` returns: test_metrics.json's content), ``on_multirun_end`` prints and writes the
table. A single run (no ``-m``) prints nothing more. Jobs a launcher runs in other processes (``hydra/launcher=joblib``)
report nothing to this one: the table is then left out with a warning, and Hydra's own handling of failures stands.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mimic.cli import find_user_error
from mimic.errors import said
from mimic.io import new_file, write_bytes

log = logging.getLogger(__name__)

CSV_NAME = "cross_dataset.csv"
SCORES = {"accuracy": "test/acc", "balanced_accuracy": "test/balanced_acc", "macro_f1": "test/f1"}
"""The CSV's score columns and the test_metrics.json keys they hold."""
IN_THIS_PROCESS = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"  # Hydra's own launcher: jobs run here


class JobFailed(RuntimeError):
    """A user's mistake that ends one job of a multirun. Not a `UserError`, so the command's handler
    (`mimic.cli.user_errors`) does not end the whole sweep on it: Hydra records the job as failed, runs the others,
    and `CrossDatasetReport` gives it a row."""


def user_error(exc: BaseException | None) -> BaseException | None:
    """The user's mistake behind ``exc`` (looking through Hydra's instantiation wrapper and `JobFailed`), or None for
    a bug: the same errors `mimic.cli.user_errors` turns into one message."""
    return find_user_error(exc, (InstantiationException, JobFailed))


def in_multirun() -> bool:
    """Whether this is a job of a multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextlib.contextmanager
def job_errors() -> Iterator[None]:
    """In a multirun, a user's mistake raised inside the block fails this job only (as `JobFailed`); elsewhere it
    goes on to the command's handler: one message and exit status 2."""
    try:
        yield
    except Exception as e:
        found = user_error(e)
        if found is None or not in_multirun():
            raise
        raise JobFailed(str(found)) from e


def job_row(config: DictConfig, result: Any, error: BaseException | None = None) -> dict[str, Any]:
    """A job's row from its config (with ``hydra``) and what `mimic.evaluate.run` returned, or the error it failed
    on: job, data, split, n, the `SCORES`, ``recall`` (class name: recall or None), checkpoint, overrides, error."""
    row: dict[str, Any] = {
        "job": OmegaConf.select(config, "hydra.job.num"),
        "data": OmegaConf.select(config, "hydra.runtime.choices.data") or "",
        "split": str(OmegaConf.select(config, "split") or ""),
        "n": None,
        **dict.fromkeys(SCORES),
        "recall": {},
        "checkpoint": "",
        "overrides": [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[])],
        "error": "",
    }
    if error is not None:
        row["error"] = said(error)
        return row
    if not isinstance(result, dict):
        row["error"] = f"the job returned no test metrics ({type(result).__name__})"
        return row
    row.update({k: result.get(key) for k, key in SCORES.items()}, n=result.get("n"))
    row.update(split=str(result.get("split", row["split"])), checkpoint=str(result.get("checkpoint", "")))
    row["recall"] = {c: result.get(f"test/recall_{c}") for c in result.get("class_names", [])}
    return row


def class_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every row's class names, in order of first appearance."""
    return list(dict.fromkeys(c for r in rows for c in r["recall"]))


def _decimal(value: Any, places: int) -> str:
    return "" if value is None else f"{value:.{places}f}"


def write_csv(rows: list[dict[str, Any]], folder: str | Path) -> Path:
    """``folder``/cross_dataset.csv (a free numbered name when one is there): a line per row, n/a cells empty."""
    classes = class_columns(rows)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    recalls = [f"recall_{c}" for c in classes]
    writer.writerow(["job", "data", "split", "n", *SCORES, *recalls, "error", "checkpoint", "overrides"])
    for r in rows:
        scores = [_decimal(r[k], 6) for k in SCORES] + [_decimal(r["recall"].get(c), 6) for c in classes]
        first = [r["job"], r["data"], r["split"], "" if r["n"] is None else r["n"]]
        writer.writerow([*first, *scores, r["error"], r["checkpoint"], " ".join(r["overrides"])])
    return write_bytes(new_file(folder, "hydra.sweep.dir", CSV_NAME), text.getvalue().encode())


def table(rows: list[dict[str, Any]]) -> str:
    """The printed table: a line per row, scores with 4 places, n/a where there is none; a failed job's line says
    so after its split."""
    classes = class_columns(rows)
    header = ["job", "data", "split", "n", "accuracy", "balanced", "macro-F1", *classes]
    lines = [header]
    for r in rows:
        first = [str(r["job"]), r["data"], r["split"]]
        scores = [r[k] for k in SCORES] + [r["recall"].get(c) for c in classes]
        lines.append(
            [*first, f"failed: {r['error']}"]
            if r["error"]
            else [*first, str(r["n"])] + [_decimal(v, 4) or "n/a" for v in scores]
        )
    full = [line for line in lines if len(line) == len(header)]
    widths = [max(len(line[i]) for line in (lines if i < 3 else full)) for i in range(len(header))]

    def shown(line: list[str]) -> str:
        cells = [line[0].rjust(widths[0]), *(v.ljust(w) for v, w in zip(line[1:3], widths[1:3]))]
        if len(line) < len(header):  # a failed job: its message after the split
            return "  ".join([*cells, line[3]])
        return "  ".join([*cells, *(v.rjust(w) for v, w in zip(line[3:], widths[3:]))])

    return "\n".join(shown(line).rstrip() for line in lines)


class CrossDatasetReport(Callback):
    """Keeps every job's result (``on_job_end``) and, after the last job, prints one table of them and writes it to
    the sweep folder as cross_dataset.csv (``on_multirun_end``). Jobs outside a multirun are left alone."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.bugs = False

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        if OmegaConf.select(config, "hydra.launcher._target_") != IN_THIS_PROCESS:
            return  # this process's report never sees the row: Hydra's own handling of a failure stands
        if job_return.status == JobStatus.COMPLETED:
            self.rows.append(job_row(config, job_return.return_value))
            return
        error: BaseException = RuntimeError("failed")
        try:
            job_return.return_value  # noqa: B018 - raises the job's error, with Hydra's note of the job's overrides
        except Exception as e:
            error = e
        self.rows.append(job_row(config, None, error))
        if user_error(error) is None:
            self.bugs = True
            log.error("job %s failed on a bug", self.rows[-1]["job"], exc_info=error)  # the traceback, in its log
        else:
            print(f"error: {said(error)}", file=sys.stderr)
        # the table has the failure; Hydra's sweeper would raise it after the last job, and on_multirun_end never run
        job_return.status, job_return.return_value = JobStatus.COMPLETED, None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.rows:
            log.warning("no job reported to this process (a launcher that runs them elsewhere): no cross-dataset table")
            return
        rows = sorted(self.rows, key=lambda r: (r["job"] is None, r["job"] or 0))
        out = write_csv(rows, Path(config.hydra.sweep.dir).absolute())
        print(f"\nCross-dataset report ({len(rows)} jobs; the class columns are recall):\n{table(rows)}\nCSV: {out}")
        if failed := [r for r in rows if r["error"]]:
            print(f"error: {len(failed)} of {len(rows)} jobs failed (see the table)", file=sys.stderr)
            sys.exit(1 if self.bugs else 2)
