"""One home for every default: the shipped YAML. The settings check (`mimic.settings`) names only settings the YAML
has, and where the code that a config builds (`_target_`) has a default of its own for a setting, it is the YAML's
value, so the Python API and the commands behave alike."""

from __future__ import annotations

import importlib
import inspect

import pytest
from conftest import compose
from omegaconf import OmegaConf

from mimic.settings import SETTINGS

PUBLIC = [  # the public datasets' configs, each with both detectors
    *(
        [f"data={name}", f"+detector@data.sources.{name}.detector={detector}"]
        for name in ("rafdb", "affectnet", "expw", "ckplus", "jaffe")
        for detector in ("yunet", "haar")
    ),
    ["data=ckplus48"],
]
VARIANTS = {  # the compositions that together hold every setting a command checks
    "train": [
        [],
        ["+finetune=webcam"],
        ["+finetune=webcam", "detector@data.sources.webcam.detector=haar"],
        ["data=folder", "data.path=x", "+detector@data.sources.folder.detector=yunet"],
        ["data=folder", "data.path=x", "+detector@data.sources.folder.detector=haar"],
        ["data=ferplus"],
        *PUBLIC,
        ["model=resnet18"],
        ["model=small_cnn_lite"],
        ["debug=limit"],
        ["debug=fdr"],
        ["debug=overfit"],
        ["trainer=ddp"],
    ],
    "evaluate": [
        ["ckpt=x"],
        ["ckpt=x", "data=folder", "data.path=x", "+detector@data.sources.folder.detector=yunet"],
        ["ckpt=x", "data=folder", "data.path=x", "+detector@data.sources.folder.detector=haar"],
        ["ckpt=x", "data=ferplus"],
        *(["ckpt=x", *overrides] for overrides in PUBLIC),
    ],
    "realtime": [["ckpt=x"], ["ckpt=x", "ui=web"], ["ckpt=x", "detector=haar"]],
}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out[f"{prefix}{key}"] = value
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
    return out


def _composed(command: str, overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose(command, overrides), resolve=False)


@pytest.mark.slow  # every variant of every command composed (about 10 s)
@pytest.mark.parametrize("command", list(SETTINGS))
def test_every_checked_setting_is_in_the_yaml(command):
    keys = set()
    for overrides in VARIANTS[command]:
        keys |= set(_flat(_composed(command, overrides)))
    assert [k for k in SETTINGS[command] if k not in keys] == []


def _defaults_that_disagree(node, where: str, found: list[str]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _defaults_that_disagree(item, f"{where}[{i}]", found)
        return
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    if isinstance(target, str) and target.startswith("mimic."):
        module, name = target.rsplit(".", 1)
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        for key, value in node.items():
            p = parameters.get(key)
            plain = not isinstance(value, dict | list) and not (isinstance(value, str) and "${" in value)
            if p is not None and p.default is not inspect.Parameter.empty and plain and p.default != value:
                found.append(f"{where}.{key}: YAML {value!r}, {target} {p.default!r}")
    for key, value in node.items():
        _defaults_that_disagree(value, f"{where}.{key}", found)


@pytest.mark.parametrize("command", list(SETTINGS))
def test_the_code_defaults_are_the_yaml_defaults(command):
    """What a command does by default is what the Python API does by default (`EmotionRecognizer`, `Predictor`,
    `EmotionClassifier(...)`, a detector built in code)."""
    found: list[str] = []
    _defaults_that_disagree(_composed(command, ["ckpt=x"] if command != "train" else []), command, found)
    assert found == []
