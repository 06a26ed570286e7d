"""mimic: facial-expression recognition you can train, fine-tune on your own face and run live."""

import os

# mimic never reaches the network unasked: albumentations checks PyPI for a newer version when it is imported unless
# this is set (every import of albumentations goes through mimic's packages, which import this module first).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
__all__ = ["EmotionRecognizer", "__version__"]


def __getattr__(name: str):
    # `from mimic import EmotionRecognizer` without loading OpenCV and the model code on `import mimic`
    if name == "EmotionRecognizer":
        from mimic.recognizer import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'mimic' has no attribute {name!r}")
