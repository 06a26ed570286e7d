"""Re-evaluate any checkpoint on any data config with nothing but the checkpoint (DESIGN.md contract 2).

Writes ``metrics.json`` (accuracy, macro-F1, per-class recall, ECE with and without the stored temperature) and
``confusion_matrix.png`` into the run folder. ``scripts/evaluate.py`` is the Hydra entry point.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mimic.data.base import DataError
from mimic.evaluation import collect_logits, metrics_from_logits, render_confusion, write_json
from mimic.models import load_checkpoint


def run(cfg: DictConfig) -> dict:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    model = load_checkpoint(cfg.ckpt)
    if cfg.get("tta_flip") is not None:
        model.hparams.tta_flip = bool(cfg.tta_flip)
    with open_dict(cfg):
        cfg.model.preprocess = model.spec.to_dict()
        cfg.data.classes = list(model.class_names)
        cfg.data.eval_batch_size = cfg.batch_size
        cfg.data.augment = None
    dm = instantiate(cfg.data)
    dm.setup("test")
    if cfg.split not in dm.data:
        raise DataError(f"split={cfg.split!r}: the data has only {sorted(dm.data)}; choose one of those.")
    loader = dm._loader(cfg.split, train=False)
    logits, labels, sources = collect_logits(model, loader)
    temperature = float(model.temperature)
    metrics = metrics_from_logits(logits, labels, model.class_names, temperature)
    if sources is not None and len(dm.source_names) > 1:
        metrics["per_source_accuracy"] = {
            name: float((logits[sources == k].argmax(1) == labels[sources == k]).float().mean())
            for k, name in enumerate(dm.source_names)
            if (sources == k).any()
        }
    metrics.update(
        checkpoint=str(Path(cfg.ckpt).resolve()),
        split=cfg.split,
        tta_flip=bool(model.hparams.tta_flip),
        data=OmegaConf.to_container(cfg.data.sources, resolve=True),
    )
    out = Path(cfg.paths.output_dir)
    write_json(out / "metrics.json", metrics)
    png = out / "confusion_matrix.png"
    cv2.imwrite(
        str(png), cv2.cvtColor(render_confusion(metrics["confusion_matrix"], model.class_names), cv2.COLOR_RGB2BGR)
    )
    print(
        f"{cfg.split}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {metrics['ece_uncalibrated']:.4f} -> {metrics['ece']:.4f} (temperature {temperature:.3f}), "
        f"n={metrics['n']}"
    )
    for name, r in metrics["per_class_recall"].items():
        print(f"  recall {name:<9} {r:.4f}")
    print(f"Metrics: {out / 'metrics.json'}\nConfusion matrix: {png}")
    return metrics
