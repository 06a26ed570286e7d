"""Evaluate a checkpoint on any data config: `python scripts/evaluate.py ckpt=best.ckpt data=fer2013 split=test`
(installed: `mimic-evaluate ...`)."""

from mimic.cli import evaluate

if __name__ == "__main__":
    evaluate()
