"""Train an emotion classifier: `python train.py model=small_cnn data=fer2013` (installed: `mimic-train ...`; all
settings live in src/mimic/conf/)."""

from mimic.cli import train

if __name__ == "__main__":
    train()
