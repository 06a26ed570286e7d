"""Loading a checkpoint back into a ready model from the checkpoint alone (DESIGN.md contract 2).

The file is read with ``torch.load(weights_only=True)``: no pickled code runs. A file that is not a PyTorch
checkpoint, or one that lacks mimic's hyper-parameters, is a ``CheckpointError`` saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mimic.errors import UserError
from mimic.preprocessing import PreprocessSpec

if TYPE_CHECKING:  # imported where used: the realtime app reads checkpoints without Lightning (startup time)
    from mimic.models.classifier import EmotionClassifier

REQUIRED_HPARAMS = ("net", "class_names", "preprocess", "mimic_version")
TRUSTED_NET_PREFIXES = ("mimic.models.",)


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, or not a mimic checkpoint."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, validated as ours, read without running pickled code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Pass the .ckpt file a training run printed on its last line "
            f"(they live under outputs/<date>/<time>/checkpoints/)."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds (UnpicklingError, RuntimeError, IndexError, ...) on junk
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} is not a mimic checkpoint: it could not be read as a PyTorch checkpoint without running "
            f"pickled code ({first}). Use a .ckpt written by `python train.py`."
        ) from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    missing = [k for k in REQUIRED_HPARAMS if not isinstance(hp, dict) or k not in hp]
    if missing or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not a mimic checkpoint: it lacks {', '.join(missing) or 'state_dict'} in its "
            f"hyper-parameters. Use a .ckpt written by `python train.py`."
        )
    return ckpt


def net_config(hp: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's net config, checked to name one of our builders, with pretrained weights switched off (the
    checkpoint's own state_dict replaces them)."""
    net = dict(hp["net"])
    target = str(net.get("_target_", ""))
    if not target.startswith(TRUSTED_NET_PREFIXES):
        raise CheckpointError(
            f"the checkpoint names net builder {target!r}; only builders under {', '.join(TRUSTED_NET_PREFIXES)} are "
            f"loaded, so a checkpoint cannot make mimic import arbitrary code."
        )
    net.pop("weights", None)
    return net


def model_from_hparams(hp: dict[str, Any], **overrides: Any) -> EmotionClassifier:
    """Build an untrained EmotionClassifier from checkpoint hyper-parameters (never downloads pretrained weights)."""
    from mimic.models.classifier import EmotionClassifier

    hp = {**hp, **overrides}
    hp["net"], hp["weights"] = net_config(hp), None
    return EmotionClassifier(**hp)


def load_net(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any], float]:
    """The bare net of a checkpoint in eval mode, its hyper-parameters and its calibration temperature: inference
    without the LightningModule's metrics and training state (the realtime predictor)."""
    from hydra.utils import instantiate

    ckpt = read_checkpoint(path)
    hp = ckpt["hyper_parameters"]
    spec = PreprocessSpec.from_dict(hp["preprocess"])
    net = instantiate(net_config(hp), num_classes=len(hp["class_names"]), in_channels=spec.channels)
    state = ckpt["state_dict"]
    try:
        net.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the weights do not fit the net its hyper-parameters describe: {e}") from None
    return net.eval(), hp, float(state["temperature"]) if "temperature" in state else 1.0


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", **overrides: Any
) -> EmotionClassifier:
    """A mimic checkpoint -> EmotionClassifier in eval mode with its weights and calibration temperature."""
    ckpt = read_checkpoint(path)
    model = model_from_hparams(ckpt["hyper_parameters"], **overrides)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the weights do not fit the net its hyper-parameters describe: {e}") from None
    return model.to(map_location).eval()
