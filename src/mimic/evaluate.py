"""Evaluation: any model on any data with nothing but the model file (DESIGN.md contract 2), and the test every
training run ends with. `run` (``scripts/evaluate.py``, ``mimic-evaluate``) is Lightning's test of the loaded
checkpoint or exported ONNX file (`OnnxClassifier`) on the split ``split=`` names; `report_test` is that test and what
it writes into the run folder: ``test_metrics.json`` (the keys of a training run's), ``confusion_matrix.png`` and
``predictions.csv``. Temperature calibration (`fit_temperature`, `ece`) and the choice of a logit adjustment
(`choose_logit_adjustment`) are here too: train.py makes both on the validation split after fitting.
``data=folder data.path=DIR`` evaluates every image in DIR's class folders. A class with no test image (CK+48 has no
neutral face) has no recall (``null`` in the JSON, n/a in the printout) and is left out of balanced accuracy and
macro-F1 (`mimic.models.classifier.class_scores`).

Cross-dataset evaluation: ``split=all`` makes every image of the data config test data (``data.test_only``: all
splits of every source pooled), the way to score a model on a whole set it never trained on; the report's ``split``
then says ``all`` (as it does for a data config that sets ``test_only``, e.g. ``data=folder``). A multirun over data
configs ends with one table of them all, printed and written to the sweep folder's ``cross_dataset.csv``
(`mimic.cross_report`)::

    python scripts/evaluate.py ckpt=best.ckpt data=ckplus48 split=all
    python scripts/evaluate.py ckpt=best.ckpt data=folder data.path=path/to/faces split=all
    python scripts/evaluate.py ckpt=best.ckpt data=ckplus48,jaffe,rafdb split=all -m

Each data config of a multirun reads its own ``data.path`` (``data/<name>`` by default); an override on the command
line (``data.path=...``, ``split=...``) applies to every job. A folder of your own is a config in ``conf/data/`` of
the folder you run from.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torchmetrics.classification import MulticlassCalibrationError, MulticlassConfusionMatrix
from torchmetrics.functional.classification import multiclass_calibration_error, multiclass_confusion_matrix

from mimic.cross_report import job_errors
from mimic.data.base import SPLITS, DataError
from mimic.data.datamodule import datamodule_from_config
from mimic.io import new_file, write_bytes, write_json
from mimic.models import inference
from mimic.models.bundled import resolve_ckpt
from mimic.models.classifier import EmotionClassifier, class_scores, split_metrics
from mimic.models.figures import render_confusion
from mimic.models.onnx_model import OnnxModel, check_baked_settings, is_onnx


@torch.no_grad()
def collect_logits(model: torch.nn.Module, batches: Iterable, device: str | torch.device = "cpu"):
    """Run ``model`` over (x, y, ...) batches; returns (logits float32 (N, C), labels (N,))."""
    model.eval().to(device)
    logits, labels = [], []
    for batch in batches:
        logits.append(model(batch[0].to(device)).float().cpu())
        labels.append(batch[1].cpu())
    return torch.cat(logits), torch.cat(labels)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) on held-out data (Guo et al., 2017)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")
    logits, labels = logits.detach().float(), labels.detach()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


LOGIT_ADJUST_GRID = tuple(round(0.1 * k, 1) for k in range(11))


def choose_logit_adjustment(
    logits: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor, grid: Sequence[float] = LOGIT_ADJUST_GRID
) -> tuple[float, dict[float, tuple[float, float]]]:
    """Post-hoc logit adjustment (Menon et al., 2021): the ``tau`` of ``grid`` for which ``logits - tau * log_prior``
    (``log_prior``: the log of each class's share of the training faces) reads held-out data with the highest balanced
    accuracy among the taus that keep its accuracy at least that of the logits as they are (ties: the smaller tau).
    Returns that tau and each tau's (accuracy, balanced accuracy) on the data, as evaluate.py scores them."""
    n = logits.shape[1]
    scores = {}
    for tau in grid:
        guess = (logits.float() - tau * log_prior).argmax(1)
        confusion = multiclass_confusion_matrix(guess, labels, n)
        scores[tau] = (
            float((guess == labels).double().mean()),
            float(class_scores(confusion, range(n), "")["balanced_acc"]),
        )
    floor = scores[grid[0]][0]
    kept = [tau for tau in grid if scores[tau][0] >= floor]
    return max(kept, key=lambda tau: (scores[tau][1], -tau)), scores


def ece(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Expected calibration error (15 bins) of softmax(logits / temperature), as the test metrics measure it."""
    return float(multiclass_calibration_error(F.softmax(logits / temperature, 1), labels, logits.shape[1], n_bins=15))


class RecordPredictions(L.Callback):
    """Keeps every test image's calibrated probabilities (from the logits ``test_step`` returns) with its label,
    source and id, and logs what the LightningModule's own test metrics lack: ``test/nll`` and, when the data has
    several sources, ``test/acc_<source>``."""

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batches: list[tuple[torch.Tensor, ...]] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, torch.Tensor):
            raise TypeError("RecordPredictions needs the LightningModule's test_step to return its logits")
        self._batches.append((outputs.detach().float().cpu(), batch[1].cpu(), batch[2].cpu(), batch[3].cpu()))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logits, self.labels, self.sources, index = (torch.cat(parts) for parts in zip(*self._batches))
        self._batches = []
        dm = trainer.datamodule
        self.ids, self.source_names = dm.ids(dm.test_split)[index.numpy()], dm.source_names
        temperature = pl_module.temperature.float().cpu()
        self.probs = inference.probabilities(logits, temperature)
        pl_module.log("test/nll", F.cross_entropy(logits / temperature, self.labels))
        if len(self.source_names) > 1:
            right = (self.probs.argmax(1) == self.labels).float()
            for k, name in enumerate(self.source_names):
                if (self.sources == k).any():
                    pl_module.log(f"test/acc_{name}", right[self.sources == k].mean())

    def csv(self, class_names: Sequence[str]) -> bytes:
        """One row per image: its id (file, or "file:line" of a CSV row), source, true and predicted class, and the
        calibrated probability of every class."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", "source", "label", "predicted", *(f"p_{c}" for c in class_names)])
        for image, source, label, p in zip(self.ids, self.sources.tolist(), self.labels.tolist(), self.probs.tolist()):
            row = [image, self.source_names[source], class_names[label], class_names[p.index(max(p))]]
            writer.writerow(row + [f"{v:.6f}" for v in p])
        return buffer.getvalue().encode()


class OnnxClassifier(L.LightningModule):
    """An exported ONNX file under Lightning's test, with `EmotionClassifier`'s own test step and metrics: the graph
    on onnxruntime stands in for the net. The graph gives calibrated probabilities p = softmax(z / T); the logits
    the test step sees are T log p = z - a constant per face, so it recovers p at the file's temperature T and the
    uncalibrated softmax(z) as a checkpoint's test does. ``tta_flip`` other than the graph's is an error."""

    test_step = EmotionClassifier.test_step
    on_test_epoch_end = EmotionClassifier.on_test_epoch_end

    def __init__(self, path: str | os.PathLike, threads: int | None = None, tta_flip: bool | None = None) -> None:
        super().__init__()
        self.onnx = OnnxModel(path, threads)
        card = self.onnx.card
        check_baked_settings(card, path, tta_flip)
        self.save_hyperparameters({"tta_flip": card.tta_flip, "log_images": False})
        self.class_names, self.spec = card.class_names, card.preprocess
        self.register_buffer("temperature", torch.tensor(card.temperature))
        n = len(self.class_names)
        self.test_metrics = split_metrics(n, "test/")
        self.test_ece_raw = MulticlassCalibrationError(n, n_bins=15)
        self.test_confusion = MulticlassConfusionMatrix(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.from_numpy(self.onnx(x.detach().float().cpu().numpy()))
        tiny = torch.finfo(p.dtype).tiny  # a probability that underflowed to 0 stays a finite logit
        return (self.temperature.cpu() * p.clamp_min(tiny).log()).to(x.device)


def report_test(
    trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule, out_dir: str | Path, info: dict
) -> dict:
    """Lightning's test of ``model`` on the split ``datamodule.test_split`` names; writes ``test_metrics.json``
    (``info``, then the ``test/...`` metrics, the confusion matrix and the class names), ``confusion_matrix.png`` and
    ``predictions.csv`` into ``out_dir``; returns what the JSON holds. ``info["split"]``, where given, is the split's
    name in the report (``all``: the data's every image). train.py and evaluate.py both test this way."""
    recorder = RecordPredictions()
    trainer.callbacks.append(recorder)
    try:
        metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    finally:
        trainer.callbacks.remove(recorder)
    names = list(model.class_names)
    confusion = multiclass_confusion_matrix(recorder.probs.argmax(1), recorder.labels, len(names)).numpy()
    report = {
        **info,
        "split": info.get("split", datamodule.test_split),
        "tta_flip": bool(model.hparams.tta_flip),
        "n": len(recorder.labels),
        **{k: float(v) for k, v in metrics.items()},
        **{f"test/recall_{c}": None for c in names if f"test/recall_{c}" not in metrics},  # no test image: n/a
        "test/confusion_matrix": confusion.tolist(),
        "class_names": names,
    }
    metrics_json, confusion_png, predictions_csv = (
        new_file(Path(out_dir) / name, "the run folder", name)
        for name in ("test_metrics.json", "confusion_matrix.png", "predictions.csv")
    )  # a folder holding an earlier run's results keeps them: these get numbered names
    write_json(metrics_json, report)
    png = cv2.imencode(".png", cv2.cvtColor(render_confusion(confusion, names), cv2.COLOR_RGB2BGR))[1]
    write_bytes(confusion_png, png.tobytes())
    write_bytes(predictions_csv, recorder.csv(names))
    print(
        f"{report['split']}: accuracy {report['test/acc']:.4f} (balanced {report['test/balanced_acc']:.4f}), "
        f"macro-F1 {report['test/f1']:.4f}, NLL {report['test/nll']:.4f}, "
        f"ECE {report['test/ece_uncalibrated']:.4f} -> {report['test/ece']:.4f} "
        f"(temperature {report['test/temperature']:.3f}), n={report['n']}"
    )
    for name in names:
        recall = report[f"test/recall_{name}"]
        print(f"  recall {name:<9} {'n/a: no test image of this class' if recall is None else f'{recall:.4f}'}")
    if absent := [c for c in names if report[f"test/recall_{c}"] is None]:
        print(f"  balanced accuracy and macro-F1 are over the {len(names) - len(absent)} classes with test images")
    for name in recorder.source_names:
        if f"test/acc_{name}" in report:
            print(f"  accuracy on {name}: {report[f'test/acc_{name}']:.4f}")
    print(f"Metrics: {metrics_json}\nConfusion matrix: {confusion_png}\nPredictions: {predictions_csv}")
    return report


SPLIT_CHOICES = (*SPLITS, "all")  # all: every image of the data is test data


def run(cfg: DictConfig) -> dict:
    """Test ``cfg.ckpt`` on ``cfg.data``'s ``cfg.split`` (``all``: every image of the data); returns what
    test_metrics.json holds. In a multirun a user's mistake fails this job only (`mimic.cross_report.job_errors`)."""
    with job_errors():
        return _run(cfg)


def _run(cfg: DictConfig) -> dict:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if cfg.split not in SPLIT_CHOICES:
        raise DataError(
            f"split={cfg.split!r}: choose one of {', '.join(SPLIT_CHOICES)} (all: every image is test data)."
        )
    L.seed_everything(cfg.seed, verbose=False)
    ckpt = resolve_ckpt(cfg.get("ckpt"))
    if is_onnx(ckpt):
        model = OnnxClassifier(ckpt, cfg.get("threads"), cfg.get("tta_flip"))
    else:
        flip = {} if cfg.get("tta_flip") is None else {"tta_flip": bool(cfg.tta_flip)}
        model = EmotionClassifier.load(ckpt, **flip)
    with open_dict(cfg):
        cfg.model.preprocess = model.spec.to_dict()  # checked numbers and names (PreprocessSpec), not the file's text
        cfg.data.eval_batch_size = cfg.batch_size
        cfg.data.augment = None
        if cfg.split == "all":
            cfg.data.test_only = True  # every split of every source pooled into "test"
        cfg.data.test_split = "test" if cfg.split == "all" else cfg.split
    dm = datamodule_from_config(cfg.data, classes=model.class_names)
    limits = dm.batch_limits(cfg.trainer)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False, **limits)
    info = {
        "checkpoint": str(ckpt.resolve()),
        "data": OmegaConf.to_container(cfg.data.sources, resolve=True),
        "split": "all" if cfg.data.get("test_only") else cfg.split,  # a test_only data config's test split is all
    }
    return report_test(trainer, model, dm, cfg.paths.output_dir, info)
