"""The optional extras (pyproject's ``[project.optional-dependencies]``): what each brings, and the one message when a
setting needs one that is not installed. Imports nothing heavy: `mimic.cli` checks the command line with it before
Hydra composes the config (Hydra fails on a sweeper or launcher it cannot find while composing, before mimic's error
handling runs)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.util import find_spec

from mimic.errors import UserError

# extra: (what it brings, in words; the modules that must be importable)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sweep": ("Hydra's Optuna sweeper (hydra-optuna-sweeper)", ("hydra_plugins.hydra_optuna_sweeper", "optuna")),
    "joblib": ("Hydra's joblib launcher (hydra-joblib-launcher)", ("hydra_plugins.hydra_joblib_launcher", "joblib")),
    "submitit": (
        "Hydra's submitit launcher (hydra-submitit-launcher)",
        ("hydra_plugins.hydra_submitit_launcher", "submitit"),
    ),
    "mlflow": ("MLflow (mlflow-skinny, SQLAlchemy, Alembic)", ("mlflow", "sqlalchemy", "alembic")),
}

# command-line choice of `mimic-train` -> the extra it needs ("*": any option but null)
CHOICES: dict[str, dict[str, str]] = {
    "hparams_search": {"*": "sweep"},
    "hydra/sweeper": {"optuna": "sweep"},
    "hydra/launcher": {"joblib": "joblib", "submitit_local": "submitit", "submitit_slurm": "submitit"},
    "logger": {"mlflow": "mlflow"},
}


def require(extra: str, setting: str, modules: Sequence[str] | None = None) -> None:
    """Raise `UserError` (one line naming the extra to install) when ``modules`` (default: all of the extra's) are not
    importable; ``setting`` is what the user wrote that needs them."""
    what, needed = EXTRAS[extra]
    missing = [m for m in (modules or needed) if not _importable(m)]
    if missing:
        raise UserError(
            f"{setting} needs {what}, which is not installed (no module {missing[0]}): "
            f"pip install 'mimic[{extra}]' (in a checkout: pip install -e '.[{extra}]')"
        )


def _importable(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def check_command_line(argv: Sequence[str]) -> None:
    """Raise `UserError` for the first override in ``argv`` (``hparams_search=fer2013``, ``hydra/launcher=joblib``,
    ``logger=[tensorboard,mlflow]``, a sweep ``logger=csv,mlflow``) whose option needs an extra that is missing."""
    for word in argv:
        key, eq, value = word.partition("=")
        group = key.lstrip("+")
        if not eq or group not in CHOICES:
            continue
        options = CHOICES[group]
        for name in re.findall(r"[\w.-]+", value):  # one option, a list [a,b] or a sweep a,b
            extra = options.get(name) or (options.get("*") if name != "null" else None)
            if extra:
                require(extra, word)
