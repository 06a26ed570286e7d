"""Start a training run from a trained checkpoint (``python train.py +finetune=webcam``).

`prepare_finetune` finds the checkpoint (``finetune.ckpt``, else the best checkpoint of the newest FER2013 run under
``paths.log_dir``), checks that its net and preprocessing match the configured model, copies every tensor whose name
and shape match, and leaves the classifier layer freshly initialised when the class set differs
(``finetune.head_init: by_name`` instead starts each class the checkpoint knows from its old row). What stays frozen
is the freeze callback's job (conf/finetune/webcam.yaml).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mimic.models.checkpoint import CheckpointError, check_fits, read_card
from mimic.models.classifier import EmotionClassifier

log = logging.getLogger(__name__)

HEAD_INITS = ("reset", "by_name")


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


def _is_fer2013_run(config_file: Path) -> bool:
    try:
        conf = OmegaConf.to_container(OmegaConf.load(config_file), resolve=False)
    except Exception:  # a broken or foreign config: not a run to start from
        return False
    if not isinstance(conf, dict) or conf.get("finetune"):
        return False
    sources = (conf.get("data") or {}).get("sources") or {}
    return any("FER2013Source" in str((s or {}).get("_target_", "")) for s in sources.values())


def latest_fer2013_checkpoint(log_dir: str | Path) -> Path:
    """The best checkpoint of the most recent FER2013 training run (not a fine-tuning run) under ``log_dir``."""
    log_dir = Path(log_dir)
    found = []
    if log_dir.is_dir():
        for config_file in log_dir.rglob(".hydra/config.yaml"):
            if _is_fer2013_run(config_file) and (best := best_checkpoint(config_file.parent.parent)):
                found.append(best)
    if not found:
        raise CheckpointError(
            f"finetune: no FER2013 training run with a checkpoint under {log_dir}. Train one first "
            f"(`python train.py data=fer2013`), or pass the checkpoint to start from: "
            f"`python train.py +finetune=webcam finetune.ckpt=/path/to/best.ckpt`."
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def resolve_checkpoint(ckpt: str | Path | None, log_dir: str | Path) -> tuple[Path, str]:
    """(checkpoint path, how it was chosen). ``ckpt`` may be a .ckpt file or a run folder."""
    if ckpt:
        path = Path(str(ckpt)).expanduser()
        if path.is_dir():
            best = best_checkpoint(path)
            if best is None:
                raise CheckpointError(
                    f"finetune.ckpt: {path} is a folder without checkpoints/best*.ckpt; pass the .ckpt file itself."
                )
            return best, f"best checkpoint of run {path}"
        return path, "finetune.ckpt"
    return latest_fer2013_checkpoint(log_dir), f"newest FER2013 run under {log_dir}"


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
    path, how = resolve_checkpoint(ft.get("ckpt"), cfg.paths.log_dir)
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
