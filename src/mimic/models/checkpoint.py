"""Loading a checkpoint on torch: the one place that decides what a model file may ask of mimic (DESIGN.md contracts
2 and 3).

A file is read with ``torch.load(weights_only=True)`` (no pickled code runs) and held to the checks of
`mimic.models.ckpt_reader.checked`, which `read_model_card` runs without torch too: its hyper-parameters become a
`ModelCard`, checked field by field (the net's ``_target_`` one of mimic's builders, everything else plain data without
Hydra keys, class names strings, the preprocessing spec numbers), and its weights must be finite. Nets are built by
calling the allowed builder directly (`mimic.models.nets`), never through Hydra, and the stored optimizer and scheduler
configs are never built on load. So nothing in a checkpoint chooses code to import or call. A file that fails any check
is a `CheckpointError` that names it and says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from mimic.models.card import CheckpointError, ModelCard
from mimic.models.ckpt_reader import checked, existing, unreadable
from mimic.models.nets import build_net

if TYPE_CHECKING:  # for type hints only: the LightningModule is built from a card by `EmotionClassifier.load`
    from mimic.models.classifier import EmotionClassifier

RESUME_SPECIAL = ("last", "hpc")  # ckpt_path values Lightning resolves itself


def _numbers(tensor: Tensor) -> np.ndarray:
    """A tensor's numbers as numpy, sharing its memory (bfloat16 and the other types numpy lacks: as float32)."""
    tensor = tensor.detach()
    try:
        return tensor.numpy()
    except TypeError:  # a dtype numpy lacks
        return tensor.float().numpy()


def read_card(path: str | os.PathLike) -> tuple[ModelCard, dict[str, Any]]:
    """A checkpoint's checked `ModelCard` and its raw dict, read without running pickled code."""
    path = existing(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many kinds (UnpicklingError, RuntimeError, EOFError, ...) on junk
        raise unreadable(path, e) from None
    return checked(ckpt, path, Tensor, _numbers), ckpt


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, checked as `read_card` checks it."""
    return read_card(path)[1]


def load_state(module: nn.Module, state: Mapping[str, Tensor], path: str | os.PathLike) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the weights do not fit the net its hyper-parameters describe: {e}") from None


def load_net(path: str | os.PathLike) -> tuple[nn.Module, ModelCard]:
    """The bare net of a checkpoint in eval mode (channels-last when the card says so) and its card: inference
    without the LightningModule's metrics and training state (the realtime predictor)."""
    card, ckpt = read_card(path)
    where = f"{Path(path).expanduser()}: hyper_parameters.net"
    net = build_net(card.net, len(card.class_names), card.preprocess.channels, where=where, error=CheckpointError)
    load_state(net, {k[len("net.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}, path)
    if card.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net.eval(), card


def check_fits(card: ModelCard, model: EmotionClassifier, what: str) -> None:
    """Refuse a checkpoint whose net builder or input preprocessing differs from ``model``'s; ``what`` names the
    setting and file (``finetune.ckpt /x.ckpt``)."""
    ours = model.hparams.net["_target_"]
    if card.net["_target_"] != ours:
        raise CheckpointError(
            f"{what} holds a {card.net['_target_']} net, but the config builds {ours}. Choose the model the "
            f"checkpoint was trained with (its net config: {card.net})."
        )
    a, b = card.preprocess, model.spec
    diffs = [
        f"{k}: checkpoint {getattr(a, k)}, config {getattr(b, k)}"
        for k in ("size", "channels", "mean", "std")
        if getattr(a, k) != getattr(b, k)
    ]
    if diffs:
        raise CheckpointError(
            f"{what} was trained on differently preprocessed faces ({'; '.join(diffs)}). Set model.preprocess to "
            f"the checkpoint's: {a.to_dict()}."
        )


def check_resume(path: str | os.PathLike | None, model: EmotionClassifier) -> None:
    """Check ``ckpt_path=`` before Lightning reads it: a mimic checkpoint (read as `read_card` reads any) with training
    state, of this run's net, preprocessing and classes. Messages as for any checkpoint mimic opens."""
    if path is None or (str(path) in RESUME_SPECIAL and not Path(str(path)).exists()):
        return
    what = f"ckpt_path={path}"
    card, ckpt = read_card(path)
    if "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise CheckpointError(
            f"{what} holds weights but no training state (optimizer, epoch), so the run cannot resume from it. To "
            f"train on from its weights, fine-tune: `python train.py +finetune=webcam finetune.ckpt={path}`."
        )
    check_fits(card, model, what)
    if card.class_names != model.class_names:
        raise CheckpointError(
            f"{what} was trained for the classes {card.class_names}, the config has {model.class_names}. Resume "
            f"with data.classes=[{','.join(card.class_names)}], or fine-tune onto the new classes: "
            f"`python train.py +finetune=webcam finetune.ckpt={path}`."
        )
    ours = model.state_dict()
    diffs = [
        f"{k}: checkpoint {tuple(v.shape)}, config {tuple(ours[k].shape) if k in ours else 'absent'}"
        for k, v in ckpt["state_dict"].items()
        if k not in ours or ours[k].shape != v.shape
    ] + [f"{k}: not in the checkpoint" for k in ours if k not in ckpt["state_dict"]]
    if diffs:
        raise CheckpointError(
            f"{what} holds a net that does not fit the configured one ({'; '.join(diffs[:3])}"
            f"{f'; and {len(diffs) - 3} more' if len(diffs) > 3 else ''}). Resume with the model config it was "
            f"trained with: model.net={card.net}."
        )
