"""Nets (plain nn.Modules with named stages) and the one LightningModule that wraps any of them.

The names below load on first use, so that ``from mimic.models.checkpoint import load_net`` (the realtime app) does
not import Lightning and torchmetrics.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mimic.models.checkpoint import CheckpointError, ModelCard, load_checkpoint, read_card, read_checkpoint
    from mimic.models.classifier import EmotionClassifier

_LAZY = {
    "CheckpointError": "mimic.models.checkpoint",
    "load_checkpoint": "mimic.models.checkpoint",
    "read_checkpoint": "mimic.models.checkpoint",
    "read_card": "mimic.models.checkpoint",
    "ModelCard": "mimic.models.checkpoint",
    "EmotionClassifier": "mimic.models.classifier",
}

__all__ = ["CheckpointError", "EmotionClassifier", "ModelCard", "load_checkpoint", "read_card", "read_checkpoint"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
