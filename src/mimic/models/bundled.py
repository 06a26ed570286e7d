"""The pretrained model mimic ships: a small_cnn trained on FER2013 with the project's default recipe.

It is an ordinary mimic checkpoint (read by `mimic.models.checkpoint` like any other: weights only, checked card),
slimmed to what inference and fine-tuning need, its weights stored as fp16 (loaded into fp32 parameters). Its card's
``about`` says how it was made: the command, seed, commit, FER2013 PrivateTest accuracy and the data's licence note.
``scripts/make_bundled_model.py`` regenerates it. Every command that takes ``ckpt=`` uses it when none is named.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from mimic.errors import UserError

BUNDLED_FILE = "mimic_small_cnn_fer2013.ckpt"
BUNDLED_ID = "bundled"
"""What ``ckpt=`` may say to mean the bundled model explicitly (``ckpt=bundled``)."""


def bundled_path() -> Path:
    """The bundled checkpoint inside the installed package."""
    path = Path(str(files("mimic.assets") / BUNDLED_FILE))
    if not path.is_file():
        raise UserError(
            f"the bundled model {path} is missing from this installation of mimic; reinstall it "
            f"(`pip install -e .` in a checkout), or name a model with ckpt=<file.ckpt or file.onnx>"
        )
    return path


def resolve_ckpt(ckpt: str | os.PathLike | None) -> Path:
    """The model file ``ckpt=`` names: the bundled model for None, '' or ``bundled``, else the path as given."""
    if ckpt is None or str(ckpt).strip() in ("", BUNDLED_ID):
        return bundled_path()
    return Path(str(ckpt)).expanduser()
