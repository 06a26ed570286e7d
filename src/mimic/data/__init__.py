"""Data sources (FER2013, class folders, synthetic faces) and the one EmotionDataModule that merges them.

The data module (Lightning, torch) loads on first use of its names, so that reading a class folder or a FER2013 file
(`mimic.data.folders`, `mimic.data.fer2013`, `mimic.data.capture`) does not import Lightning: the web server reads
captures in request threads while another thread loads a model, and two threads importing Lightning and torch at once
can each see the other's half-initialised modules.
"""

from mimic.data.base import DataError, SplitData

__all__ = ["DataError", "EmotionDataModule", "SplitData", "datamodule_from_config"]


def __getattr__(name: str):
    if name in ("EmotionDataModule", "datamodule_from_config"):
        from mimic.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'mimic.data' has no attribute {name!r}")
