"""mimic: facial-expression recognition you can train, fine-tune on your own face and run live."""

import os
import warnings

from mimic.version import __version__

# mimic never reaches the network unasked: albumentations checks PyPI for a newer version when it is imported unless
# this is set (every import of albumentations goes through mimic's packages, which import this module first).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The commands search ./conf for the user's own configs (conf/*.yaml: hydra.searchpath); where there is none Hydra
# warns on every run, though nothing is wrong.
warnings.filterwarnings("ignore", message=r"provider=hydra\.searchpath in main, path=conf is not available")

__all__ = ["EmotionRecognizer", "__version__"]


def __getattr__(name: str):
    # `from mimic import EmotionRecognizer` without loading OpenCV and the model code on `import mimic`
    if name == "EmotionRecognizer":
        from mimic.recognizer import EmotionRecognizer  # start-up: `import mimic` loads neither torch nor OpenCV

        return EmotionRecognizer
    raise AttributeError(f"module 'mimic' has no attribute {name!r}")
