"""Fine-tuning a trained model on your own faces: ``python train.py +finetune=webcam``, and the same run as a background
job of the web page (``python -m mimic.finetune JOB_FOLDER``).

Before the data and the model are built, `configure_finetune` settles the run: the starting checkpoint
(``finetune.ckpt``, the bundled model when null), whose net and preprocessing the run takes over, and whether FER2013
joins it (``finetune.fer2013``: ``auto`` merges it when it is found at its configured path and otherwise fine-tunes on
the class folders alone, saying that forgetting of the other classes is then not guarded against). `prepare_finetune`
copies every tensor whose name and shape match into the new model and starts the classifier rows of classes the
checkpoint knows from its rows (``finetune.head_init: by_name``; ``reset`` starts the whole layer afresh when the
class set differs). What stays frozen is the freeze callback's job (conf/finetune/webcam.yaml).

A job (`run_job`) reads ``job.json`` from its folder (the web server writes it, with the captures split into
``data/{train,val,test}/<class>/``), runs that recipe into the hidden ``.run/``, writes ``progress.json`` as it goes,
copies the best checkpoint to `MODEL_FILE` once the run has ended well, and writes ``result.json``: the new model and
the report, the old and the new model's accuracy and confusion matrix on the held-out photos (``data/test``) and on
FER2013's test split restricted to the run's classes when FER2013 is on disk. Every checkpoint it writes appears
whole or not at all (`AtomicCheckpointIO`), so a job cancelled by SIGTERM leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict

from mimic.data.fer2013 import found as fer2013_found
from mimic.errors import UserError
from mimic.io import atomic_write, cache_dir, sha256_file, write_json
from mimic.labels import FER2013_CLASSES, remap
from mimic.models.bundled import resolve_ckpt
from mimic.models.checkpoint import CheckpointError, check_fits, read_card
from mimic.models.classifier import EmotionClassifier

log = logging.getLogger(__name__)

HEAD_INITS = ("reset", "by_name")
MODEL_FILE = "personalised.ckpt"  # a job's new model, in its folder; the run itself goes to the hidden .run/
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


def resolve_checkpoint(ckpt: str | Path | None) -> tuple[Path, str]:
    """(checkpoint path, how it was chosen). ``ckpt`` may be a .ckpt file, a run folder, or None: the bundled model."""
    if not ckpt:
        return resolve_ckpt(None), "the bundled model"
    path = resolve_ckpt(ckpt)
    if path.is_dir():
        best = best_checkpoint(path)
        if best is None:
            raise CheckpointError(
                f"finetune.ckpt: {path} is a folder without checkpoints/best*.ckpt; pass the .ckpt file itself."
            )
        return best, f"best checkpoint of run {path}"
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"finetune.ckpt={path} is an exported ONNX model, which holds no training state: fine-tuning needs the "
            f".ckpt it was exported from."
        )
    return path, "finetune.ckpt"


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
    path, how = resolve_checkpoint(ft.get("ckpt"))
    card, ckpt = read_card(path)
    check_fits(card, model, f"finetune.ckpt {path}")
    head_init = str(ft.get("head_init", "reset"))
    done = load_matching(model, ckpt["state_dict"], card.class_names, head_init)
    if done["same_classes"]:
        head = "head kept (same classes)"
    else:
        head = f"head re-initialised for {model.class_names} (checkpoint: {card.class_names})"
        if head_init == "by_name":
            head += f"; {done['head_rows']} class rows copied by name"
    message = f"Fine-tuning from {path} ({how}): {done['copied']} tensors copied, {head}"
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


# ---- the background job ------------------------------------------------------------------------------------------
class ProgressFile(L.Callback):
    """Writes the run's progress to a JSON file: the phase, epoch and step, per finished epoch the training loss and
    validation accuracies, and when each phase began (at most one write a second within an epoch)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.history: list[dict[str, Any]] = []
        self.phases = _read_progress(self.path).get("phases", [])  # [[phase, time]] from set_phase before the run
        self._written = 0.0

    def write(self, trainer: L.Trainer, phase: str, force: bool = True) -> None:
        if not force and time.monotonic() - self._written < 1.0:
            return
        self._written = time.monotonic()
        if not self.phases or self.phases[-1][0] != phase:
            self.phases.append([phase, time.time()])
        steps = trainer.estimated_stepping_batches
        state = {
            "phase": phase,
            "epoch": trainer.current_epoch,
            "epochs": trainer.max_epochs,
            "step": trainer.global_step,
            "steps": int(steps) if np.isfinite(steps) else None,
            "history": self.history,
            "phases": self.phases,
            "updated": time.time(),
        }
        write_json(self.path, state)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, "training")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.write(trainer, "training", force=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row = {"epoch": trainer.current_epoch + 1, "loss": m.get("train/loss_epoch"), "time": time.time()}
        row |= {k.removeprefix("val/"): v for k, v in m.items() if k.startswith("val/acc")}
        self.history.append(row)
        self.write(trainer, "training")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, "calibrating")


def _read_progress(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"history": []}


def set_phase(path: Path, phase: str) -> None:
    """Set the phase in a progress file, keeping what else it says."""
    state = _read_progress(path)
    phases = [*state.get("phases", []), [phase, time.time()]]
    write_json(path, {**state, "phase": phase, "phases": phases, "updated": time.time()})


def compose_train(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """The ``train`` config composed from the package's configs with ``overrides``, Hydra's runtime values set as a
    command-line run into ``output_dir`` would have them."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

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
    from mimic.data.fer2013 import FER2013Source

    test = FER2013Source(path, cache_dir=cache_dir).load()["test"]
    labels = remap(test.labels, FER2013_CLASSES, classes)
    keep = labels >= 0
    return np.asarray(test.images)[keep], labels[keep]


@torch.inference_mode()
def score(
    ckpt: str | Path, images: Sequence[np.ndarray], labels: np.ndarray, classes: Sequence[str], batch: int = 64
) -> dict[str, Any]:
    """Accuracy and confusion matrix (rows: true class, columns: predicted, both in ``classes`` order) of ``ckpt`` on
    face crops labelled by index into ``classes``. The model decides among the classes it shares with ``classes``:
    a class it does not know it never predicts."""
    from mimic.models import load_checkpoint
    from mimic.preprocessing import preprocess

    model = load_checkpoint(ckpt)
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


def fer2013_score(ckpt: str | Path, fer2013: str | Path, classes: Sequence[str]) -> dict[str, Any]:
    """`score` of ``ckpt`` on FER2013's test split restricted to ``classes``, kept in the cache folder by the model
    file's and FER2013's contents: the model every job starts from is scored once."""
    from mimic.data.fer2013 import locate

    found = locate(fer2013)[1]
    key = [sha256_file(ckpt), str(found.resolve()), found.stat().st_size, found.stat().st_mtime_ns, list(classes)]
    path = cache_dir("scores") / f"{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        result = score(ckpt, *fer2013_test(fer2013, classes), classes)
    with contextlib.suppress(OSError):  # a cache that cannot be written costs time, nothing else
        write_json(path, result)
    return result


def held_out_photos(root: Path, classes: Sequence[str], preprocess: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """The face crops of ``root/test/<class>/`` read as the run read its photos, labelled by index into ``classes``."""
    from mimic.data.folders import FolderSource

    source = FolderSource(root, classes=classes, preprocess=preprocess, cache_dir=False)
    test = source.load().get("test")
    if test is None:
        return [], np.empty(0, np.int64)
    return list(test.images), remap(test.labels, source.class_names, classes)


def job_config(job: dict[str, Any], job_dir: Path) -> DictConfig:
    """The ``+finetune=webcam`` config of a job: every value set as data on the composed config, none parsed as
    override text."""
    from mimic.settings import check_settings

    cfg = compose_train(["+finetune=webcam", "logger=none"], job_dir / ".run")
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
        if job["freeze"]:
            cfg.callbacks.freeze.patterns = list(job["freeze"])
        else:
            cfg.callbacks.freeze = None
        cfg.test = False
        if job.get("seed") is not None:
            cfg.seed = int(job["seed"])
    check_settings(cfg, "train")
    return cfg


def run_job(job_dir: str | Path) -> dict[str, Any]:
    """Run the fine-tuning job of ``job_dir`` (see the module docstring); returns what ``result.json`` says."""
    from mimic.train import run as train

    job_dir = Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text())
    progress = job_dir / "progress.json"
    set_phase(progress, "loading data")
    cfg = job_config(job, job_dir)
    with open_dict(cfg):
        cfg.callbacks.progress_file = {"_target_": "mimic.finetune.ProgressFile", "path": str(progress)}
    results = train(cfg)
    model = job_dir / MODEL_FILE  # appears whole, once the run has ended well
    atomic_write(model, lambda tmp: shutil.copyfile(results["best_checkpoint"], tmp))
    set_phase(progress, "evaluating")
    classes = list(job["classes"])
    images, labels = held_out_photos(job_dir / "data", classes, OmegaConf.to_container(cfg.model.preprocess))
    report: dict[str, Any] = {"classes": classes, "before": {}, "after": {}}
    for when, ckpt in (("before", job["base"]), ("after", model)):
        report[when]["held_out"] = score(ckpt, images, labels, classes)
    fer_classes = [c for c in classes if c in FER2013_CLASSES]
    if fer2013_found(job["fer2013_path"]) and fer_classes:
        report["fer2013_classes"] = fer_classes
        report["before"]["fer2013"] = fer2013_score(job["base"], job["fer2013_path"], fer_classes)
        report["after"]["fer2013"] = score(model, *fer2013_test(job["fer2013_path"], fer_classes), fer_classes)
    result = {"state": "done", "model": str(model), "report": report, "finished": time.time()}
    write_json(job_dir / "result.json", result)
    return result


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds: half-written temporary files are removed on the way out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m mimic.finetune JOB_FOLDER``: run the job, and say in result.json how it ended."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.exit("usage: python -m mimic.finetune JOB_FOLDER")
    job_dir = Path(args[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_job(job_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        write_json(job_dir / "result.json", {"state": "failed", "error": str(e)})
        sys.exit(2)
    except Exception as e:
        traceback.print_exc()
        error = f"the fine-tuning job failed ({type(e).__name__}: {e}); its log: {job_dir / 'log.txt'}"
        write_json(job_dir / "result.json", {"state": "failed", "error": error})
        sys.exit(1)


if __name__ == "__main__":
    main()
