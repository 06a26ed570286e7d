"""Data sources (FER2013, FER+, class folders, synthetic faces) and the one EmotionDataModule (`datamodule`) that
merges them. Import the modules themselves: this package imports nothing, so reading a class folder or a FER2013 file
does not load Lightning.
"""
