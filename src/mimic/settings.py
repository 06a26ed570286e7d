"""The settings users set on the command line, one table per command (train, evaluate, realtime) giving each its type
and range, checked against the composed config before anything heavy is imported.

A wrong value ends in one short message that names the setting, what it expects and an example
(``data.batch_size=abc: expected a whole number of at least 1 (e.g. data.batch_size=64)``) instead of a traceback from
deep inside PyTorch. Keys a config lacks are skipped (a data config without ``batch_size``); unknown keys are Hydra's
business. Values are checked as Hydra parsed them: ``true``/``false`` are booleans, ``maybe`` is a string. This module
imports only omegaconf and numpy (through `mimic.labels`), so the realtime app's start-up stays light.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mimic.errors import UserError
from mimic.labels import CLASS_NAME, CLASS_NAME_RULE


def show(value: Any) -> str:
    """``value`` as it would be typed on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
    return str(value) if value != "" else "''"


@dataclass(frozen=True)
class Kind:
    """What a setting accepts: ``expected`` says it in words, ``accepts`` tests a value as Hydra parsed it."""

    expected: str
    accepts: Callable[[Any], bool]

    def __or__(self, other: Kind) -> Kind:
        return Kind(f"{self.expected} or {other.expected}", lambda v: self.accepts(v) or other.accepts(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def whole(low: int) -> Kind:
    return Kind(f"a whole number of at least {low}", lambda v: _is_number(v) and isinstance(v, int) and v >= low)


def number(interval: str) -> Kind:
    """A finite number in ``interval``, written as in mathematics: ``"(0, 1]"``, ``"[0, inf)"``."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    closed_low, closed_high = interval[0] == "[", interval[-1] == "]"

    def accepts(v: Any) -> bool:
        return (
            _is_number(v)
            and (v >= low if closed_low else v > low)
            and (high == math.inf or (v <= high if closed_high else v < high))
        )

    if high == math.inf:
        return Kind(f"a number {'of at least' if closed_low else 'above'} {low:g}", accepts)
    return Kind(f"a number in {interval}", accepts)


def one_of(*choices: Any) -> Kind:
    return Kind(
        f"one of {', '.join(show(c) for c in choices)}", lambda v: any(v == c and type(v) is type(c) for c in choices)
    )


def text(what: str) -> Kind:
    return Kind(what, lambda v: isinstance(v, str) and v.strip() != "")


def list_of(item: Kind, what: str, at_least: int = 0, at_most: float = math.inf) -> Kind:
    return Kind(what, lambda v: isinstance(v, list) and at_least <= len(v) <= at_most and all(map(item.accepts, v)))


BOOL = Kind("true or false", lambda v: isinstance(v, bool))
NULL = Kind("null", lambda v: v is None)
PATH = text("a path")
CLASS = Kind("a class name", lambda v: isinstance(v, str) and CLASS_NAME.fullmatch(v) is not None)
CLASSES = f"class names ({CLASS_NAME_RULE})"
FRACTION = number("[0, 1)")
BATCHES = whole(0) | number("[0, 1]")  # a number of batches, or a fraction of them (Lightning's limit_*_batches)

# fmt: off
PRECISIONS = (  # what Lightning's Trainer(precision=...) takes
    "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "transformer-engine",
    "transformer-engine-float16", "64", "32", "16", "bf16", 64, 32, 16,
)
# fmt: on

# setting: (what it accepts, an example value as typed on the command line)
Table = dict[str, tuple[Kind, str]]

DETECTOR: Table = {
    "model_path": (PATH | NULL, "face_detection_yunet_2023mar.onnx"),
    "cascade": (PATH, "haarcascade_frontalface_alt2.xml"),
    "score_threshold": (number("[0, 1]"), "0.7"),
    "nms_threshold": (number("[0, 1]"), "0.3"),
    "top_k": (whole(1), "50"),
    "max_width": (whole(1) | NULL, "320"),
    "max_side": (whole(64) | NULL, "2048"),
    "second_look": (number("[0, 1]") | NULL, "0.1"),
    "look_size": (whole(16), "200"),
    "look_threshold": (number("[0, 1]"), "0.5"),
    "scale_factor": (number("(1, inf)"), "1.2"),
    "min_neighbors": (whole(0), "4"),
    "min_face": (number("(0, 1]"), "0.15"),
    "max_face": (number("(0, 1]"), "1.0"),
    "equalize": (BOOL, "true"),
    "full_every": (whole(1), "4"),
    "engine": (one_of("auto", "onnxruntime", "opencv"), "opencv"),
    "threads": (whole(0), "2"),
}


def under(prefix: str, table: Table) -> Table:
    return {f"{prefix}.{key}": setting for key, setting in table.items()}


CLASS_FOLDERS: Table = {  # mimic.data.folders.FolderSource: +finetune=webcam, data=folder
    "detect_faces": (BOOL | one_of("auto"), "auto"),
    **under("detector", DETECTOR),
}
SPLIT_FRACTIONS: Table = {"val_fraction": (FRACTION | NULL, "0.2"), "test_fraction": (FRACTION, "0.1")}
FACE_CROPS: Table = {  # a public dataset's source (mimic.data.face_crops): its detector and face cache
    "cache_dir": (PATH | NULL | one_of(False), "false"),
    **under("detector", DETECTOR),
}
PUBLIC: Table = {  # data=rafdb, affectnet, expw, ckplus, ckplus48, jaffe
    **under("data.sources.rafdb", FACE_CROPS),
    "data.sources.rafdb.images": (one_of("auto", "aligned", "original"), "original"),
    **under("data.sources.affectnet", FACE_CROPS),
    "data.sources.affectnet.limit": (whole(1) | NULL, "5000"),
    **under("data.sources.expw", FACE_CROPS),
    "data.sources.expw.fractions": (
        list_of(number("[0, 1]"), "three shares: train, val, test", at_least=3),
        "[0.8,0.1,0.1]",
    ),
    "data.sources.expw.seed": (whole(0), "0"),
    **under("data.sources.ckplus", FACE_CROPS),
    "data.sources.ckplus.peak_frames": (whole(1), "3"),
    "data.sources.ckplus.first_frame_neutral": (BOOL, "true"),
    **under("data.sources.jaffe", FACE_CROPS),
    **{f"data.sources.{name}.seed": (whole(0), "0") for name in ("ckplus", "ckplus48", "jaffe")},
    "data.folds": (whole(3), "10"),
    "data.fold": (whole(0), "0"),
}

RUN: Table = {"seed": (whole(0), "42"), "threads": (whole(1) | NULL, "4")}

DATA: Table = {  # every data config (evaluate reads these too)
    "data.path": (text("a dataset file or folder"), "data/webcam"),
    "data.ferplus_path": (PATH | NULL, "data/ferplus/fer2013new.csv"),
    "data.classes": (list_of(CLASS, f"a list of at least two {CLASSES}", at_least=2), "[happy,sad,neutral]"),
    "data.batch_size": (whole(1), "64"),
    "data.num_workers": (whole(0), "4"),
    "data.val_fraction": (FRACTION, "0.1"),
    "data.test_only": (BOOL, "true"),
    "data.sources.fer2013.ferplus_votes": (number("[0, 1]"), "0.5"),
    "data.teacher.ckpt": (PATH | NULL | list_of(PATH, "a list of model files (an ensemble)", at_least=1), "bundled"),
    "data.teacher.weight": (number("(0, 1]"), "0.5"),
    "data.balance_classes": (BOOL, "true"),
    **under("data.sources.folder", CLASS_FOLDERS),
    **PUBLIC,
}
WEBCAM: Table = under("data.sources.webcam", {**CLASS_FOLDERS, **SPLIT_FRACTIONS})  # +finetune=webcam

TRAINER_BASE: Table = {  # conf/trainer/*.yaml
    "trainer.max_epochs": (whole(1), "10"),
    "trainer.max_steps": (whole(1) | one_of(-1), "1000"),
    "trainer.accelerator": (one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"), "gpu"),
    "trainer.devices": (whole(1) | one_of(-1, "auto") | list_of(whole(0), "a list of device indices", at_least=1), "1"),
    "trainer.precision": (one_of(*PRECISIONS), "16-mixed"),
    "trainer.deterministic": (BOOL | one_of("warn") | NULL, "true"),
    "trainer.log_every_n_steps": (whole(1), "20"),
    "trainer.check_val_every_n_epoch": (whole(1) | NULL, "1"),
    "trainer.gradient_clip_val": (number("[0, inf)") | NULL, "1.0"),
}
TRAINER: Table = {  # and trainer=ddp, debug=...
    **TRAINER_BASE,
    "trainer.num_nodes": (whole(1), "2"),
    "trainer.fast_dev_run": (BOOL | whole(0), "true"),
    "trainer.limit_train_batches": (BATCHES | NULL, "0.1"),
    "trainer.limit_val_batches": (BATCHES | NULL, "0.1"),
    "trainer.limit_test_batches": (BATCHES | NULL, "0.1"),
    "trainer.overfit_batches": (BATCHES, "3"),
    "trainer.detect_anomaly": (BOOL, "true"),
    "trainer.sync_batchnorm": (BOOL, "true"),
}

TRAIN: Table = {
    **RUN,
    **DATA,
    **WEBCAM,
    **TRAINER,
    "ckpt_path": (PATH | NULL, "outputs/train/runs/<time>/checkpoints/last.ckpt"),
    "init_from": (PATH | NULL, "bundled"),
    "calibrate": (BOOL, "false"),
    "logit_adjust": (BOOL | number("[0, inf)"), "true"),
    "test": (BOOL, "false"),
    "model.optimizer.lr": (number("(0, inf)"), "1e-3"),
    "model.optimizer.weight_decay": (number("[0, inf)"), "5e-4"),
    "model.optimizer.momentum": (number("[0, 1]"), "0.9"),
    "model.scheduler.warmup_fraction": (FRACTION, "0.05"),
    "model.scheduler_interval": (one_of("step", "epoch"), "step"),
    "model.label_smoothing": (FRACTION, "0.1"),
    "model.mixup": (number("[0, inf)"), "0.2"),
    "model.sam": (number("[0, inf)"), "0.05"),
    "model.class_weights": (
        NULL | one_of("balanced") | list_of(number("[0, inf)"), "a list of weights, one per class", at_least=1),
        "balanced",
    ),
    "model.tta_flip": (BOOL, "false"),
    "model.channels_last": (BOOL, "false"),
    "model.weights": (text("imagenet or a .pth file") | NULL, "imagenet"),
    "model.net.dropout": (FRACTION, "0.3"),
    "model.net.hidden": (whole(1), "256"),
    "model.net.convs_per_stage": (whole(1), "2"),
    "model.net.separable": (BOOL, "true"),
    "model.net.widths": (list_of(whole(1), "a list of whole numbers of at least 1", at_least=1), "[32,64,128]"),
    "model.preprocess.size": (whole(8), "48"),
    "model.preprocess.crop_margin": (number("[0, inf)"), "0.1"),
    "model.preprocess.framing": (one_of("box", "eyes"), "eyes"),
    "model.preprocess.photometric": (one_of("none", "standardise", "clahe"), "standardise"),
    "finetune.ckpt": (PATH | NULL, "outputs/train/runs/<time>/checkpoints/<best>.ckpt"),
    "finetune.head_init": (one_of("reset", "by_name"), "by_name"),
    "finetune.fer2013": (BOOL | one_of("auto"), "false"),
    "callbacks.early_stopping.patience": (whole(0), "10"),
    "callbacks.model_checkpoint.save_top_k": (whole(0) | one_of(-1), "1"),
    "callbacks.progress_bar.refresh_rate": (whole(0), "20"),
    "callbacks.freeze.lr_factor": (number("(0, inf)"), "0.1"),
    "callbacks.freeze.train_bn": (BOOL, "true"),
}

EVALUATE: Table = {
    **RUN,
    **DATA,
    **TRAINER_BASE,
    "ckpt": (PATH | NULL, "outputs/train/runs/<time>/checkpoints/<best>.ckpt"),
    "split": (one_of("train", "val", "test", "all"), "test"),
    "tta_flip": (BOOL | NULL, "false"),
    "batch_size": (whole(1), "256"),
}


REALTIME: Table = {
    **under("detector", DETECTOR),
    "ckpt": (PATH | NULL, "outputs/train/runs/<time>/checkpoints/<best>.ckpt"),
    "source": (
        Kind(
            "a camera index (0, 1, ...), a video file or a folder of images",
            lambda v: whole(0).accepts(v) or PATH.accepts(v),
        ),
        "clip.mp4",
    ),
    "list_cameras": (BOOL, "true"),
    "display": (BOOL, "false"),
    "record": (PATH | NULL, "out.mp4"),
    "max_frames": (whole(1) | NULL, "300"),
    "pace": (BOOL, "true"),
    "folder_fps": (number("(0, inf)"), "1.0"),
    "threads": (whole(1) | NULL, "1"),
    "cv_threads": (whole(0) | NULL, "2"),
    "faces": (one_of("all", "largest"), "largest"),
    "max_faces": (whole(1), "8"),
    "detect_every": (whole(1), "2"),
    "pipeline": (BOOL, "false"),
    "camera.width": (whole(1), "640"),
    "camera.height": (whole(1), "480"),
    "camera.fps": (number("(0, inf)") | NULL, "30"),
    "camera.backend": (text("an OpenCV capture backend") | NULL, "v4l2"),
    "camera.retries": (whole(0), "5"),
    "camera.retry_wait": (number("[0, inf)"), "0.2"),
    "camera.probe": (whole(1), "10"),
    "predictor.tta_flip": (BOOL | NULL, "true"),
    "predictor.calibrated": (BOOL, "false"),
    "predictor.backend": (one_of("auto", "torch", "onnx"), "onnx"),
    "tracker.iou_threshold": (number("(0, 1]"), "0.3"),
    "tracker.max_missed": (whole(0), "10"),
    "tracker.cut_correlation": (number("[-1, 1]") | NULL, "0.5"),
    "smoothing.enabled": (BOOL, "false"),
    "smoothing.half_life": (number("[0, 10]"), "0.1"),
    "smoothing.margin": (number("[0, 1]"), "0.1"),
    "overlay.window": (text("a window title"), "mimic"),
    "overlay.bars": (BOOL, "false"),
    "overlay.fps": (BOOL, "false"),
    "overlay.headless_draw": (BOOL, "true"),
    "reactions.enabled": (BOOL, "false"),
    "reactions.hold_s": (number("[0, inf)"), "1.0"),
    "reactions.cooldown_s": (number("[0, inf)"), "4.0"),
    "reactions.popups": (BOOL, "false"),
    "reactions.popup_s": (number("[0, inf)"), "1.5"),
    "reactions.popup_position": (NULL | list_of(whole(0), "[x, y] in pixels", at_least=2, at_most=2), "[100,100]"),
    "reactions.sound": (BOOL, "false"),
    "reactions.volume": (number("[0, 1]"), "0.5"),
    "reactions.skip": (list_of(CLASS, f"a list of {CLASSES}"), "[neutral,sad]"),
    "reactions.assets_dir": (PATH | NULL, "my_assets"),
    "log.enabled": (BOOL, "false"),
    "log.path": (PATH | NULL, "faces.csv"),
    "ui.name": (one_of("window", "web"), "web"),
    "ui.host": (text("a host name or IP address"), "0.0.0.0"),
    "ui.port": (Kind("a port number from 1 to 65535", lambda v: whole(1).accepts(v) and v <= 65535), "8080"),
    "ui.token": (Kind("a token", lambda v: text("").accepts(v) or whole(0).accepts(v)) | NULL, "s3cret"),
    "ui.ssl_certfile": (PATH | NULL, "cert.pem"),
    "ui.ssl_keyfile": (PATH | NULL, "key.pem"),
    "ui.max_frame_bytes": (whole(1), "4000000"),
    "ui.max_pixels": (whole(1), "4194304"),
    "ui.max_side": (whole(64), "1280"),
    "ui.max_connections": (whole(1), "16"),
    "ui.max_logs": (whole(1), "100"),
    "ui.jpeg_quality": (Kind("a whole number from 1 to 100", lambda v: whole(1).accepts(v) and v <= 100), "80"),
    "ui.open_browser": (BOOL, "true"),
    "ui.models_dir": (PATH | NULL, "outputs"),
    "ui.personalise.captures": (PATH, "data/webcam"),
    "ui.personalise.fer2013": (PATH, "data/fer2013/fer2013.csv.gz"),
}

ANALYZE: Table = {  # conf/realtime.yaml's analyze block: python analyze.py
    "analyze.inputs": (list_of(PATH, "a list of videos, photos, folders or globs"), "[clip.mp4,photos/]"),
    "analyze.out": (PATH, "results"),
    "analyze.every": (whole(1), "2"),
    "analyze.min_track_s": (number("[0, inf)"), "1.0"),
    "analyze.annotate": (BOOL, "true"),
}
SETTINGS: dict[str, Table] = {"train": TRAIN, "evaluate": EVALUATE, "realtime": {**REALTIME, **ANALYZE}}

_ABSENT, _MISSING = object(), object()


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at dotted ``key``; ``_MISSING`` for ``???``; ``_ABSENT`` when the config lacks the key or
    it does not resolve (that error is OmegaConf's to report)."""
    parent_key, _, leaf = key.rpartition(".")
    try:
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig):
            return _ABSENT
        if OmegaConf.is_missing(parent, leaf):
            return _MISSING
        if leaf not in parent:
            return _ABSENT
        value = parent[leaf]
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value
    except OmegaConfBaseException:
        return _ABSENT


def _wrong(table: Table, value_of: Callable[[str], Any]) -> list[str]:
    """One line for every setting of ``table`` whose value (``value_of(key)``) is of the wrong type or range."""
    found = []
    for key, (kind, example) in table.items():
        value = value_of(key)
        if value is _ABSENT or (value is not _MISSING and kind.accepts(value)):
            continue
        what = " is required:" if value is _MISSING else f"{show(value)}: expected"
        found.append(f"{key}={what} {kind.expected} (e.g. {key}={example})")
    return found


def check_settings(cfg: DictConfig, command: str) -> None:
    """Raise a `UserError` naming every setting of ``command`` (train, evaluate, realtime) that ``cfg`` has of the
    wrong type or range, one line each."""
    found = _wrong(SETTINGS[command], lambda key: _value(cfg, key))
    if found:
        raise UserError("\n".join(found))


def check_detector(settings: Mapping[str, Any]) -> None:
    """The command line's check of ``detector.*`` for a detector config given as a mapping (the Python API,
    `mimic.detectors.load_detector`): one `UserError` naming every wrong setting."""
    values = {k: str(v) if isinstance(v, os.PathLike) else v for k, v in settings.items()}
    found = _wrong(under("detector", DETECTOR), lambda key: values.get(key.removeprefix("detector."), _ABSENT))
    if found:
        raise UserError("\n".join(found))
