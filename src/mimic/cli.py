"""The command-line entry points (`mimic-train`, `mimic-live`, `mimic-evaluate`; `train.py`, `realtime.py` and
`scripts/evaluate.py` in the checkout call the same functions) and what they share: user mistakes end in one clear
message and exit code 2, never a traceback. Anything else is a bug and keeps its traceback.

`mimic-train` returns to Hydra the validation score its best checkpoint was selected on (`objective`): the value a
sweeper such as Optuna's (``hparams_search=``) optimises."""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from mimic.errors import UserError
from mimic.extras import check_command_line
from mimic.settings import check_settings

CONFIGS = "pkg://mimic.conf"  # the configs ship inside the package, so the commands work from any folder


def find_user_error(
    exc: BaseException | None, through: tuple[type[BaseException], ...] = (InstantiationException,)
) -> BaseException | None:
    """The user mistake behind ``exc`` (looking through wrappers of the types ``through``: Hydra's instantiation
    error), or None for a bug."""
    while exc is not None:
        if isinstance(exc, UserError | FileNotFoundError):
            return exc
        exc = exc.__cause__ if isinstance(exc, through) else None
    return None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn user mistakes raised inside the block into ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except Exception as e:
        found = find_user_error(e)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        sys.exit(2)


def _command(
    config_name: str, function: Callable[[DictConfig], str], returns: Callable[[Any], Any] = lambda result: result
) -> Callable[[], None]:
    """A Hydra main: compose ``<config_name>.yaml`` from the command line, check its settings, call the function
    ``function(cfg)`` names as ``module:name`` (imported only then, for start-up time: ``--help`` and settings errors
    come fast) and return ``returns(its result)`` to Hydra (a sweeper reads it; a single run drops it)."""

    @hydra.main(config_path=CONFIGS, config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig) -> Any:
        with user_errors():
            check_settings(cfg, config_name)
            module, name = function(cfg).split(":")
            return returns(getattr(importlib.import_module(module), name)(cfg))

    return main


def objective(results: dict) -> float | None:
    """What `mimic-train` returns: the validation score the checkpoint callback selected the best checkpoint on
    (``val/acc``; `mimic.train.run` names it ``results["monitor"]``), never a test score; None without one."""
    return results.get(results.get("monitor", ""))


def _front_end(cfg: DictConfig) -> str:
    """The live front-end ``ui.name`` picks: the OpenCV window or the web page."""
    return "mimic.realtime.web.server:serve" if cfg.get("ui") and cfg.ui.name == "web" else "mimic.realtime.window:run"


_train = _command("train", lambda cfg: "mimic.train:run", objective)
_analyze = _command("realtime", lambda cfg: "mimic.analyze:run", lambda results: None)
evaluate = _command("evaluate", lambda cfg: "mimic.evaluate:run")
_live = _command("realtime", _front_end)


def train() -> None:
    """Training. Choices on the command line that need an optional extra (``hparams_search=``, ``hydra/launcher=``,
    ``logger=mlflow``) are checked first: Hydra fails on a missing sweeper or launcher while composing."""
    with user_errors():
        check_command_line(sys.argv[1:])
    _train()


def live() -> None:
    """Live recognition; ``--list-cameras`` is the familiar flag for the override ``list_cameras=true``."""
    sys.argv = [a if a != "--list-cameras" else "list_cameras=true" for a in sys.argv]
    _live()


ANALYZE_INPUTS: list[str] = []
"""The plain words of `analyze`'s command line (what to analyse): kept out of the config, so a file name is never
read as an override or resolved by OmegaConf."""
HYDRA_FLAGS_WITH_VALUE = (
    "-cn",
    "--config-name",
    "-cp",
    "--config-path",
    "-cd",
    "--config-dir",
    "-c",
    "--cfg",
    "-p",
    "--package",
)


def analyze_words(args: list[str]) -> tuple[list[str], list[str]]:
    """``analyze.py``'s words as (inputs, settings and flags). A ``key=value`` word, a Hydra flag or override
    (``-m``, ``~key``, ``+key=value``) and a flag's value are settings, unless the word names an existing file or
    folder or a glob matches it (``take=2.mp4``, ``'~/clips'``, ``'take=*.mp4'``): that is an input."""
    words: list[str] = []
    settings: list[str] = []
    for i, word in enumerate(args):
        flag_value = i > 0 and args[i - 1] in HYDRA_FLAGS_WITH_VALUE
        named = os.path.expanduser(word)  # ~/x, not ~key (Path.expanduser raises on an unknown user)
        setting = (
            flag_value
            or word.startswith("-")
            or (("=" in word or word.startswith(("~", "+"))) and not (os.path.exists(named) or glob.glob(named)))
        )
        (settings if setting else words).append(word)
    return words, settings


def analyze() -> None:
    """Analysis of recorded videos and photos: ``analyze.py INPUT... [key=value...]``, the live app's config
    (conf/realtime.yaml, its ``analyze`` block) under the task name ``analyze``. The words that are no ``key=value``
    setting and no flag are the inputs."""
    words, settings = analyze_words(sys.argv[1:])
    keep = [sys.argv[0], *settings]
    ANALYZE_INPUTS[:] = words
    named = {w.split("=", 1)[0].lstrip("+~") for w in keep[1:]}
    own = [f"{key}=analyze" for key in ("task_name", "hydra.job.name") if key not in named]  # outputs/analyze/runs/
    sys.argv = [keep[0], *own, *keep[1:]]
    _analyze()
