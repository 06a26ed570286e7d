"""EmotionClassifier: the one LightningModule. It wraps any net named by config and owns loss, metrics, logging,
optimizer set-up and the calibration temperature; the net itself stays a plain ``nn.Module``.

Its hyper-parameters make every checkpoint self-describing (DESIGN.md contract 2): the net's config, the class
names in index order and the preprocessing spec are all a predictor needs to rebuild it.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
)

from mimic.errors import UserError
from mimic.labels import validate_classes
from mimic.models import inference
from mimic.models.card import CheckpointError
from mimic.models.checkpoint import load_state, read_card
from mimic.models.figures import render_confusion, render_samples
from mimic.models.nets import build_net
from mimic.models.sam import SAM
from mimic.preprocessing import PreprocessSpec
from mimic.version import __version__


def plain(value: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists, so checkpoints load with ``torch.load(weights_only=True)``."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.03, final_lr_scale: float = 0.01
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to ``final_lr_scale`` of the base LR."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def scale(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final_lr_scale + (1 - final_lr_scale) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, scale)


def split_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """The metrics of one split (``prefix``: ``val/``, ``test/``) that need more than its confusion matrix (see
    `class_scores`), as training and `mimic.evaluate` log them."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "ece": MulticlassCalibrationError(num_classes, n_bins=15),
        },
        prefix=prefix,
    )


def class_scores(confusion: torch.Tensor, class_names: Sequence[str], prefix: str) -> dict[str, torch.Tensor]:
    """Macro-F1, balanced accuracy (the mean recall) and each class's recall from a confusion matrix (rows: true
    class). A class with no image in the split has no recall: it gets no ``recall_`` key and is left out of both
    means, so a set without, say, neutral faces is not scored as if every neutral face were missed. A class that is
    present but never predicted counts, with F1 0."""
    confusion = confusion.double()
    hits, support, predicted = confusion.diag(), confusion.sum(1), confusion.sum(0)
    present = support > 0
    recall = hits / support.clamp_min(1)
    f1 = 2 * hits / (support + predicted).clamp_min(1)  # 2TP / (2TP + FP + FN)
    scores = {f"{prefix}recall_{c}": recall[k].float() for k, c in enumerate(class_names) if present[k]}
    if present.any():
        scores[f"{prefix}f1"] = f1[present].mean().float()
        scores[f"{prefix}balanced_acc"] = recall[present].mean().float()
    return scores


class EmotionClassifier(L.LightningModule):
    """Classifies face crops into ``class_names``; ``net`` is a config whose ``_target_`` names one of mimic's net
    builders (`mimic.models.nets.NETS`), called with ``num_classes``, ``in_channels`` and, when set,
    ``weights`` (pretrained weights to start from)."""

    def __init__(
        self,
        net: dict,
        class_names: Sequence[str],
        preprocess: dict | None = None,
        weights: str | None = None,
        optimizer: dict | None = None,
        scheduler: dict | None = None,
        scheduler_interval: str = "step",
        lr_groups: dict[str, float] | None = None,
        label_smoothing: float = 0.1,
        mixup: float = 0.0,
        sam: float = 0.0,
        class_weights: str | Sequence[float] | None = None,
        tta_flip: bool = True,
        channels_last: bool = True,
        log_images: bool = True,
        mimic_version: str = __version__,
    ) -> None:
        super().__init__()
        hp = plain(dict(locals()))
        hp.pop("self"), hp.pop("__class__", None)
        hp["class_names"] = validate_classes(hp["class_names"], where="model.class_names", at_least=2)
        try:
            self.spec = PreprocessSpec.from_dict(hp["preprocess"] or {})
        except ValueError as e:
            raise UserError(f"model.{e}") from None
        hp["preprocess"], hp["mimic_version"] = self.spec.to_dict(), __version__
        self.save_hyperparameters(hp)
        self.class_names: list[str] = hp["class_names"]
        self.net = build_net(hp["net"], len(self.class_names), self.spec.channels, weights)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("class_weight", None, persistent=False)
        n = len(self.class_names)
        self.val_metrics = split_metrics(n, "val/")
        self.test_metrics = split_metrics(n, "test/")
        self.test_ece_raw = MulticlassCalibrationError(n, n_bins=15)
        self.val_confusion = MulticlassConfusionMatrix(n)
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.val_source_acc = nn.ModuleDict()
        self._sample_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._sam: SAM | None = None
        self._mixed: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def load(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu", **overrides: Any
    ) -> EmotionClassifier:
        """A mimic checkpoint, read as `mimic.models.checkpoint.read_card` reads any (no pickled code, every field
        checked), as a model in eval mode with its weights and calibration temperature. The stored optimizer and
        scheduler are left out; ``overrides`` (e.g. ``tta_flip=False``) replace the card's settings."""
        card, ckpt = read_card(path)
        settings = {"tta_flip": card.tta_flip, "channels_last": card.channels_last, **overrides}
        try:
            model = cls(card.net, card.class_names, card.preprocess.to_dict(), **settings)
        except UserError as e:
            raise CheckpointError(f"{path}: the net its hyper-parameters describe cannot be built: {e}") from None
        load_state(model, ckpt["state_dict"], path)
        return model.to(map_location).eval()

    # ---- inference -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tta = self.hparams.tta_flip and not self.training
        return inference.logits(self.net, x, tta_flip=tta, channels_last=self.hparams.channels_last)

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor, calibrated: bool = True) -> torch.Tensor:
        """Class probabilities for a batch of preprocessed crops, with the fitted temperature applied."""
        return inference.probabilities(self(x), self.temperature if calibrated else 1.0)

    # ---- training --------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        cw = self.hparams.class_weights
        if cw == "balanced" and dm is not None and stage == "fit":
            counts = torch.as_tensor(dm.class_counts("train"), dtype=torch.float)
            self.class_weight = counts.sum() / (len(counts) * counts.clamp(min=1))
        elif isinstance(cw, list | tuple):
            if len(cw) != len(self.class_names):
                raise ValueError(f"model.class_weights has {len(cw)} values for {len(self.class_names)} classes")
            self.class_weight = torch.tensor(cw, dtype=torch.float)
        names = getattr(dm, "source_names", [])
        for name in names if len(names) > 1 else []:
            if name not in self.val_source_acc:
                self.val_source_acc[name] = MulticlassAccuracy(len(self.class_names), average="micro")

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices, or against soft targets (float, one distribution per row)."""
        return F.cross_entropy(
            logits.float(), y, weight=self.class_weight, label_smoothing=self.hparams.label_smoothing
        )

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        target = batch[4] if len(batch) > 4 else y  # soft targets (FER+ votes, a teacher) when the data has them
        if self.hparams.mixup > 0 and self._sam is not None and self._sam.moved:
            x, target = self._mixed  # SAM's second pass takes its gradient on the same blend as the first
        elif self.hparams.mixup > 0:
            x, target = self._mixed = self._mixup(x, target)
        logits = self(x)
        loss = self.loss(logits, target)
        if not torch.isfinite(loss):
            raise self._diverged(loss, batch_idx)
        if self._sam is not None and self._sam.moved:
            return loss  # SAM's second pass, at weights moved uphill: its loss is not the model's
        truth = target.argmax(1) if self.hparams.mixup > 0 else y  # a blend of two faces: its larger share
        acc = (logits.argmax(1) == truth).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def _mixup(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mixup (Zhang et al., 2018): the batch blended with a shuffled copy of itself, one share drawn from
        Beta(alpha, alpha) with ``alpha = model.mixup``, and the targets blended alike (as distributions)."""
        alpha = float(self.hparams.mixup)
        share = torch.distributions.Beta(alpha, alpha).sample().item()
        order = torch.randperm(len(x), device=x.device)
        if not target.is_floating_point():
            target = F.one_hot(target, len(self.class_names)).float()
        return share * x + (1 - share) * x[order], share * target + (1 - share) * target[order]

    def _diverged(self, loss: torch.Tensor, batch_idx: int) -> UserError:
        """The one-line stop of a run whose loss turned NaN or infinite, naming the step and what was kept: the
        step is refused before it changes the weights, so every checkpoint saved so far holds good ones."""
        kept = sorted(
            {p for c in self.trainer.checkpoint_callbacks for p in (c.last_model_path, c.best_model_path) if p}
        )
        saved = f"The checkpoints saved so far are good: {', '.join(kept)}." if kept else "No checkpoint was saved yet."
        return UserError(
            f"training: the loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}); the run stopped before that step changed the weights. {saved} Lower "
            f"model.optimizer.lr or set trainer.gradient_clip_val=1.0, then train again (or resume with ckpt_path=)."
        )

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self(x).float()
        self.log("val/loss", self.loss(logits, y), prog_bar=True)
        probs = inference.probabilities(logits)
        self.val_metrics.update(probs, y)
        self.val_confusion.update(probs, y)
        if len(batch) > 2 and len(self.val_source_acc):
            for i, name in enumerate(self.trainer.datamodule.source_names):
                mask = batch[2] == i
                if mask.any():
                    self.val_source_acc[name].update(probs[mask], y[mask])
        if batch_idx == 0:
            self._sample_batch = (x[:32].detach().cpu(), y[:32].cpu(), probs[:32].cpu())

    def on_validation_epoch_end(self) -> None:
        confusion = self.val_confusion.compute()
        scores = class_scores(confusion, self.class_names, "val/")
        values = self.val_metrics.compute()
        if "val/f1" in scores:
            values["val/f1"] = scores.pop("val/f1")
        self.log_dict(values, prog_bar=True)
        self.log_dict(scores)
        for name, metric in self.val_source_acc.items():
            if metric.update_count:
                self.log(f"val/acc_{name}", metric.compute())
            metric.reset()
        confusion = confusion.cpu().numpy()
        self.val_metrics.reset(), self.val_confusion.reset()
        if self.hparams.log_images and not self.trainer.sanity_checking:
            self._log_images("val", confusion)

    def test_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x).float()
        self.test_ece_raw.update(inference.probabilities(logits), y)
        probs = inference.probabilities(logits, self.temperature)
        self.test_metrics.update(probs, y)
        self.test_confusion.update(probs, y)
        return logits  # evaluation.RecordPredictions keeps them: predictions.csv, test/nll, test/acc_<source>

    def on_test_epoch_end(self) -> None:
        confusion = self.test_confusion.compute()
        values = self.test_metrics.compute() | class_scores(confusion, self.class_names, "test/")
        values["test/ece_uncalibrated"] = self.test_ece_raw.compute()
        values["test/temperature"] = self.temperature.detach().clone()
        self.log_dict(values)
        self.log("hp_metric", values["test/acc"])
        confusion = confusion.cpu().numpy()
        self.test_metrics.reset(), self.test_ece_raw.reset(), self.test_confusion.reset()
        if self.hparams.log_images:
            self._log_images("test", confusion)

    def _log_images(self, stage: str, confusion) -> None:
        """The confusion matrix (and validation samples) as images, to every logger that takes images (TensorBoard's,
        whichever place it has in ``logger=[...]``)."""
        writers = [lg.experiment for lg in self.loggers if hasattr(lg.experiment, "add_image")]
        if not writers:
            return
        images = {f"{stage}/confusion_matrix": render_confusion(confusion, self.class_names)}
        if stage == "val" and self._sample_batch is not None:
            x, y, probs = self._sample_batch
            images["val/samples"] = render_samples(x, y, probs, self.class_names, self.spec)
        for writer in writers:
            for tag, image in images.items():
                writer.add_image(tag, image, self.global_step, dataformats="HWC")

    # ---- optimisation ----------------------------------------------------------------------------------------
    def param_groups(self, base_lr: float) -> list[dict]:
        """Trainable parameters, split into groups by ``lr_groups`` ({glob on parameter name: LR scale}, first
        match wins, unmatched parameters at scale 1). Frozen parameters are left out entirely."""
        rules = list((self.hparams.lr_groups or {}).items())
        groups: dict[float, list] = {}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:
                continue
            scale = next((s for pat, s in rules if fnmatch.fnmatch(name, pat)), 1.0)
            groups.setdefault(float(scale), []).append(p)
        return [{"params": ps, "lr": base_lr * s, "lr_scale": s} for s, ps in groups.items()]

    def configure_optimizers(self) -> Any:
        opt_cfg = dict(self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3})
        optimizer = instantiate(opt_cfg)(self.param_groups(opt_cfg.get("lr", 1e-3)))
        if self.hparams.sam > 0:
            optimizer = self._sam = SAM(optimizer, self.hparams.sam, self.net)
        if not self.hparams.scheduler:
            return optimizer
        make = instantiate(dict(self.hparams.scheduler))
        kwargs = {}
        if "total_steps" in inspect.signature(make.func if hasattr(make, "func") else make).parameters:
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = make(optimizer, **kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval, "monitor": "val/acc"},
        }
