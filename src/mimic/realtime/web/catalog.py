"""The models a client of the web page may choose (`Catalog`): the run's ``ckpt=``, the bundled model and every model
file under ``ui.models_dir`` (not through a symlink that leads out of it; under the fine-tuning jobs' folder only the
models of jobs that are done), each named by an id (a hash of its path: a client never names a path), with its card
read once, its predictor loaded once, and its net's parts for fine-tuning.

Everything that loads a model takes `Catalog.loading`, one lock: loading a checkpoint's weights imports torch the
first time, and two threads importing torch (or onnxruntime) at once break now and then. Reading a model's card
imports neither (`mimic.models.predictor.read_model_card`), so a server whose models are all ONNX files never imports
torch, listing the bundled checkpoint included.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from omegaconf import DictConfig

import mimic
from mimic.errors import UserError
from mimic.jobs import MODEL_FILE, ended_well, jobs_root
from mimic.models.bundled import bundled_path, resolve_ckpt
from mimic.models.card import ModelCard
from mimic.models.onnx_model import is_onnx
from mimic.models.predictor import Predictor, read_model_card
from mimic.realtime.pipeline import predictor_from_config

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".ckpt", ".onnx")
SCAN_DEPTH, SCAN_FILES = 8, 500  # how deep and how many model files the picker looks for under ui.models_dir
PREDICTORS_KEPT = 4
ID = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class ModelEntry:
    """A model a client may choose: ``id`` a hash of its resolved path; ``path`` never leaves the server."""

    id: str
    name: str
    kind: str  # bundled, checkpoint or onnx
    classes: list[str]
    accuracy: float | None
    path_hint: str
    path: Path
    stamp: tuple[int, int]  # mtime and size: a rewritten file (last.ckpt) is read again

    def to_json(self) -> dict[str, Any]:
        keys = ("id", "name", "kind", "classes", "accuracy", "path_hint")
        return {k: getattr(self, k) for k in keys}


def _accuracy(path: Path, about: dict) -> float | None:
    """The test accuracy the card states (the bundled model), or the one the training run's test_metrics.json beside
    the checkpoint's folder states for this file."""
    test = about.get("test")
    if isinstance(test, dict) and isinstance(test.get("accuracy"), int | float):
        return float(test["accuracy"])
    for metrics in (path.parent / "test_metrics.json", path.parent.parent / "test_metrics.json"):
        try:
            report = json.loads(metrics.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or not isinstance(report.get("test/acc"), int | float):
            continue
        named = report.get("best_checkpoint") or report.get("checkpoint")
        if named and Path(str(named)).name == path.name:
            return round(float(report["test/acc"]), 4)
    return None


def _hint(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd().resolve()))
    with contextlib.suppress(ValueError):
        return str(Path("mimic") / path.relative_to(Path(mimic.__file__).resolve().parent))
    return path.name


def _checkpoints() -> Any:
    """`mimic.models.checkpoint`, imported when the first checkpoint is read (callers hold `Catalog.loading`)."""
    import mimic.models.checkpoint  # start-up: it imports torch, which a server of ONNX models never needs

    return mimic.models.checkpoint


class Catalog:
    """The models a client may choose: the run's ``ckpt=`` (``default``), the bundled model and every ``*.ckpt`` /
    ``*.onnx`` under ``ui.models_dir``, rescanned by `scan`; each file's card is read once (again when it changes) and
    a file that is not a readable mimic model is skipped with a log line. `predictor` loads each model once."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        root = cfg.ui.get("models_dir")
        self.root = Path(str(root)).expanduser() if root else None
        self.jobs = jobs_root(cfg)  # the fine-tuning jobs' folder: under it, only done jobs' models are on offer
        self._cards: dict[Path, tuple[tuple[int, int], ModelEntry | None]] = {}
        self._predictors: OrderedDict[tuple[str, tuple[int, int]], Predictor] = OrderedDict()
        self._scan_lock = threading.Lock()
        self.loading = threading.Lock()  # held while anything loads a model (see the module docstring)
        self.default = self.entry(resolve_ckpt(cfg.get("ckpt")), strict=True)
        self.entries: dict[str, ModelEntry] = {self.default.id: self.default}

    def _card(self, path: Path) -> ModelCard:
        with self.loading:  # an ONNX file's card opens an onnxruntime session: one at a time
            return read_model_card(path)

    def entry(self, path: Path, strict: bool = False) -> ModelEntry | None:
        """The entry of a model file; None (logged) for one that cannot be read, unless ``strict``."""
        path = path.expanduser().resolve()
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if (cached := self._cards.get(path)) and cached[0] == stamp:
                return cached[1]
            card = self._card(path)
        except OSError as e:
            if strict:
                raise UserError(f"ckpt={path}: {e.strerror}") from None
            log.info("model picker: skipping %s (%s)", path, e)
            return None
        except UserError as e:
            if strict:
                raise
            log.info("model picker: skipping %s (%s)", path, e)
            return None
        bundled = False
        with contextlib.suppress(UserError):
            bundled = path == bundled_path().resolve()
        kind = "bundled" if bundled else "onnx" if is_onnx(path) else "checkpoint"
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        name = f"{path.stem} (bundled)" if bundled else f"{folder.name}/{path.name}"
        model_id = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        accuracy = _accuracy(path, card.about)
        entry = ModelEntry(model_id, name, kind, list(card.class_names), accuracy, _hint(path), path, stamp)
        self._cards[path] = (stamp, entry)
        return entry

    def describe(self, path: str | None) -> dict[str, Any] | None:
        """What a client may see of the model file ``path`` (its entry), None when there is none or it is unreadable."""
        found = self.entry(Path(path)) if path else None
        return found.to_json() if found is not None else None

    def _files(self) -> list[Path]:
        if self.root is None or not self.root.is_dir():
            return []
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.root):  # symlinked folders are not followed
            depth = len(Path(folder).relative_to(self.root).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and depth < SCAN_DEPTH)
            found += [
                p for f in sorted(files) if f.lower().endswith(MODEL_SUFFIXES) and self._offered(p := Path(folder, f))
            ]
            if len(found) >= SCAN_FILES:
                log.warning("model picker: more than %d model files under %s; listing the first", SCAN_FILES, self.root)
                break
        stamps = {p: p.stat().st_mtime if p.exists() else 0 for p in found[:SCAN_FILES]}
        return sorted(stamps, key=stamps.get, reverse=True)  # the newest (a fresh fine-tune) first

    def _offered(self, path: Path) -> bool:
        """Whether the model file ``path`` found under ui.models_dir is on offer: not when it is a symlink out of it
        (logged), and under the jobs' folder only ``<job>/`` `MODEL_FILE` of a job that is done (`ended_well`)."""
        if not path.resolve().is_relative_to(self.root.resolve()):
            log.info("model picker: skipping %s (a symlink out of ui.models_dir)", path)
            return False
        if not path.is_relative_to(self.jobs):
            return True
        where = path.relative_to(self.jobs).parts
        return len(where) == 2 and where[1] == MODEL_FILE and ended_well(self.jobs / where[0])

    def scan(self) -> list[ModelEntry]:
        """Every model on offer now: the default first, the bundled model, then the newest files first."""
        with self._scan_lock:
            paths = []
            with contextlib.suppress(UserError):
                paths.append(bundled_path())
            entries: dict[str, ModelEntry] = {}
            for entry in [self.default] + [self.entry(p) for p in paths + self._files()]:
                if entry is not None:
                    entries.setdefault(entry.id, entry)
            self.entries = entries
            return list(entries.values())

    def get(self, model_id: Any) -> ModelEntry:
        """The entry of an id from `scan`: 400 for anything that is not an id (a path is never opened), 404 for an
        unknown one."""
        if not isinstance(model_id, str) or not ID.fullmatch(model_id):
            raise HTTPException(400, "a model is named by its id (12 hex digits, from GET /api/models), never a path")
        if model_id not in self.entries:
            self.scan()
        if model_id not in self.entries:
            raise HTTPException(404, f"no model has the id {model_id}: GET /api/models lists them")
        return self.entries[model_id]

    def predictor(self, entry: ModelEntry) -> Predictor:
        """The entry's predictor, loaded once (the last few used are kept)."""
        key = (entry.id, entry.stamp)
        with self.loading:
            if key not in self._predictors:
                log.info("loading %s", entry.path)
                self._predictors[key] = predictor_from_config(self.cfg, entry.path)
                while len(self._predictors) > PREDICTORS_KEPT:
                    self._predictors.popitem(last=False)
            self._predictors.move_to_end(key)
            return self._predictors[key]

    def trainable(self, entry: ModelEntry) -> tuple[list[str], list[str]]:
        """(class names, the net's parts a fine-tuning job may freeze) of a checkpoint; a `UserError` for an ONNX
        file, which holds no training state."""
        if entry.kind == "onnx":
            raise UserError(f"{entry.name} is an exported ONNX file: fine-tuning needs a .ckpt model; pick one")
        with self.loading:
            net, card = _checkpoints().load_net(entry.path)
        head = net.head_linear.split(".")[0]
        return list(card.class_names), [n for n, _ in net.named_children() if n != head]
