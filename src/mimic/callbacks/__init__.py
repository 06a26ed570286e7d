"""Training callbacks: freezing and scheduled unfreezing of named modules for fine-tuning (`FreezeModules`), and a
run's progress written to a file another process reads (`ProgressFile`)."""

from mimic.callbacks.freeze import FreezeModules
from mimic.callbacks.progress import ProgressFile

__all__ = ["FreezeModules", "ProgressFile"]
