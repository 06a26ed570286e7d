"""Training callbacks: freezing and scheduled unfreezing of named modules for fine-tuning."""

from mimic.callbacks.freeze import FreezeModules

__all__ = ["FreezeModules"]
