"""ProgressFile: a training run's progress as a JSON file another process reads (the web page's fine-tuning jobs,
`mimic.jobs`, write their folder's ``progress.json`` with it).

The file says: ``phase`` (what the run does now) and ``phases`` (``[[phase, time it began], ...]``), ``epoch`` and
``epochs``, ``step`` and ``steps``, ``history`` (per finished epoch: ``epoch``, the training ``loss``, every
validation accuracy ``acc*`` and the ``time``) and ``updated``. When it is written:

- `set_phase` (before and after the run: loading data, evaluating): the phase, keeping what else the file says.
- ``on_train_start``, ``on_train_epoch_end``: the whole state; ``on_train_batch_end``: the same, at most once a second.
- ``on_fit_end``: the phase becomes ``calibrating`` (the best checkpoint's temperature is fitted next).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from mimic.io import write_json


def read_progress(path: Path) -> dict[str, Any]:
    """What a progress file says; ``{"history": []}`` when there is none yet (or it cannot be read)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"history": []}


def set_phase(path: Path, phase: str) -> None:
    """Set the phase in a progress file, keeping what else it says."""
    state = read_progress(path)
    phases = [*state.get("phases", []), [phase, time.time()]]
    write_json(path, {**state, "phase": phase, "phases": phases, "updated": time.time()})


class ProgressFile(L.Callback):
    """Writes the run's progress to the JSON file ``path`` (the module docstring says what and when)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.history: list[dict[str, Any]] = []
        self.phases = read_progress(self.path).get("phases", [])  # from set_phase before the run
        self._written = 0.0

    def write(self, trainer: L.Trainer, phase: str, force: bool = True) -> None:
        if not force and time.monotonic() - self._written < 1.0:
            return
        self._written = time.monotonic()
        if not self.phases or self.phases[-1][0] != phase:
            self.phases.append([phase, time.time()])
        steps = trainer.estimated_stepping_batches
        state = {
            "phase": phase,
            "epoch": trainer.current_epoch,
            "epochs": trainer.max_epochs,
            "step": trainer.global_step,
            "steps": int(steps) if np.isfinite(steps) else None,
            "history": self.history,
            "phases": self.phases,
            "updated": time.time(),
        }
        write_json(self.path, state)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, "training")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.write(trainer, "training", force=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row = {"epoch": trainer.current_epoch + 1, "loss": m.get("train/loss_epoch"), "time": time.time()}
        row |= {k.removeprefix("val/"): v for k, v in m.items() if k.startswith("val/acc")}
        self.history.append(row)
        self.write(trainer, "training")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, "calibrating")
