"""Training: instantiate data, model, callbacks, loggers and trainer from the composed config; fit; with
``logit_adjust``, adjust the best checkpoint's logits for the training faces' class shares; calibrate it on the
validation split; test it (`evaluation.report_test`: test metrics, confusion matrix and
predictions in the run folder); give each logger the run's outcome (`tracking.log_results`).

``train.py`` at the repository root is the Hydra entry point and calls ``run``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from mimic.data.datamodule import datamodule_from_config
from mimic.errors import UserError
from mimic.evaluate import choose_logit_adjustment, collect_logits, ece, fit_temperature, report_test
from mimic.finetune import configure_finetune, prepare_finetune, resolve_checkpoint, start_from
from mimic.io import atomic_write
from mimic.models.checkpoint import check_resume, read_card
from mimic.tracking import log_results

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list:
    return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def calibrate_checkpoint(model: L.LightningModule, ckpt_path: str, dm) -> float:
    """Load ``ckpt_path`` into ``model``, fit its temperature on the validation split, and store it in the file."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["state_dict"])
    logits, labels = collect_logits(model, dm.val_dataloader(), model.device)
    temperature = fit_temperature(logits, labels)
    model.temperature.fill_(temperature)
    ckpt["state_dict"]["temperature"] = torch.tensor(temperature)
    atomic_write(ckpt_path, lambda tmp: torch.save(ckpt, tmp))
    before, after = ece(logits, labels), ece(logits, labels, temperature)
    log.info("temperature %.3f: validation ECE %.4f -> %.4f", temperature, before, after)
    return temperature


def adjust_checkpoint(model: L.LightningModule, ckpt_path: str, dm, setting: bool | float) -> dict:
    """Logit adjustment of ``ckpt_path`` (Menon et al., 2021), folded into its last layer's bias so that every reader
    of the file (evaluation, the live app, ONNX export) gets it: logits - tau * log(each class's share of the training
    faces), which lets the rarer classes (disgust above all) win more often. ``setting`` true: tau chosen on the
    validation split (`choose_logit_adjustment`: the best balanced accuracy at no loss of accuracy); a number: that
    tau. Returns what the run reports, and the file keeps as ``logit_adjust``: tau and the training shares it used. A
    file that has it already (a resumed run whose best checkpoint is an earlier one) is left as it is."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if "logit_adjust" in ckpt:
        log.info("%s: its logits were adjusted already (tau %s)", ckpt_path, ckpt["logit_adjust"]["tau"])
        return ckpt["logit_adjust"]
    key = f"net.{model.net.head_linear}.bias"
    if key not in ckpt["state_dict"]:
        raise UserError(f"logit_adjust={setting}: {model.net.head_linear} of this net has no bias to adjust")
    counts = torch.as_tensor(dm.class_counts("train"), dtype=torch.float64).clamp_min(1)
    log_prior = (counts / counts.sum()).log()
    if setting is True:
        model.load_state_dict(ckpt["state_dict"])
        logits, labels = collect_logits(model, dm.val_dataloader(), model.device)
        tau, scores = choose_logit_adjustment(logits, labels, log_prior)
        (acc0, bal0), (acc, bal) = scores[0.0], scores[tau]
        log.info("logit adjustment tau %.1f: validation accuracy %.4f -> %.4f, balanced %.4f -> %.4f", tau, acc0, acc,
                 bal0, bal)  # fmt: skip
    else:
        tau = float(setting)
    bias = ckpt["state_dict"][key]
    ckpt["state_dict"][key] = (bias.double() - tau * log_prior).to(bias.dtype)
    ckpt["logit_adjust"] = {"tau": tau, "train_class_share": [round(float(p), 6) for p in log_prior.exp()]}
    atomic_write(ckpt_path, lambda tmp: torch.save(ckpt, tmp))
    return ckpt["logit_adjust"]


def run(cfg: DictConfig) -> dict:
    """Fit, calibrate and test one configuration. Returns the best checkpoint's path (``best_checkpoint``), the
    metric the checkpoint callback selected it on (``monitor``, e.g. ``val/acc``) and its validation score under that
    name, the fitted ``temperature`` and the test metrics (what ``test_metrics.json`` holds); empty when no checkpoint
    was saved, and in the processes other than the first of a multi-process run."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("finetune"):
        if cfg.get("init_from"):
            raise UserError(
                f"init_from={cfg.init_from} and +finetune=webcam both choose the starting weights: a fine-tune starts "
                "from finetune.ckpt (null: the bundled model). Drop init_from."
            )
        configure_finetune(cfg)
    elif cfg.get("init_from"):  # a bad file is refused by name now, not after FER2013 is parsed (about a minute)
        read_card(resolve_checkpoint(cfg.init_from, "init_from")[0])
    dm = datamodule_from_config(cfg.data)
    model = instantiate(cfg.model, _recursive_=False)
    if cfg.get("finetune"):
        model = prepare_finetune(model, cfg)
    elif cfg.get("init_from"):
        model = start_from(model, cfg.init_from, "init_from", "by_name")
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger (logger=none)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    limits = dm.batch_limits(cfg.trainer)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **limits)
    for lg in loggers:
        lg.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})

    check_resume(cfg.get("ckpt_path"), model)
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    if trainer.world_size > 1:
        # Calibration and testing run once, in process 0, on one device: end the process group first, or metric
        # syncs would wait for processes that have finished.
        trainer.strategy.barrier()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if not trainer.is_global_zero:
        return {}
    selector = trainer.checkpoint_callback
    best = selector.best_model_path if selector else ""
    if not best:
        log.warning("no checkpoint was saved (fast_dev_run or checkpointing off): nothing to calibrate or test")
        return {}

    results: dict = {"best_checkpoint": str(Path(best).resolve())}
    if selector.monitor and selector.best_model_score is not None:
        results |= {"monitor": selector.monitor, selector.monitor: float(selector.best_model_score)}
    if cfg.get("logit_adjust"):
        results["logit_adjust"] = adjust_checkpoint(model, best, dm, cfg.logit_adjust)
    if cfg.get("calibrate", True):
        results["temperature"] = calibrate_checkpoint(model, best, dm)
    if cfg.get("test", True):
        tester = trainer
        if trainer.world_size > 1:
            accelerator = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
            tester = L.Trainer(accelerator=accelerator, devices=1, logger=loggers or False, enable_checkpointing=False)
        # The model already holds the best weights and the fitted temperature: test it as it is.
        results = report_test(tester, model, dm, output_dir, {"checkpoint": results["best_checkpoint"], **results})
    log_results(loggers, results)
    print(f"Best checkpoint: {results['best_checkpoint']}")
    return results
