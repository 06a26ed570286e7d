"""Nets (plain nn.Modules with named stages) and the one LightningModule that wraps any of them."""

from mimic.models.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from mimic.models.classifier import EmotionClassifier

__all__ = ["CheckpointError", "EmotionClassifier", "load_checkpoint", "read_checkpoint"]
