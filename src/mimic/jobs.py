"""The web page's fine-tuning jobs: a job's folder and what each of its files says, the server's side (`Jobs`: start a
job on the photos you took, list, report, cancel) and the job's own process (`run_job`, ``python -m mimic.jobs
JOB_FOLDER``), which runs the ``+finetune=webcam`` recipe of `mimic.finetune`.

A job's folder is ``<root>/<id>/``, its id the time it was made (``YYYYmmdd-HHMMSS``, ``-<n>`` added for a second one
in the same second):

- ``job.json`` (the server): ``base`` (the model file it starts from) and ``base_id``, ``classes``, ``captured``
  (``{class: {split: photos}}``), ``epochs``, ``freeze``, ``fer2013`` (merged or not), ``fer2013_path``, ``created``,
  then the process's ``pid``.
- ``data/{train,val,test}/<class>/`` (the server, `mimic.job_data.snapshot`): the photos the job trains, validates
  and reports on.
- ``log.txt`` (the job): its output.
- ``progress.json`` (the job, `mimic.callbacks.progress`): phase, epoch, step and the per-epoch history.
- ``.run/`` (the job): the training run.
- ``personalised.ckpt`` (the job, `MODEL_FILE`): the new model, copied once the run has ended well.
- ``result.json`` (the job): ``state`` ``done`` with ``model``, ``report`` and ``finished``, or ``failed`` with
  ``error``. The report holds the base and the new model's accuracy and confusion matrix on the held-out photos
  (``data/test``) and, when FER2013 is on disk, on its test split restricted to the run's classes; which epoch was
  ``kept``; and a ``note`` when it rests on single photos (`mimic.job_data.photo_note`).
- ``cancelled.json`` (the server): the job was cancelled, whatever else its files say; its process group got SIGTERM,
  and once the process has ended its model file is removed (it may have written one after the cancel).

The model picker offers a job's model only when the job is done (`ended_well`). A job folder is the root's own: a
symlink is no job. A restarted server finds its jobs again, running or finished; one job runs at a time. The server
imports this module, so it imports no torch: the training side is loaded by `run_job`, in the job's own process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mimic.data.class_folders import stays_in
from mimic.data.fer2013 import found as fer2013_found
from mimic.data.fer2013 import locate as locate_fer2013
from mimic.errors import UserError
from mimic.io import atomic_write, cached, sha256_file, write_json
from mimic.job_data import HELD_OUT, MIN_PHOTOS, photo_note, snapshot, unique_photos
from mimic.labels import FER2013_CLASSES

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
MODEL_FILE = "personalised.ckpt"  # a job's new model, in its folder; the run itself goes to the hidden .run/
JOB_ID = re.compile(r"^\d{8}-\d{6}(-\d+)?$")
MAX_EPOCHS = 100
KILL_AFTER_S = 20.0  # a cancelled job that has not ended this long after SIGTERM gets SIGKILL


class JobConflict(Exception):
    """What the jobs' state forbids now: a second job while one runs, cancelling one that has ended."""


def jobs_root(cfg: Any) -> Path:
    """The folder of the web page's jobs, for a composed realtime config: ``<ui.models_dir or paths.log_dir>/
    personalise``."""
    return Path(str(cfg.ui.get("models_dir") or cfg.paths.log_dir)).expanduser() / "personalise"


def read_json(path: Path) -> dict[str, Any]:
    """A job file's JSON object; {} when the file is missing, a symlink, cut short or not an object."""
    if not stays_in(path.parent, path):
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def process_runs(pid: int, job_dir: Path) -> bool:
    """Whether process ``pid`` is alive and is the job of ``job_dir`` (not another that reused the number)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if Path("/proc/self").exists():
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return str(job_dir).encode() in cmdline


def ended_well(job_dir: Path) -> bool:
    """Whether the job of ``job_dir`` is done: its result says so and it was not cancelled."""
    return not (job_dir / "cancelled.json").is_file() and read_json(job_dir / "result.json").get("state") == "done"


# ---- the server's side ---------------------------------------------------------------------------------------------
class Jobs:
    """The job folders under ``root``, as the web server sees them. ``fer2013``: where FER2013 is looked for. A new
    job takes the recipe's (conf/finetune/webcam.yaml) epochs and frozen parts unless told otherwise."""

    def __init__(self, root: Path, fer2013: Path) -> None:
        self.root, self.fer2013 = root, fer2013
        recipe = OmegaConf.load(str(files("mimic.conf") / "finetune" / "webcam.yaml"))
        self.default_epochs = int(recipe.trainer.max_epochs)
        self.default_freeze = list(recipe.callbacks.freeze.patterns)
        self._lock = threading.Lock()  # starting or cancelling a job
        self._procs: dict[str, subprocess.Popen] = {}
        self._logged: set[Path] = set()  # the symlinked job folders the log has named

    def options(self, classes: Sequence[str], parts: list[str]) -> dict[str, Any]:
        """What a job of a model with ``classes`` and freezable ``parts`` may set, and whether FER2013 is on disk."""
        return {
            "classes": list(classes),
            "epochs": {"default": self.default_epochs, "min": 1, "max": MAX_EPOCHS},
            "freeze": {"choices": parts, "default": [m for m in self.default_freeze if m in parts]},
            "fer2013": {"found": fer2013_found(self.fer2013), "path": self.fer2013.name},  # a name: no server paths
            "min_photos": MIN_PHOTOS,
            "held_out": HELD_OUT,
        }

    def start(
        self,
        base: Path,
        base_id: str,
        classes: Sequence[str],
        parts: list[str],
        photos: dict[str, Path],
        epochs: int | None = None,
        freeze: list[str] | None = None,
        fer2013: bool | None = None,
    ) -> str:
        """Start a job from the model file ``base`` (its ``classes``, the ``parts`` a job may freeze) on the class
        folders ``photos``; its id. Settings that do not fit are a `UserError`; `JobConflict` while a job runs.
        ``fer2013`` None: merged when it is on disk."""
        with self._lock:
            running = [j for j in self.ids() if self._state(self.root / j)[0] == "running"]
            if running:
                raise JobConflict(f"fine-tuning job {running[0]} is running: wait for it to end or cancel it")
            if freeze is None:
                freeze = [m for m in self.default_freeze if m in parts]
            unknown = [m for m in freeze if m not in parts]
            if unknown:
                raise UserError(f"freeze: {unknown} are not parts of this model; choose from {parts}")
            found = fer2013_found(self.fer2013)
            if fer2013 and not found:
                raise UserError("FER2013 is not on disk (ui.personalise.fer2013): fine-tune with fer2013 off")
            merge = found if fer2013 is None else fer2013
            counts = {name: len(unique_photos(folder)) for name, folder in photos.items()}
            captured = [c for c, n in counts.items() if n]
            few = [f"{c} ({counts[c]})" for c in captured if counts[c] < MIN_PHOTOS]
            if not captured or few:
                raise UserError(
                    f"every class you photograph needs at least {MIN_PHOTOS} different photos"
                    + (f"; these have fewer: {', '.join(few)}" if few else ": take some first")
                )
            classes = list(classes) + [c for c in captured if c not in classes]
            if not merge:
                classes = [c for c in classes if c in captured]
                if len(classes) < 2:
                    raise UserError("without FER2013 a model needs photos of at least two classes")
            job_id, job_dir = self._new_folder()
            job = {
                "id": job_id,
                "base": str(base),
                "base_id": base_id,
                "classes": classes,
                "captured": snapshot(photos, job_dir / "data", captured, seed=0),
                "epochs": epochs or self.default_epochs,
                "freeze": freeze,
                "fer2013": merge,
                "fer2013_path": str(self.fer2013),
                "created": time.time(),
            }
            write_json(job_dir / "job.json", job)
            with open(job_dir / "log.txt", "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "mimic.jobs", str(job_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: cancelling reaches its children too
                )
            self._procs[job_id] = proc
            write_json(job_dir / "job.json", {**job, "pid": proc.pid})
        log.info("fine-tuning job %s started (pid %d): %s", job_id, proc.pid, job_dir)
        return job_id

    def _new_folder(self) -> tuple[str, Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            job_id = stamp if n == 0 else f"{stamp}-{n}"
            try:
                (self.root / job_id).mkdir()
            except FileExistsError:
                continue
            return job_id, self.root / job_id
        raise OSError(f"could not make a job folder in {self.root}")

    def ids(self) -> list[str]:
        """Every job folder's id, newest first."""
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir() if self.exists(p.name)), reverse=True)

    def exists(self, job_id: str) -> bool:
        """Whether ``job_id`` names a job folder (anything else a client sends is no job): the root's own folder, not
        a symlink (logged once), with a job.json."""
        folder = self.root / job_id
        if not JOB_ID.fullmatch(job_id) or not (folder / "job.json").is_file():
            return False
        if stays_in(self.root, folder):
            return True
        if folder not in self._logged:
            log.warning("fine-tuning jobs: %s is a symlink, not a job folder of %s: left alone", job_id, self.root)
            self._logged.add(folder)
        return False

    def _alive(self, job_dir: Path, job: dict[str, Any]) -> bool:
        proc = self._procs.get(job_dir.name)
        if proc is not None:
            return proc.poll() is None
        pid = job.get("pid")
        return isinstance(pid, int) and process_runs(pid, job_dir)

    def _state(self, job_dir: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(state, job.json, result.json or {})."""
        job = read_json(job_dir / "job.json")
        result = read_json(job_dir / "result.json")
        if (job_dir / "cancelled.json").is_file():  # first: the process may have finished after the cancel
            return "cancelled", job, result
        if result.get("state") in ("done", "failed"):
            return result["state"], job, result
        if self._alive(job_dir, job):
            return "running", job, result
        if "pid" not in job and time.time() - job.get("created", 0) < 30:
            return "running", job, result  # being started
        error = f"the job's process ended without a result; its log: personalise/{job_dir.name}/log.txt"
        return "failed", job, {"error": error}

    def status(self, job_id: str) -> dict[str, Any]:
        """Where job ``job_id`` (one of `ids`) stands: ``state`` (running, done, failed, cancelled), ``phase``, epoch
        and step, the last epoch's ``metrics`` and the ``history``, its settings, ``base`` (the model file it started
        from) and, when done, ``model`` (the new model's file) and the ``report``; when failed, the ``error``."""
        job_dir = self.root / job_id
        state, job, result = self._state(job_dir)
        progress = read_json(job_dir / PROGRESS)
        history = progress.get("history") or []
        out = {
            "id": job_id,
            "state": state,
            "phase": progress.get("phase", "starting") if state == "running" else state,
            "epoch": progress.get("epoch", 0),
            "epochs": job.get("epochs"),
            "step": progress.get("step", 0),
            "steps": progress.get("steps"),
            "metrics": history[-1] if history else {},
            "history": history,
            "classes": job.get("classes", []),
            "captured": job.get("captured", {}),
            "settings": {k: job.get(k) for k in ("epochs", "freeze", "fer2013")},
            "base": job.get("base"),
            "created": job.get("created"),
            "phases": progress.get("phases", []),  # [[phase, time it began]]
        }
        if state == "done":
            model = job_dir / MODEL_FILE
            out["model"] = str(model) if model.is_file() and stays_in(job_dir, model) else None
            out["report"] = result.get("report")
            out["epoch"] = len(history) or out["epoch"]
            out["seconds"] = round(result.get("finished", 0) - job.get("created", 0), 1)
        elif state == "failed":
            out["error"] = result.get("error")
        return out

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel running job ``job_id`` (SIGTERM to its process group, SIGKILL `KILL_AFTER_S` later); its `status`.
        `JobConflict` when it has ended."""
        job_dir = self.root / job_id
        with self._lock:  # a job being started has its process (and pid) once `start` lets go
            state, job, _ = self._state(job_dir)
            if state != "running":
                raise JobConflict(f"fine-tuning job {job_id} has ended ({state}): nothing to cancel")
            write_json(job_dir / "cancelled.json", {"cancelled": time.time()})
            pid = job.get("pid")
            if isinstance(pid, int) and self._alive(job_dir, job):
                with contextlib.suppress(ProcessLookupError, PermissionError):  # it has ended meanwhile
                    os.killpg(pid, signal.SIGTERM)
        threading.Thread(target=self._reap, args=(job_dir, pid), daemon=True).start()
        return self.status(job_id)

    def _reap(self, job_dir: Path, pid: Any) -> None:
        """Wait for a cancelled job's process ``pid`` to end (SIGKILL after `KILL_AFTER_S`), then remove the model
        file it may have written after the cancel and any temporary file a killed write left behind."""
        proc = self._procs.get(job_dir.name)

        def runs() -> bool:
            return (proc.poll() is None) if proc else isinstance(pid, int) and process_runs(pid, job_dir)

        deadline = time.monotonic() + KILL_AFTER_S
        while runs() and time.monotonic() < deadline:
            time.sleep(0.2)
        if runs():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if proc:
                proc.wait()
        (job_dir / MODEL_FILE).unlink(missing_ok=True)
        for part in job_dir.rglob(".*.part"):
            part.unlink(missing_ok=True)


# ---- the job's own process -----------------------------------------------------------------------------------------
def run_job(job_dir: str | Path) -> dict[str, Any]:
    """Run the fine-tuning job of ``job_dir`` (see the module docstring); returns what ``result.json`` says."""
    # start-up: the web server imports this module and stays free of torch; only the job's process trains
    from mimic.callbacks.progress import set_phase
    from mimic.finetune import compose_train, fer2013_test, held_out_photos, job_config, score
    from mimic.train import run as train

    job_dir = Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text())
    progress = job_dir / PROGRESS
    set_phase(progress, "loading data")
    cfg = job_config(compose_train(["+finetune=webcam", "logger=none"], job_dir / ".run"), job, job_dir, progress)
    results = train(cfg)
    model = job_dir / MODEL_FILE  # appears whole, once the run has ended well
    atomic_write(model, lambda tmp: shutil.copyfile(results["best_checkpoint"], tmp))
    set_phase(progress, "evaluating")
    classes = list(job["classes"])
    images, labels = held_out_photos(job_dir / "data", classes, OmegaConf.to_container(cfg.model.preprocess))
    monitor = cfg.callbacks.model_checkpoint.monitor
    kept = f"the epoch of the best {monitor}" if monitor else "the last epoch (no photos to validate on)"
    report: dict[str, Any] = {"classes": classes, "before": {}, "after": {}, "kept": kept}
    if note := photo_note(job.get("captured", {})):
        report["note"] = note
    for when, ckpt in (("before", job["base"]), ("after", model)):
        report[when]["held_out"] = score(ckpt, images, labels, classes)
    fer, fer_classes = job["fer2013_path"], [c for c in classes if c in FER2013_CLASSES]
    if fer2013_found(fer) and fer_classes:
        report["fer2013_classes"] = fer_classes
        found = locate_fer2013(fer)[1]  # the model every job starts from is scored once per FER2013 file and classes
        key = [sha256_file(job["base"]), str(found.resolve()), found.stat().st_size, found.stat().st_mtime_ns]
        before = cached([*key, fer_classes], lambda: score(job["base"], *fer2013_test(fer, fer_classes), fer_classes))
        report["before"]["fer2013"] = before
        report["after"]["fer2013"] = score(model, *fer2013_test(fer, fer_classes), fer_classes)
    result = {"state": "done", "model": str(model), "report": report, "finished": time.time()}
    write_json(job_dir / "result.json", result)
    return result


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds: half-written temporary files are removed on the way out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m mimic.jobs JOB_FOLDER``: run the job, and say in result.json how it ended."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.exit("usage: python -m mimic.jobs JOB_FOLDER")
    job_dir = Path(args[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_job(job_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        write_json(job_dir / "result.json", {"state": "failed", "error": str(e)})
        sys.exit(2)
    except Exception as e:
        traceback.print_exc()
        error = f"the fine-tuning job failed ({type(e).__name__}: {e}); its log: personalise/{job_dir.name}/log.txt"
        write_json(job_dir / "result.json", {"state": "failed", "error": error})
        sys.exit(1)


if __name__ == "__main__":
    main()
