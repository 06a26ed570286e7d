"""What a model file says about its model, checked field by field without torch (DESIGN.md contracts 2 and 3).

A checkpoint (`mimic.models.checkpoint`) and an exported ONNX file (`mimic.models.onnx_model`) both become a
`ModelCard` through `ModelCard.check`, so both are held to the same rules: class names are strings, the preprocessing
spec is numbers and names only, settings are plain data without Hydra keys. A file that fails a check is a
`CheckpointError` that names the file and the field. Nothing here imports torch: the checks take plain data and numpy
arrays, so a model's card is read and checked without it (`mimic.models.ckpt_reader`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mimic.errors import UserError
from mimic.labels import validate_classes
from mimic.preprocessing import PreprocessSpec

HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")
NET_BUILDERS = (
    "mimic.models.small_cnn.small_cnn",
    "mimic.models.resnet.resnet18",
    "mimic.models.resnet.resnet50",
    "mimic.models.mobilenet.mobilenet_v3_small",
    "mimic.models.mobilenet.mobilenet_v3_large",
)
"""The only builders a ``net._target_`` may name, in a config or a model file: mimic's own (`mimic.models.nets.NETS`
holds them; named here so that a card is checked without importing torch)."""


class CheckpointError(UserError, ValueError):
    """A model file that is missing, unreadable, not a mimic model, or one that does not fit the run."""


def _check_text(value: str, where: str, error: type[UserError]) -> None:
    """Text from a model file never holds ``${``: OmegaConf would resolve it, reading the environment or building
    config that Hydra instantiates, wherever the text became config."""
    if "${" in value:
        shown = value if len(value) <= 80 else f"{value[:80]}..."
        raise error(
            f"{where} = {shown!r}: refused. ${{...}} is OmegaConf's interpolation syntax, which can read the "
            f"environment and build config that runs code; the text of a model file is data and never holds it"
        )


def plain(value: Any, where: str, error: type[UserError] = CheckpointError) -> Any:
    """``value`` if it is plain data (None, bools, numbers, strings, lists and string-keyed dicts of them) with no
    Hydra key and no OmegaConf interpolation (``${``) anywhere, else ``error`` naming where."""
    if isinstance(value, str):
        _check_text(value, where, error)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v, f"{where}[{i}]", error) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        for key in value:
            if key in HYDRA_KEYS:
                raise error(
                    f"{where}.{key} = {value[key]!r}: refused. A Hydra key chooses code to import or call; only the "
                    f"net's own _target_, naming one of mimic's builders, may"
                )
            if not isinstance(key, str):
                raise error(f"{where} has the key {key!r}, which is not a string")
            plain(key, f"{where} (a key)", error)
        return {k: plain(v, f"{where}.{k}", error) for k, v in value.items()}
    raise error(f"{where} is a {type(value).__name__}; only numbers, strings, bools, lists and dicts are accepted")


def net_config(net: Any, where: str = "model.net", error: type[UserError] = UserError) -> dict[str, Any]:
    """``net`` checked: ``_target_`` is one of `NET_BUILDERS`, every argument plain data."""
    if not isinstance(net, Mapping):
        raise error(f"{where} must be a mapping whose _target_ names a net builder, got {type(net).__name__}")
    args = dict(net)
    target = args.pop("_target_", None)
    if not isinstance(target, str) or target not in NET_BUILDERS:
        raise error(
            f"{where}._target_ is {target!r}; only mimic's own net builders are built: {', '.join(NET_BUILDERS)}. "
            f"Nothing else is imported or called."
        )
    return {"_target_": target, **plain(args, where, error)}


def not_finite(where: str, bad: int, total: int) -> CheckpointError:
    """The error for weights at ``where`` of which ``bad`` of ``total`` numbers are NaN or infinite: the weights of a
    run that diverged, which would give every face the probability nan."""
    return CheckpointError(
        f"{where} holds {bad} NaN or infinite value(s) of {total}: these weights are broken (a training run that "
        f"diverged?). Use an earlier checkpoint of the run, or train again with a lower model.optimizer.lr."
    )


def check_finite(values: np.ndarray, where: str) -> None:
    """`not_finite` when the float array ``values`` (weights at ``where``) holds NaN or infinite numbers; arrays of
    other kinds (integer counters, flags) pass."""
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            raise not_finite(where, int(values.size - finite.sum()), values.size)


@dataclass(frozen=True)
class ModelCard:
    """What a model file says about its model, checked: everything inference, evaluation, fine-tuning and resume read
    from it. ``net`` is the builder config (``_target_`` one of mimic's builders, plain arguments, pretrained weights
    off: the file's own weights replace them); ``temperature`` the fitted calibration temperature."""

    net: dict[str, Any]
    class_names: list[str]
    preprocess: PreprocessSpec
    temperature: float = 1.0
    tta_flip: bool = False
    channels_last: bool = True
    mimic_version: str = ""
    about: dict[str, Any] = field(default_factory=dict)
    """Where the weights came from, as plain data: the command, seed, data and test accuracy of the run that made them,
    and the licence note (the bundled model's; empty for a user's own checkpoints)."""

    @classmethod
    def check(
        cls, net: dict[str, Any], fields: Mapping[str, Any], temperature: Any, where: str, temperature_where: str
    ) -> ModelCard:
        """The card of a file whose ``net`` its reader has checked; ``fields``: class_names, preprocess,
        mimic_version and optionally tta_flip and channels_last, each checked here. ``where`` prefixes every message
        (``<file>: hyper_parameters``); ``temperature_where`` names the temperature's place in the file."""
        rest = {k: plain(v, f"{where}.{k}") for k, v in fields.items()}
        names = rest.get("class_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CheckpointError(f"{where}.class_names must be a list of class names, got {names!r}")
        try:
            names = validate_classes(names, where=f"{where}.class_names", at_least=2)
        except UserError as e:
            raise CheckpointError(str(e)) from None
        if not isinstance(rest.get("preprocess"), dict):
            raise CheckpointError(f"{where}.preprocess must be a mapping of numbers, got {rest.get('preprocess')!r}")
        try:
            spec = PreprocessSpec.from_dict(rest["preprocess"])
        except ValueError as e:
            raise CheckpointError(f"{where}.{e}") from None
        for name in ("tta_flip", "channels_last"):
            if name in rest and not isinstance(rest[name], bool):
                raise CheckpointError(f"{where}.{name} must be true or false, got {rest[name]!r}")
        if not isinstance(rest.get("mimic_version"), str):
            raise CheckpointError(f"{where}.mimic_version must be a string, got {rest.get('mimic_version')!r}")
        number = isinstance(temperature, int | float) and not isinstance(temperature, bool)
        if not number or not math.isfinite(temperature) or temperature <= 0:
            raise CheckpointError(f"{temperature_where} must be one positive number, got {temperature!r}")
        about = rest.get("about", {})
        if not isinstance(about, dict):
            raise CheckpointError(f"{where}.about must be a mapping of plain data, got {about!r}")
        return cls(
            net=net,
            class_names=names,
            preprocess=spec,
            temperature=float(temperature),
            tta_flip=rest.get("tta_flip", False),
            channels_last=rest.get("channels_last", True),
            mimic_version=rest["mimic_version"],
            about=about,
        )
