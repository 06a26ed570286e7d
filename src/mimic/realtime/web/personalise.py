"""Teach the model your face from the web page (issue 13): photos per class, a fine-tuning job in the background, the
before/after report, and the new model in the model picker.

`personalise_router` gives the endpoints the server mounts next to ``WS /ws/live``:

- ``POST /api/captures`` (multipart form: ``class``, ``file`` one JPEG or PNG frame): the frame's largest face goes
  through the capture script's detection, alignment and crop (`mimic.data.capture`) into
  ``<captures>/<index>_<class>/NNNN.png``; nothing existing is overwritten. A frame without a face is not saved: 422
  with ``"face": false``. ``GET /api/captures``: the classes with their photo counts and file names;
  ``GET /api/captures/<class>/<file>``: one photo; ``DELETE /api/captures/<class>/<file>`` deletes it. Class and file
  names are checked: a name never leads out of the captures folder.
- ``GET /api/finetune/options?model=<id>``: what a job of that model may set, and whether FER2013 is on disk.
  ``POST /api/finetune`` (JSON ``{"model": id, "epochs": int, "freeze": [module names], "fer2013": bool | null}``,
  every field optional, typed and range-checked) holds out part of each class's photos, then starts
  ``python -m mimic.finetune JOB_FOLDER`` as a process of its own: ``{"id": job}``. ``GET /api/finetune`` lists the
  jobs (newest first), ``GET /api/finetune/<job>`` gives one: ``state`` (running, done, failed, cancelled), ``phase``,
  ``epoch``/``epochs``, ``step``/``steps``, ``metrics`` (the last epoch's) and ``history``; when done the new model's
  entry (``"model": {"id": ...}``, listed by ``GET /api/models``) and the ``report``; when failed the ``error``.
  ``DELETE /api/finetune/<job>`` cancels a running job (SIGTERM to its process group).

Jobs live in folders under ``<models_dir>/personalise/`` (`mimic.finetune` describes their files), so a restarted
server finds them again, running or finished. One job runs at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# imported here, when the server starts, not in the request threads (see mimic.data's docstring)
from mimic.data.capture import class_folder, face_crop, save_crop
from mimic.data.fer2013 import found as fer2013_found
from mimic.data.folders import NOT_CLASSES, is_class_dir, list_files, read_image, scan_class_folders
from mimic.errors import UserError
from mimic.faces import for_photos, load_detector
from mimic.io import IMAGE_SUFFIXES, write_json
from mimic.labels import canonical, check_class_name

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
JOB_ID = re.compile(r"^\d{8}-\d{6}(-\d+)?$")
HELD_OUT, VAL = 0.25, 0.15  # of each class's photos: held out for the report, and for validation
MIN_PHOTOS = 4  # a class with photos needs this many: one held out, one to validate, two to train on
MAX_EPOCHS = 100
KILL_AFTER_S = 20.0  # a cancelled job that has not ended this long after SIGTERM gets SIGKILL


class FinetuneSettings(BaseModel):
    """The settings a client may send for a job; nothing else is accepted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(None, max_length=64)
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    freeze: list[str] | None = Field(None, max_length=16)
    fer2013: bool | None = None


class Personalise:
    """The captures folder and the jobs of one server. ``models`` is the server's model list (`server.Models`:
    ``get(id)`` the entry of an id, ``entry(path)`` the entry of a file); ``default()`` the entry of the model new
    connections start with."""

    def __init__(self, cfg: DictConfig, models: Any, default: Callable[[], Any]) -> None:
        self.models, self.default = models, default
        paths = cfg.paths
        self.captures = Path(_setting(cfg, "captures", f"{paths.data_dir}/webcam")).expanduser()
        self.fer2013 = Path(_setting(cfg, "fer2013", f"{paths.data_dir}/fer2013")).expanduser()
        models_dir = OmegaConf.select(cfg, "ui.models_dir", default=None) or paths.log_dir
        self.jobs = Path(str(models_dir)).expanduser() / "personalise"
        self.detector_cfg = OmegaConf.to_container(cfg.detector, resolve=True) if "detector" in cfg else "yunet"
        recipe = OmegaConf.load(str(files("mimic.conf") / "finetune" / "webcam.yaml"))
        self.default_epochs = int(recipe.trainer.max_epochs)
        self.default_freeze = list(recipe.callbacks.freeze.patterns)
        self.max_bytes = int(OmegaConf.select(cfg, "ui.max_frame_bytes", default=None) or 4_000_000)
        self._detector = None
        self._lock = threading.Lock()  # saving a photo, starting a job
        self._procs: dict[str, subprocess.Popen] = {}

    # ---- captures ----------------------------------------------------------------------------------------------
    def detector(self):
        if self._detector is None:
            self._detector = for_photos(load_detector(self.detector_cfg))
        return self._detector

    def folders(self) -> dict[str, Path]:
        """{class name: folder} of the captures folder (empty when it does not exist yet)."""
        if not self.captures.is_dir() or not any(is_class_dir(p) for p in self.captures.iterdir()):
            return {}
        return {f.name: f.path for f in scan_class_folders(self.captures)}

    def listing(self) -> dict[str, Any]:
        classes = []
        for name, folder in self.folders().items():
            images = [p.name for p in list_files(folder)[0]]
            classes.append({"name": name, "folder": folder.name, "count": len(images), "files": images})
        return {"folder": str(self.captures), "classes": classes, "min_photos": MIN_PHOTOS}

    def counts(self) -> dict[str, int]:
        return {c["name"]: c["count"] for c in self.listing()["classes"]}

    def save(self, label: str, data: bytes) -> dict[str, Any]:
        name = class_name(label)
        if len(data) > self.max_bytes:
            raise ApiError(413, f"the photo has {len(data):,} bytes, more than ui.max_frame_bytes={self.max_bytes:,}")
        frame = read_image(data)
        if frame is None:
            raise ApiError(400, "the photo is not an image OpenCV can decode (send a JPEG or PNG)")
        with self._lock:  # one detector; and two new classes at once must not take the same index
            crop = face_crop(frame, self.detector())
            if crop is None:
                raise ApiError(422, "no face found in the photo: nothing saved", face=False, counts=self.counts())
            folder = class_folder(self.captures, name)
            path = save_crop(folder, crop)
        return {"saved": path.name, "class": name, "folder": folder.name, "face": True, "counts": self.counts()}

    def photo(self, label: str, file: str) -> Path:
        folder = self.folders().get(class_name(label))
        if folder is None:
            raise ApiError(404, f"no photos of class {label!r}")
        if not FILE_NAME.fullmatch(file) or Path(file).suffix.lower() not in IMAGE_SUFFIXES:
            raise ApiError(400, f"{file!r} is not the name of a photo")
        path = folder / file
        if not path.is_file() or path.resolve().parent != folder.resolve():
            raise ApiError(404, f"no photo {file!r} in class {label!r}")
        return path

    # ---- jobs --------------------------------------------------------------------------------------------------
    def options(self, model_id: str | None) -> dict[str, Any]:
        model_id, base, card, modules = self._base(model_id)
        return {
            "model": model_id,
            "classes": card.class_names,
            "epochs": {"default": self.default_epochs, "min": 1, "max": MAX_EPOCHS},
            "freeze": {"choices": modules, "default": [m for m in self.default_freeze if m in modules]},
            "fer2013": {"found": fer2013_found(self.fer2013), "path": str(self.fer2013)},
            "min_photos": MIN_PHOTOS,
            "held_out": HELD_OUT,
        }

    def _base(self, model_id: str | None):
        """(id, file, card, the net's parts a job may freeze) of the model a job starts from."""
        from mimic.models.checkpoint import load_net

        entry = self.models.get(model_id) if model_id is not None else self.default()
        if entry.kind == "onnx":
            raise ApiError(400, f"{entry.name} is an exported ONNX file: fine-tuning needs a .ckpt model; pick one")
        with self.models.loading:  # not while another thread loads a model (see `server.Models`)
            net, card = load_net(entry.path)
        head = net.head_linear.split(".")[0]
        return entry.id, entry.path, card, [n for n, _ in net.named_children() if n != head]

    def entry(self, path: str | None) -> dict[str, Any] | None:
        found = self.models.entry(Path(path)) if path else None
        return found.to_json() if found is not None else None

    def start(self, settings: FinetuneSettings) -> dict[str, Any]:
        with self._lock:
            running = [j for j in self.job_ids() if self._state(self.jobs / j)[0] == "running"]
            if running:
                raise ApiError(409, f"fine-tuning job {running[0]} is running: wait for it to end or cancel it")
            model_id, base, card, modules = self._base(settings.model)
            freeze = settings.freeze
            if freeze is None:
                freeze = [m for m in self.default_freeze if m in modules]
            unknown = [m for m in freeze if m not in modules]
            if unknown:
                raise ApiError(400, f"freeze: {unknown} are not parts of this model; choose from {modules}")
            found = fer2013_found(self.fer2013)
            if settings.fer2013 and not found:
                raise ApiError(400, f"FER2013 is not on disk at {self.fer2013}: fine-tune with fer2013 off")
            merge = found if settings.fer2013 is None else settings.fer2013
            counts = self.counts()
            captured = [c for c, n in counts.items() if n]
            few = [f"{c} ({counts[c]})" for c in captured if counts[c] < MIN_PHOTOS]
            if not captured or few:
                raise ApiError(
                    400,
                    f"every class you photograph needs at least {MIN_PHOTOS} photos"
                    + (f"; these have fewer: {', '.join(few)}" if few else ": take some first"),
                )
            classes = list(card.class_names) + [c for c in captured if c not in card.class_names]
            if not merge:
                classes = [c for c in classes if c in captured]
                if len(classes) < 2:
                    raise ApiError(400, "without FER2013 a model needs photos of at least two classes")
            job_id, job_dir = self._new_job_dir()
            split = snapshot(self.folders(), job_dir / "data", captured, seed=0)
            job = {
                "id": job_id,
                "base": str(base),
                "base_id": model_id,
                "classes": classes,
                "captured": split,
                "epochs": settings.epochs or self.default_epochs,
                "freeze": freeze,
                "fer2013": merge,
                "fer2013_path": str(self.fer2013),
                "created": time.time(),
            }
            write_json(job_dir / "job.json", job)
            with open(job_dir / "log.txt", "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "mimic.finetune", str(job_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: cancelling reaches its children too
                )
            self._procs[job_id] = proc
            write_json(job_dir / "job.json", {**job, "pid": proc.pid})
        log.info("fine-tuning job %s started (pid %d): %s", job_id, proc.pid, job_dir)
        return {"id": job_id, **self.status(job_id)}

    def _new_job_dir(self) -> tuple[str, Path]:
        self.jobs.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            job_id = stamp if n == 0 else f"{stamp}-{n}"
            try:
                (self.jobs / job_id).mkdir()
            except FileExistsError:
                continue
            return job_id, self.jobs / job_id
        raise ApiError(503, "could not make a job folder")

    def job_ids(self) -> list[str]:
        """Every job folder's id, newest first."""
        if not self.jobs.is_dir():
            return []
        found = [p.name for p in self.jobs.iterdir() if JOB_ID.fullmatch(p.name) and (p / "job.json").is_file()]
        return sorted(found, reverse=True)

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id) or not (self.jobs / job_id / "job.json").is_file():
            raise ApiError(404, f"no fine-tuning job {job_id!r}")
        return self.jobs / job_id

    def _alive(self, job_dir: Path, job: dict[str, Any]) -> bool:
        proc = self._procs.get(job_dir.name)
        if proc is not None:
            return proc.poll() is None
        pid = job.get("pid")
        return isinstance(pid, int) and process_runs(pid, job_dir)

    def _state(self, job_dir: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(state, job.json, result.json or {})."""
        job = _read_json(job_dir / "job.json")
        result = _read_json(job_dir / "result.json")
        if result.get("state") in ("done", "failed"):
            return result["state"], job, result
        if (job_dir / "cancelled.json").is_file():
            return "cancelled", job, result
        if self._alive(job_dir, job):
            return "running", job, result
        if "pid" not in job and time.time() - job.get("created", 0) < 30:
            return "running", job, result  # being started
        error = f"the job's process ended without a result; its log: {job_dir / 'log.txt'}"
        return "failed", job, {"error": error}

    def status(self, job_id: str) -> dict[str, Any]:
        job_dir = self.job_dir(job_id)
        state, job, result = self._state(job_dir)
        progress = _read_json(job_dir / "progress.json")
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
            "base": self.entry(job.get("base")),
            "created": job.get("created"),
            "phases": progress.get("phases", []),  # [[phase, time it began]]
        }
        if state == "done":
            out["model"] = self.entry(result.get("model"))
            out["report"] = result.get("report")
            out["epoch"] = len(history) or out["epoch"]
            out["seconds"] = round(result.get("finished", 0) - job.get("created", 0), 1)
        elif state == "failed":
            out["error"] = result.get("error")
        return out

    def cancel(self, job_id: str) -> dict[str, Any]:
        job_dir = self.job_dir(job_id)
        state, job, _ = self._state(job_dir)
        if state != "running":
            raise ApiError(409, f"fine-tuning job {job_id} has ended ({state}): nothing to cancel")
        write_json(job_dir / "cancelled.json", {"cancelled": time.time()})
        pid = job.get("pid")
        if isinstance(pid, int) and self._alive(job_dir, job):
            with contextlib.suppress(ProcessLookupError, PermissionError):  # it has ended meanwhile
                os.killpg(pid, signal.SIGTERM)
            threading.Thread(target=self._reap, args=(job_dir, pid), daemon=True).start()
        return self.status(job_id)

    def _reap(self, job_dir: Path, pid: int) -> None:
        """Wait for a cancelled job's process to end (SIGKILL after `KILL_AFTER_S`), then remove any temporary file
        a killed write left behind."""
        proc = self._procs.get(job_dir.name)
        deadline = time.monotonic() + KILL_AFTER_S
        while time.monotonic() < deadline:
            if (proc.poll() is not None) if proc else not process_runs(pid, job_dir):
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if proc:
                proc.wait()
        for part in job_dir.rglob(".*.part"):
            part.unlink(missing_ok=True)


def snapshot(folders: dict[str, Path], out: Path, classes: list[str], seed: int = 0) -> dict[str, dict[str, int]]:
    """Copy the photos of ``classes`` into ``out/{train,val,test}/<class>/``: per class a seeded draw of `HELD_OUT`
    of them (at least one) for the report, `VAL` (at least one) for validation, the rest to train on. Exact duplicates
    are copied once. Returns {class: {split: count}}."""
    counts = {}
    for i, name in enumerate(classes):
        unique: dict[str, Path] = {}
        for path in list_files(folders[name])[0]:
            unique.setdefault(hashlib.sha1(path.read_bytes()).hexdigest(), path)
        photos = sorted(unique.values())
        order = np.random.default_rng([seed, i]).permutation(len(photos))
        n_test = max(1, round(HELD_OUT * len(photos)))
        n_val = max(1, round(VAL * len(photos)))
        parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
        for split, idx in parts.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in idx:
                shutil.copy2(photos[k], folder / photos[k].name)
        counts[name] = {split: len(idx) for split, idx in parts.items()}
    return counts


def class_name(label: str) -> str:
    """A class name a client sent, canonical; an `ApiError` unless `mimic.labels.CLASS_NAME` accepts it."""
    try:
        name = canonical(check_class_name(label, "label"))
    except UserError as e:
        raise ApiError(400, str(e)) from None
    if name in NOT_CLASSES:
        raise ApiError(400, f"label: {label!r} is not a class name: it names the folder of photos not sorted yet")
    return name


class ApiError(Exception):
    """An answer other than 200: ``status`` and the JSON ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self), **self.extra}, status_code=self.status)


def personalise_router(cfg: DictConfig, models: Any, default: Callable[[], Any]) -> APIRouter:
    """The endpoints of the module docstring, for the server's ``app.include_router`` (see `Personalise`)."""
    p = Personalise(cfg, models, default)
    router = APIRouter()

    def answer(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ApiError as e:
            return e.response()
        except UserError as e:  # the captures folder's layout, a model file, ...: the user's to fix
            return JSONResponse({"error": str(e)}, status_code=409)

    @router.get("/api/captures")
    def list_captures():
        return answer(p.listing)

    @router.post("/api/captures")
    def add_capture(label: Annotated[str, Form(alias="class")] = "", file: Annotated[UploadFile | None, File()] = None):
        if file is None:
            return ApiError(400, "send the photo as the form field 'file'").response()
        return answer(lambda: p.save(label, file.file.read()))

    @router.get("/api/captures/{label}/{file}")
    def get_capture(label: str, file: str):
        return answer(lambda: FileResponse(p.photo(label, file), headers={"Cache-Control": "no-cache"}))

    @router.delete("/api/captures/{label}/{file}")
    def delete_capture(label: str, file: str):
        def delete():
            path = p.photo(label, file)
            path.unlink()
            return {"deleted": path.name, "class": class_name(label), "counts": p.counts()}

        return answer(delete)

    @router.get("/api/finetune/options")
    def finetune_options(model: str | None = None):
        return answer(lambda: p.options(model))

    @router.get("/api/finetune")
    def list_jobs():
        return answer(lambda: {"jobs": [p.status(j) for j in p.job_ids()]})

    @router.post("/api/finetune")
    async def start_job(request: Request):
        try:
            body = await request.json()
            settings = FinetuneSettings.model_validate(body if body is not None else {})
        except ValueError as e:
            return ApiError(400, _settings_error(e)).response()
        return await run_in_threadpool(answer, lambda: p.start(settings))

    @router.get("/api/finetune/{job}")
    def get_job(job: str):
        return answer(lambda: p.status(job))

    @router.delete("/api/finetune/{job}")
    def cancel_job(job: str):
        return answer(lambda: p.cancel(job))

    router.personalise = p  # for tests and the server
    return router


def _settings_error(e: ValueError) -> str:
    if not isinstance(e, ValidationError):
        return 'send the settings as a JSON object, e.g. {"epochs": 6}'
    problems = []
    for err in e.errors():
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        problems.append(f"{where}: {err['msg']}")
    return "fine-tuning settings: " + "; ".join(problems)


def _setting(cfg: DictConfig, key: str, default: str) -> str:
    return str(OmegaConf.select(cfg, f"ui.personalise.{key}", default=None) or default)


def _read_json(path: Path) -> dict[str, Any]:
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
