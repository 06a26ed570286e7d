"""Fine-tuning a trained model on your own faces, the recipe: ``python train.py +finetune=webcam`` (the web page's
jobs, `mimic.jobs`, run the same recipe).

Before the data and the model are built, `configure_finetune` settles the run: the starting checkpoint
(``finetune.ckpt``, the bundled model when null), whose net and preprocessing the run takes over, and whether FER2013
joins it (``finetune.fer2013``: ``auto`` merges it when it is found at its configured path and otherwise fine-tunes on
the class folders alone, saying that forgetting of the other classes is then not guarded against). `prepare_finetune`
copies every tensor whose name and shape match into the new model and starts the classifier rows of classes the
checkpoint knows from its rows (``finetune.head_init: by_name``; ``reset`` starts the whole layer afresh when the
class set differs). What stays frozen is the freeze callback's job (conf/finetune/webcam.yaml). Any training run can
start from a trained model's weights the same way (`start_from`, ``init_from=``), keeping its own config. Every
checkpoint the run writes appears whole or not at all (`AtomicCheckpointIO`): a run killed by SIGTERM leaves no
half-written model.

`compose_train` composes the recipe's config outside a command line, and `score` measures a model before and after on
face crops: the photos held out of a run (`held_out_photos`) or FER2013's test split restricted to the run's classes
(`fer2013_test`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict

from mimic.data.fer2013 import FER2013Source
from mimic.data.fer2013 import found as fer2013_found
from mimic.data.folders import FolderSource
from mimic.errors import UserError
from mimic.io import atomic_write
from mimic.labels import FER2013_CLASSES, remap
from mimic.models.bundled import resolve_ckpt
from mimic.models.checkpoint import CheckpointError, check_fits, read_card
from mimic.models.classifier import EmotionClassifier
from mimic.preprocessing import preprocess
from mimic.settings import check_settings

log = logging.getLogger(__name__)

HEAD_INITS = ("reset", "by_name")
FER2013_MERGE = ("auto", True, False)


def best_checkpoint(run_dir: Path) -> Path | None:
    """The best checkpoint of one run folder: the one its test_metrics.json names, else its newest best*.ckpt."""
    metrics = run_dir / "test_metrics.json"
    if metrics.is_file():
        try:
            named = Path(json.loads(metrics.read_text()).get("best_checkpoint", ""))
        except (OSError, ValueError):
            named = Path()
        if named.name and named.is_file():
            return named
    found = sorted(run_dir.glob("checkpoints/best*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_checkpoint(ckpt: str | Path | None, setting: str = "finetune.ckpt") -> tuple[Path, str]:
    """(checkpoint path, how it was chosen). ``ckpt`` may be a .ckpt file, a run folder, or None: the bundled model;
    ``setting`` names it in messages."""
    if not ckpt:
        return resolve_ckpt(None), "the bundled model"
    path = resolve_ckpt(ckpt)
    if path.is_dir():
        best = best_checkpoint(path)
        if best is None:
            raise CheckpointError(
                f"{setting}: {path} is a folder without checkpoints/best*.ckpt; pass the .ckpt file itself."
            )
        return best, f"best checkpoint of run {path}"
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{setting}={path} is an exported ONNX model, which holds no training state: "
            f"{'fine-tuning' if setting == 'finetune.ckpt' else 'a warm start'} needs the .ckpt it was exported from."
        )
    return path, setting


def configure_finetune(cfg: DictConfig) -> None:
    """Settle a fine-tuning config before its data and model are built (train.py calls this): the run takes the
    starting checkpoint's net and preprocessing, FER2013 joins as ``finetune.fer2013`` says, and the class folders
    come first among the sources, so that validation limited to its first batches (the recipe's
    ``limit_val_batches``) sees all of your photos and the first part of FER2013's."""
    ft = cfg.finetune
    path, _ = resolve_checkpoint(ft.get("ckpt"))
    card, _ = read_card(path)
    merge = ft.get("fer2013", "auto")
    if merge not in FER2013_MERGE:
        raise UserError(f"finetune.fer2013={merge}: expected auto, true or false")
    sources = cfg.data.sources
    where = OmegaConf.select(cfg, "data.sources.fer2013.path", default=None)
    drop = "fer2013" in sources and (merge is False or (merge == "auto" and not (where and fer2013_found(where))))
    with open_dict(cfg):
        cfg.model.net = OmegaConf.create(card.net)
        cfg.model.preprocess = OmegaConf.create(card.preprocess.to_dict())
        cfg.data.sources = {
            k: sources[k] for k in sorted(sources, key=lambda k: k == "fer2013") if k != "fer2013" or not drop
        }
        if drop and "fer2013" in (cfg.data.get("source_weights") or {}):
            del cfg.data.source_weights["fer2013"]
    if drop and merge == "auto":
        log.warning(
            "FER2013 not found at %s: fine-tuning on your class folders alone, so forgetting of the other classes is "
            "not guarded against. Put FER2013 there (or point data.path at it) to merge it in; "
            "finetune.fer2013=false silences this.",
            where,
        )


def load_matching(
    model: EmotionClassifier, state: dict[str, torch.Tensor], old_classes: Sequence[str], head_init: str = "reset"
) -> dict:
    """Copy every tensor of ``state`` whose name and shape match into ``model``; the classifier layer only when the
    class sets are equal (``by_name``: the rows of shared classes). Returns what was done; shape mismatches outside
    the classifier are a `CheckpointError`."""
    if head_init not in HEAD_INITS:
        raise CheckpointError(f"finetune.head_init must be one of {HEAD_INITS}, got {head_init!r}")
    new_classes = list(model.class_names)
    same_classes = list(old_classes) == new_classes
    layer = model.net.head_linear
    head_keys = {f"net.{layer}.weight", f"net.{layer}.bias"}
    target = model.state_dict()
    copied, mismatched, head_rows = [], [], 0
    with torch.no_grad():
        for key, value in state.items():
            if key not in target or key == "temperature":
                continue
            if key in head_keys and not same_classes:
                if head_init == "by_name":
                    for i, name in enumerate(new_classes):
                        if name in old_classes:
                            target[key][i].copy_(value[list(old_classes).index(name)])
                            head_rows += key.endswith("weight")
                continue
            if target[key].shape != value.shape:
                mismatched.append(f"{key}: checkpoint {tuple(value.shape)}, model {tuple(target[key].shape)}")
                continue
            target[key].copy_(value)
            copied.append(key)
    if mismatched:
        raise CheckpointError(
            "finetune: the checkpoint's net does not fit the configured one ("
            + "; ".join(mismatched[:5])
            + (f"; and {len(mismatched) - 5} more" if len(mismatched) > 5 else "")
            + "). Set model.net to the checkpoint's net config."
        )
    return {
        "copied": len(copied),
        "missing": sorted(set(target) - set(state) - {"temperature"}),
        "same_classes": same_classes,
        "head": layer,
        "head_rows": head_rows,
    }


def prepare_finetune(model: EmotionClassifier, cfg: DictConfig) -> EmotionClassifier:
    """Load the starting weights into the freshly built ``model`` (see the module docstring); says which checkpoint
    it used and what became of the head."""
    ft = cfg.get("finetune") or {}
    return start_from(model, ft.get("ckpt"), "finetune.ckpt", str(ft.get("head_init", "by_name")))


def start_from(model: EmotionClassifier, ckpt: str | Path | None, setting: str, head_init: str) -> EmotionClassifier:
    """Load the weights of the checkpoint ``ckpt`` (see `resolve_checkpoint`; ``setting`` names it in messages) into
    the freshly built ``model``: every tensor whose name and shape match, the classifier as ``head_init`` says (see
    `load_matching`). ``init_from=`` of a training run and ``+finetune=webcam`` both start here; the run's own config
    (preprocessing, augmentation, optimiser, schedule) is kept, and nothing of the file's training state is."""
    path, how = resolve_checkpoint(ckpt, setting)
    card, state = read_card(path)
    check_fits(card, model, f"{setting} {path}")
    done = load_matching(model, state["state_dict"], card.class_names, head_init)
    if done["same_classes"]:
        head = "head kept (same classes)"
    else:
        head = f"head re-initialised for {model.class_names} (checkpoint: {card.class_names})"
        if head_init == "by_name":
            head += f"; {done['head_rows']} class rows copied by name"
    verb = "Fine-tuning" if setting == "finetune.ckpt" else "Starting"
    message = f"{verb} from {path} ({how}): {done['copied']} tensors copied, {head}"
    log.info(message)
    print(message)
    if done["missing"]:
        log.info("not in the checkpoint, left as initialised: %s", ", ".join(done["missing"]))
    return model


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but each file is written beside its final name and renamed into place
    (`mimic.io.atomic_write`): a run killed mid-save leaves the previous file or none, never half of one.
    (Lightning's own writer stages the file in the system's temporary folder, which is only atomic on one disk.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def compose_train(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """The ``train`` config composed from the package's configs with ``overrides``, Hydra's runtime values set as a
    command-line run into ``output_dir`` would have them."""
    GlobalHydra.instance().clear()
    with initialize_config_module("mimic.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(Path.cwd())
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def fer2013_test(path: str | Path, classes: Sequence[str], cache_dir: str | Path | None = None):
    """FER2013's test split (PrivateTest) rows of ``classes``, relabelled onto them: (images, labels)."""
    test = FER2013Source(path, cache_dir=cache_dir).load()["test"]
    labels = remap(test.labels, FER2013_CLASSES, classes)
    keep = labels >= 0
    return np.asarray(test.images)[keep], labels[keep]


def held_out_photos(root: Path, classes: Sequence[str], preprocess: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """The face crops of ``root/test/<class>/`` read as the run read its photos, labelled by index into ``classes``."""
    source = FolderSource(root, classes=classes, preprocess=preprocess, cache_dir=False)
    test = source.load().get("test")
    if test is None:
        return [], np.empty(0, np.int64)
    return list(test.images), remap(test.labels, source.class_names, classes)


@torch.inference_mode()
def score(
    ckpt: str | Path, images: Sequence[np.ndarray], labels: np.ndarray, classes: Sequence[str], batch: int = 64
) -> dict[str, Any]:
    """Accuracy and confusion matrix (rows: true class, columns: predicted, both in ``classes`` order) of ``ckpt`` on
    face crops labelled by index into ``classes``. The model decides among the classes it shares with ``classes``:
    a class it does not know it never predicts."""
    model = EmotionClassifier.load(ckpt)
    columns = [model.class_names.index(c) if c in model.class_names else -1 for c in classes]
    known = torch.tensor([c >= 0 for c in columns])
    take = torch.tensor([max(c, 0) for c in columns])
    preds = []
    for i in range(0, len(labels), batch):
        logits = model(preprocess(list(images[i : i + batch]), model.spec))[:, take]
        preds.append(logits.masked_fill(~known, -torch.inf).argmax(1).numpy())
    pred = np.concatenate(preds) if preds else np.empty(0, np.int64)
    n = len(classes)
    confusion = np.bincount(np.asarray(labels) * n + pred, minlength=n * n).reshape(n, n)
    return {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else None,
        "confusion": confusion.tolist(),
    }


def job_config(cfg: DictConfig, job: dict[str, Any], job_dir: Path, progress: Path) -> DictConfig:
    """The composed ``+finetune=webcam`` config ``cfg`` made the web page's job ``job`` (its ``job.json``, in
    ``job_dir``; `mimic.jobs`), its progress written to ``progress``: every value set as data, none parsed as override
    text. A job without validation photos (``captured``) and without FER2013 validates nothing and keeps its last
    epoch, uncalibrated."""
    with open_dict(cfg):
        cfg.finetune.ckpt = str(job["base"])
        cfg.finetune.fer2013 = bool(job["fer2013"])
        cfg.data.path = str(job["fer2013_path"])
        cfg.data.classes = list(job["classes"])
        cfg.data.sources.webcam.root = str(job_dir / "data")
        cfg.data.sources.webcam.cache_dir = False
        cfg.trainer.max_epochs = int(job["epochs"])
        cfg.trainer.enable_progress_bar = False
        cfg.callbacks.progress_bar = None
        cfg.callbacks.last_checkpoint = None
        cfg.callbacks.lr_monitor = None
        cfg.callbacks.progress_file = {"_target_": "mimic.callbacks.ProgressFile", "path": str(progress)}
        if job["freeze"]:
            cfg.callbacks.freeze.patterns = list(job["freeze"])
        else:
            cfg.callbacks.freeze = None
        cfg.test = False
        if not job["fer2013"] and not any(n.get("val") for n in job.get("captured", {}).values()):
            # no photo to validate on (`mimic.job_data.VAL_FROM`): no validation, the last epoch is kept as it is
            cfg.trainer.limit_val_batches = 0
            cfg.callbacks.early_stopping = None
            cfg.callbacks.model_checkpoint.monitor = None
            cfg.callbacks.model_checkpoint.filename = "last-epoch{epoch:03d}"
            cfg.calibrate = False
        if job.get("seed") is not None:
            cfg.seed = int(job["seed"])
    check_settings(cfg, "train")
    return cfg
