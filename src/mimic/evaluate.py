"""Evaluate any checkpoint on any data config with nothing but the checkpoint (DESIGN.md contract 2): Lightning's test
of the loaded model, as a training run tests its best checkpoint, on the split ``split=`` names.

Writes ``test_metrics.json`` (the keys of a training run's), ``confusion_matrix.png`` and ``predictions.csv`` into the
run folder. ``data=folder data.path=DIR`` evaluates every image in DIR's class folders. ``scripts/evaluate.py`` is the
Hydra entry point.
"""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mimic.data import DataError, datamodule_from_config
from mimic.data.base import SPLITS
from mimic.evaluation import OnnxClassifier, report_test
from mimic.models import load_checkpoint
from mimic.models.bundled import resolve_ckpt
from mimic.models.onnx_model import is_onnx


def run(cfg: DictConfig) -> dict:
    """Test ``cfg.ckpt`` on ``cfg.data``'s ``cfg.split``; returns what test_metrics.json holds."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if cfg.split not in SPLITS:
        raise DataError(f"split={cfg.split!r}: choose one of {', '.join(SPLITS)}.")
    L.seed_everything(cfg.seed, verbose=False)
    ckpt = resolve_ckpt(cfg.get("ckpt"))
    if is_onnx(ckpt):
        model = OnnxClassifier(ckpt, cfg.get("threads"), cfg.get("tta_flip"))
    else:
        model = load_checkpoint(ckpt, **({} if cfg.get("tta_flip") is None else {"tta_flip": bool(cfg.tta_flip)}))
    with open_dict(cfg):
        cfg.model.preprocess = model.spec.to_dict()  # checked numbers and names (PreprocessSpec), not the file's text
        cfg.data.eval_batch_size = cfg.batch_size
        cfg.data.augment = None
        cfg.data.test_split = cfg.split
    dm = datamodule_from_config(cfg.data, classes=model.class_names)
    limits = dm.batch_limits(cfg.trainer)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, **limits)
    info = {
        "checkpoint": str(ckpt.resolve()),
        "data": OmegaConf.to_container(cfg.data.sources, resolve=True),
    }
    return report_test(trainer, model, dm, cfg.paths.output_dir, info)
