"""Reading a checkpoint: the one place that decides what a model file may ask of mimic (DESIGN.md contracts 2 and 3).

A file is read with ``torch.load(weights_only=True)`` (no pickled code runs) and its hyper-parameters become a
`ModelCard`, checked field by field: the net's ``_target_`` must be one of mimic's builders (`mimic.models.nets`) and
everything
else plain data without Hydra keys; class names are strings, the preprocessing spec numbers. Nets are built by calling
the allowed builder directly, never through Hydra, and the stored optimizer and scheduler configs are never built on
load. So nothing in a checkpoint chooses code to import or call. A file that fails any check is a `CheckpointError`
that names it and says what to do.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from mimic.models.card import CheckpointError, ModelCard, not_finite, plain
from mimic.models.nets import build_net, net_config

if TYPE_CHECKING:  # for type hints only: the LightningModule is built from a card by `EmotionClassifier.load`
    from mimic.models.classifier import EmotionClassifier

OPTIMIZER_TARGETS = ("torch.optim.", "mimic.models.classifier.")
REQUIRED_HPARAMS = ("net", "class_names", "preprocess", "mimic_version")
RESUME_SPECIAL = ("last", "hpc")  # ckpt_path values Lightning resolves itself


def _optimizer_config(cfg: Any, where: str) -> None:
    """A stored optimizer / scheduler config is never built on load; a file that names other code there is refused."""
    if cfg is None:
        return
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"{where} must be a mapping, got {type(cfg).__name__}")
    args = dict(cfg)
    target, partial = args.pop("_target_", None), args.pop("_partial_", False)
    if target is not None and not (isinstance(target, str) and target.startswith(OPTIMIZER_TARGETS)):
        raise CheckpointError(
            f"{where}._target_ = {target!r}: mimic's training stores a torch.optim optimizer or scheduler (or "
            f"mimic's own schedule) there; a file naming other code is refused"
        )
    if not isinstance(partial, bool):
        raise CheckpointError(f"{where}._partial_ must be true or false, got {partial!r}")
    plain(args, where)


def _card(ckpt: Mapping[str, Any], path: str | os.PathLike) -> ModelCard:
    """Check a loaded checkpoint dict's hyper-parameters field by field; `CheckpointError` naming the field."""
    hp, where = ckpt["hyper_parameters"], f"{path}: hyper_parameters"
    net = net_config(hp["net"], f"{where}.net", CheckpointError)
    net.pop("weights", None)
    for name in ("optimizer", "scheduler"):
        _optimizer_config(hp.get(name), f"{where}.{name}")
    t = ckpt["state_dict"].get("temperature", torch.ones(()))
    where_t = f"{path}: state_dict.temperature"
    if t.numel() != 1:
        raise CheckpointError(f"{where_t} must be one positive number, got {t.tolist()}")
    rest = {k: v for k, v in hp.items() if k not in ("net", "optimizer", "scheduler")}
    return ModelCard.check(net, rest, float(t), where, where_t)


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Pass the .ckpt file a training run printed on its last line "
            f"(they live under outputs/<task>/runs/<date>_<time>/checkpoints/)."
        )
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{path} is an exported ONNX model: it holds no training state. Pass the .ckpt it was exported from."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text suggests weights_only=False: not advice to pass on
        why = "not a PyTorch file, or one holding pickled Python objects, which could run code and are never loaded"
    except Exception as e:  # torch.load raises many kinds (RuntimeError, EOFError, ...) on junk
        why = str(e).strip().split(". ")[0] or f"{type(e).__name__}: the file is empty or cut short"
    raise CheckpointError(
        f"{path} is not a mimic checkpoint: it could not be read as a PyTorch checkpoint without running pickled "
        f"code ({why}). Use a .ckpt written by `python train.py`."
    )


def read_card(path: str | os.PathLike) -> tuple[ModelCard, dict[str, Any]]:
    """A checkpoint's checked `ModelCard` and its raw dict, read without running pickled code."""
    path = Path(path).expanduser()
    ckpt = _torch_load(path)
    advice = "Use a .ckpt written by `python train.py`."
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("hyper_parameters"), dict):
        plain = isinstance(ckpt, dict) and ckpt and all(isinstance(v, Tensor) for v in ckpt.values())
        what = "it is a plain state_dict" if plain else "it holds no hyper_parameters"
        raise CheckpointError(f"{path} is not a mimic checkpoint: {what}, nothing says how to build its net. {advice}")
    missing = [k for k in REQUIRED_HPARAMS if k not in ckpt["hyper_parameters"]]
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        missing.append("state_dict")
    if missing:
        raise CheckpointError(
            f"{path} is not a mimic checkpoint: it lacks {', '.join(missing)} in its hyper-parameters "
            f"(a checkpoint of another model?). {advice}"
        )
    card = _card(ckpt, path)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise not_finite(f"{path}: state_dict.{name}", int((~torch.isfinite(tensor)).sum()), tensor.numel())
    return card, ckpt


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
