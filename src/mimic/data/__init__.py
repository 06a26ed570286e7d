"""Data sources (FER2013, class folders, synthetic faces) and the one EmotionDataModule that merges them."""

from mimic.data.base import DataError, SplitData
from mimic.data.datamodule import EmotionDataModule, datamodule_from_config

__all__ = ["DataError", "EmotionDataModule", "SplitData", "datamodule_from_config"]
