"""A run in a folder that already holds one keeps the earlier run's record: Hydra saves every run's composed config,
its own config and its overrides in the run folder's ``.hydra/``, and would replace an earlier run's there. That
happens when a run names an existing folder, ``hydra.run.dir=<an earlier run>``, for instance to resume it beside its
checkpoints (``ckpt_path=<that run>/checkpoints/last.ckpt``).

`KeepEarlierRuns` is a Hydra callback (``hydra.callbacks`` in conf/hydra/default.yaml, so every command has it):

- a single run into a folder with ``.hydra/`` saves its own in the first free ``.hydra-1/``, ``.hydra-2/``, ... (as a
  second run there writes ``test_metrics-1.json``; `mimic.io.free_path`), so ``.hydra/`` stays the first run's, the
  recipe `scripts/make_bundled_model.py` reads;
- a multirun into a sweep folder that already holds a multirun's jobs (``hydra.sweep.dir=<an earlier one>``) is
  refused before any job starts: its jobs would reuse the earlier jobs' folders by number, and the sweeper replaces
  the sweep's own files. Each multirun gets a dated folder of its own unless ``hydra.sweep.dir`` names one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from mimic.cli import user_errors
from mimic.errors import UserError
from mimic.io import free_path


class KeepEarlierRuns(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        subdir = config.hydra.output_subdir
        if subdir is None:
            return
        folder = Path(str(config.hydra.run.dir)).absolute()
        free = free_path(folder / str(subdir))
        if free.name != subdir:
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = free.name

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir)).absolute()
        jobs = sorted(p.parent.parent.name for p in sweep.glob("*/.hydra*/config.yaml"))
        if jobs:
            with user_errors():
                raise UserError(
                    f"hydra.sweep.dir={sweep}: it holds an earlier multirun's jobs ({', '.join(jobs[:5])}"
                    f"{', ...' if len(jobs) > 5 else ''}), which this one would overwrite. Name a new folder, or "
                    "leave hydra.sweep.dir out: each multirun then gets a dated folder of its own."
                )
