"""EmotionDataModule: the one LightningDataModule. It merges any number of sources onto the run's class set by name,
turns every image into the model's input through the one preprocessing path, and augments the training split.

Per split it holds one uint8 array (N, size, size, channels) plus labels, the index of the source each image came
from and each image's id (its file, or "file:line" of a CSV row); batches are ``(x, y, source, index)``, ``index``
pointing into `ids`. Per-source sampling weights keep a few hundred webcam photos from being drowned by 28,709 FER2013
faces. ``test_split`` chooses the split ``test_dataloader`` serves (evaluation of any split), and ``test_only`` makes
every image test data (a folder of class folders evaluated as a whole); neither needs a training split. ``teacher``
distils a trained model into the run: its predictions on the clean training faces become soft training targets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from os import PathLike
from typing import Any

import albumentations as A
import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from mimic.data.base import SPLITS, DataError, Source, SplitData, stratified_split
from mimic.errors import UserError
from mimic.labels import UnknownClassError, canonical, remap, validate_classes
from mimic.preprocessing import PreprocessSpec, image_to_tensor, to_model_image

log = logging.getLogger(__name__)

FOR_SOURCES = ("path", "ferplus_path", "folds", "fold")
"""Keys of a data config that its sources read (``${data.path}``), not the datamodule."""


class FaceDataset(Dataset):
    """uint8 faces already in the model's size; ``transform`` (albumentations) runs per image, normalisation per
    batch in ``collate``. ``targets``: soft training targets (N, classes), returned as a fifth item when given."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, sources: np.ndarray, transform=None, targets=None
    ) -> None:
        self.images, self.labels, self.sources, self.transform = images, labels, sources, transform
        self.targets = targets

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]
        if self.transform is not None:
            img = self.transform(image=img)["image"]
            if img.ndim == 2:
                img = img[:, :, None]
        if self.targets is not None:
            return img, self.labels[i], self.sources[i], i, self.targets[i]
        return img, self.labels[i], self.sources[i], i


def collate(items: list, spec: PreprocessSpec) -> tuple[torch.Tensor, ...]:
    """Stack uint8 images and normalise the whole batch at once (a `functools.partial` of it pickles for workers).
    A batch is (x, labels, sources, index), and the soft targets fifth when the dataset has them."""
    imgs, labels, sources, index, *targets = zip(*items)
    x = image_to_tensor(np.stack(imgs), spec)
    batch = x, torch.as_tensor(np.array(labels)), torch.as_tensor(np.array(sources)), torch.tensor(index)
    return (*batch, torch.as_tensor(np.stack(targets[0]))) if targets else batch


def _to_spec(images: np.ndarray | list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    if isinstance(images, np.ndarray) and spec.channels == 1 and images.shape[1:] == (spec.size, spec.size):
        return images[..., None]
    out = np.empty((len(images), spec.size, spec.size, spec.channels), np.uint8)
    for i, img in enumerate(images):
        out[i] = to_model_image(img, spec)
    return out


class EmotionDataModule(L.LightningDataModule):
    """Merge ``sources`` onto ``classes``, split, augment, batch.

    sources: {name: Source}. classes: the run's class names in index order. augment: albumentations transforms
    applied to training images in the model's size. source_weights: {name: weight}; an epoch then draws each source
    in proportion to its weight (with replacement), instead of in proportion to its size. test_split: the split
    ``test_dataloader`` serves. test_only: every image of every source is test data. require_classes false (and
    test_only): a class no source has is a warning, not an error (a model's classes the data lacks, evaluated).
    balance_classes: an epoch draws every class equally often (with replacement), for a skewed set (AffectNet).
    """

    def __init__(
        self,
        sources: Mapping[str, Source],
        classes: Sequence[str],
        preprocess: Mapping | PreprocessSpec | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: Sequence | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        source_weights: Mapping[str, float] | None = None,
        pin_memory: bool = False,
        test_split: str = "test",
        test_only: bool = False,
        teacher: Mapping[str, Any] | None = None,
        balance_classes: bool = False,
        require_classes: bool = True,
    ) -> None:
        super().__init__()
        if not sources:
            raise DataError("data.sources is empty: name at least one data source (e.g. data=fer2013).")
        self.sources = dict(sources)
        self.classes = validate_classes(classes, where="data.classes", at_least=2)
        self.spec = PreprocessSpec.from_dict(preprocess or {})
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        # albumentations keeps its own RNG, which seed_everything does not reach: seed it for repeatable runs
        self.transform = A.Compose(list(augment), seed=seed) if augment else None
        self.val_fraction, self.seed = val_fraction, seed
        self.source_weights = dict(source_weights or {})
        if not isinstance(balance_classes, bool):
            raise DataError(f"data.balance_classes={balance_classes!r}: true or false.")
        self.balance_classes = balance_classes
        unknown = set(self.source_weights) - set(self.sources)
        if unknown:
            raise DataError(f"data.source_weights names {sorted(unknown)}, but the sources are {list(self.sources)}.")
        if test_split not in SPLITS:
            raise DataError(f"data.test_split={test_split!r}: choose one of {', '.join(SPLITS)}.")
        self.test_split, self.test_only = test_split, bool(test_only)
        self.teacher = _check_teacher(teacher)
        self._check_classes(require_classes and not self.test_only)
        self.data: dict[str, dict[str, np.ndarray]] | None = None

    @property
    def source_names(self) -> list[str]:
        return list(self.sources)

    def _check_classes(self, required: bool) -> None:
        provided = {canonical(c) for s in self.sources.values() for c in s.class_names}
        missing = [c for c in self.classes if c not in provided]
        if missing:
            per_source = "; ".join(f"{n}: {', '.join(s.class_names)}" for n, s in self.sources.items())
            if not required:
                log.warning("no test images of %s (the sources have %s)", missing, per_source)
                return
            raise UnknownClassError(
                f"data.classes: no source provides {missing}. Known classes per source: {per_source}. "
                f"Drop them from data.classes or add a source that has them."
            )

    def setup(self, stage: str | None = None) -> None:
        """Load every source once; fitting needs a training split, testing only the split ``test_dataloader``
        serves."""
        self._loaded()
        if stage == "fit" and self.test_only:
            raise DataError(
                f"data.test_only is set: every image of {self.source_names} is test data, so there is nothing to "
                f"train on. Evaluate with scripts/evaluate.py, or train with a data config that has a training split."
            )
        if stage == "fit" or (stage is None and not self.test_only):
            if "train" not in self.data:
                raise DataError(f"no training images in sources {self.source_names} for classes {self.classes}.")
            counts = self.class_counts("train")
            empty = [c for c, n in zip(self.classes, counts) if n == 0]
            if empty:
                raise DataError(f"data.classes {empty} have no training images in sources {self.source_names}.")
            log.info("train class counts: %s", dict(zip(self.classes, counts.tolist())))
        if stage == "test" and self.test_split not in self.data:
            if self.test_only and self.data:
                raise DataError(f"every image of {self.source_names} is test data (data.test_only): test split=test.")
            raise DataError(
                f"no {self.test_split!r} images in sources {self.source_names} for classes {self.classes}"
                + (f"; the data has the splits {', '.join(sorted(self.data))}." if self.data else ".")
            )

    def _load(self) -> dict[str, dict[str, np.ndarray]]:
        parts: dict[str, list] = {s: [] for s in SPLITS}
        for k, (name, source) in enumerate(self.sources.items()):
            splits = {split: _with_ids(sd, f"{name}:{split}") for split, sd in source.load().items()}
            if self.test_only:
                splits = {"test": _concat(list(splits.values()))} if splits else {}
            elif "val" not in splits and "train" in splits:
                keep, held = stratified_split(splits["train"].labels, self.val_fraction, self.seed)
                splits["train"], splits["val"] = splits["train"].subset(keep), splits["train"].subset(held)
            for split, sd in splits.items():
                if split not in parts:
                    raise DataError(f"source {name!r} returned an unknown split {split!r}; expected {SPLITS}")
                parts[split].append(self._map(name, k, source, split, sd))
        data = {}
        for split, items in parts.items():
            items = [it for it in items if len(it["labels"])]
            if any("targets" in it for it in items):  # soft targets from one source: the others' labels one-hot
                eye = np.eye(len(self.classes), dtype=np.float32)
                items = [it if "targets" in it else {**it, "targets": eye[it["labels"]]} for it in items]
            if items:
                data[split] = {key: np.concatenate([it[key] for it in items]) for key in items[0]}
        if self.teacher and "train" in data:
            data["train"]["targets"] = self.teacher_targets(data["train"])
        if "test" not in data and "val" in data and self.test_split == "test":
            log.warning("no source has a test split; testing on the validation split")
            data["test"] = data["val"]
        return data

    def _map(self, name: str, k: int, source: Source, split: str, sd: SplitData) -> dict[str, np.ndarray]:
        labels = remap(sd.labels, source.class_names, self.classes)
        keep = labels >= 0
        if not keep.all():
            level = logging.WARNING if self.test_only else logging.INFO
            msg = "%s/%s: dropped %d of %d images whose class is not in %s"
            log.log(level, msg, name, split, int((~keep).sum()), len(labels), self.classes)
            sd = sd.subset(np.flatnonzero(keep))
        out = {
            "images": _to_spec(sd.images, self.spec),
            "labels": labels[keep],
            "sources": np.full(int(keep.sum()), k, np.int64),
            "ids": np.array(sd.paths, object),
        }
        if sd.targets is not None and split == "train":
            out["targets"] = _map_targets(sd.targets, out["labels"], source.class_names, self.classes)
        return out

    def teacher_targets(self, train: dict[str, np.ndarray]) -> np.ndarray:
        """Distillation: ``(1 - weight) * target + weight * the teacher's probabilities``, for every training face,
        once, before the first epoch. A teacher (any model file, read by the safe path; its own flip TTA and
        temperature) sees each face as stored, before augmentation, so a dimmed, shrunk or tilted copy learns what it
        read on the clean face; its classes mapped onto the run's by name. Several (``ckpt`` a list) are one ensemble:
        the mean of their readings. ``target`` is the split's soft target, or its label one-hot."""
        # only a run with a teacher needs the inference stack (onnxruntime, the export); the rest start without it
        from mimic.models.bundled import resolve_ckpt
        from mimic.models.predictor import Predictor

        images, labels = train["images"], train["labels"]
        crops = images[..., 0] if images.shape[-1] == 1 else images
        readings = []
        for name in self.teacher["ckpt"]:
            path = resolve_ckpt(name)
            if not path.is_file():
                raise DataError(f"data.teacher.ckpt={name}: no such model file ({path.absolute()}).")
            try:
                teacher = Predictor(path)
            except UserError as e:
                raise DataError(f"data.teacher.ckpt={name}: {e}") from e
            start, batches = time.perf_counter(), [list(crops[i : i + 1024]) for i in range(0, len(crops), 1024)]
            probs = np.concatenate([teacher.predict_crops(batch) for batch in batches])
            log.info("teacher %s: read %d training faces in %.0f s", path, len(crops), time.perf_counter() - start)
            readings.append(_map_targets(probs, labels, teacher.class_names, self.classes))
        weight = float(self.teacher["weight"])
        hard = train.get("targets", np.eye(len(self.classes), dtype=np.float32)[labels])
        return ((1 - weight) * hard + weight * np.mean(readings, axis=0)).astype(np.float32)

    def batch_limits(self, trainer: Mapping[str, Any]) -> dict[str, int]:
        """The ``trainer.limit_<split>_batches`` fractions that round to no batch of this data, as one batch each
        (Lightning stops at such a fraction with an error; ``debug=limit`` on a small dataset); others stay as set."""
        out = {}
        for split in ("train", "val", "test"):
            key, fraction = f"limit_{split}_batches", trainer.get(f"limit_{split}_batches")
            name = self.test_split if split == "test" else split
            if not (isinstance(fraction, float) and 0 < fraction < 1) or name not in self._loaded():
                continue
            n = len(self._loader(name, train=split == "train"))
            if int(n * fraction) == 0:
                log.info("trainer.%s=%s of %d batches rounds to no batch: using 1 batch", key, fraction, n)
                out[key] = 1
        return out

    def class_counts(self, split: str = "train") -> np.ndarray:
        data = self._loaded()
        labels = data[split]["labels"] if split in data else np.empty(0, np.int64)
        return np.bincount(labels, minlength=len(self.classes))

    def ids(self, split: str) -> np.ndarray:
        """Every image's id in ``split``, in dataset order (a batch's ``index`` points into it)."""
        return self._loaded()[split]["ids"]

    def _loaded(self) -> dict[str, dict[str, np.ndarray]]:
        if self.data is None:
            self.data = self._load()
        return self.data

    def dataset(self, split: str, augment: bool = False) -> FaceDataset:
        if split not in self._loaded():
            raise DataError(f"no {split!r} split in sources {self.source_names}")
        d = self.data[split]
        return FaceDataset(
            d["images"], d["labels"], d["sources"], self.transform if augment else None, d.get("targets")
        )

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self.dataset(split, augment=train)
        sampler = None
        if train and (self.source_weights or self.balance_classes):
            gen = torch.Generator().manual_seed(self.seed)
            sampler = WeightedRandomSampler(
                torch.as_tensor(self._weights(ds)), len(ds), replacement=True, generator=gen
            )
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(ds) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=partial(collate, spec=self.spec),
        )

    def _weights(self, ds: FaceDataset) -> np.ndarray:
        """Each training image's chance to be drawn: its source's weight (1 without one) shared among the source's
        images, with ``balance_classes`` among its classes first (no source weights: the classes of all the data)."""
        weights = [self.source_weights.get(n, 1.0) for n in self.source_names]
        share = np.array(weights if self.source_weights or not self.balance_classes else [1.0])[:, None]
        sources = ds.sources if self.source_weights or not self.balance_classes else np.zeros_like(ds.sources)
        counts = np.zeros((len(share), len(self.classes)))
        np.add.at(counts, (sources, ds.labels), 1)
        if self.balance_classes:
            per_image = share / np.maximum((counts > 0).sum(1, keepdims=True), 1) / np.maximum(counts, 1)
        else:
            per_image = share / np.maximum(counts.sum(1, keepdims=True), 1) + np.zeros_like(counts)
        return per_image[sources, ds.labels]

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, train=False)


def datamodule_from_config(data: DictConfig, classes: Sequence[str] | None = None) -> EmotionDataModule:
    """The datamodule a data config (conf/data/*.yaml) describes. Its `FOR_SOURCES` keys (``data.path``,
    ``data.folds``...) are where the user sets what its sources read through ``${data.path}``; the datamodule does not
    take them.
    ``classes``: the run's class names when a model file gives them (evaluation), in place of ``data.classes``; they
    go to the datamodule as a Python argument after the config is built, never into the config, where OmegaConf
    would resolve them."""
    if OmegaConf.is_missing(data, "path"):
        raise DataError("data.path is not set: point it at your data, e.g. data.path=/path/to/faces")
    cfg = OmegaConf.to_container(data, resolve=True)
    for key in FOR_SOURCES:
        cfg.pop(key, None)
    if classes is None:
        return instantiate(cfg)
    cfg.pop("classes", None)  # a class the data lacks is n/a in the model's test, not an error
    return instantiate(cfg, _partial_=True)(classes=list(classes), require_classes=False)


def _check_teacher(teacher: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``data.teacher`` checked: None when off (no teacher, or ``ckpt`` null); ``ckpt`` as a list of model files."""
    if not teacher or teacher.get("ckpt") is None:
        return None
    unknown = set(teacher) - {"ckpt", "weight"}
    weight = teacher.get("weight", 0.5)
    ckpt = teacher["ckpt"]
    files = [ckpt] if isinstance(ckpt, str | PathLike) else list(ckpt) if isinstance(ckpt, Sequence) else []
    paths = files and all(isinstance(f, str | PathLike) and str(f).strip() for f in files)
    if unknown or not paths or isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1:
        raise DataError(
            f"data.teacher={dict(teacher)}: give ckpt (a model file, bundled, or a list of them: an ensemble) and "
            f"weight, from above 0 to 1 (the teacher's share of each training target), e.g. data.teacher.ckpt=bundled "
            f"data.teacher.weight=0.5, or 'data.teacher.ckpt=[bundled,other.ckpt]'."
        )
    return {"ckpt": [str(f) for f in files], "weight": float(weight)}


def _map_targets(
    targets: np.ndarray, labels: np.ndarray, source_classes: Sequence[str], classes: Sequence[str]
) -> np.ndarray:
    """Soft targets over a source's classes as targets over the run's ``classes`` (by name, ``labels`` already
    mapped): the mass on classes the run lacks is left out and each row renormalised; a row with nothing left (all
    its mass on such classes) is its label one-hot."""
    src = [canonical(n) for n in source_classes]
    out = np.zeros((len(targets), len(classes)), np.float32)
    for j, name in enumerate(classes):
        if canonical(name) in src:
            out[:, j] = targets[:, src.index(canonical(name))]
    total = out.sum(axis=1, keepdims=True)
    onehot = np.eye(len(classes), dtype=np.float32)[labels]
    return np.where(total > 0, out / np.maximum(total, 1e-12), onehot).astype(np.float32)


def _with_ids(sd: SplitData, prefix: str) -> SplitData:
    """``sd`` with an id per image: its file or CSV row where the source gives one, else ``<source>:<split>:<row>``."""
    return sd if sd.paths is not None else replace(sd, paths=[f"{prefix}:{i}" for i in range(len(sd))])


def _concat(parts: list[SplitData]) -> SplitData:
    """The splits of one source pooled into one (``test_only``)."""
    if len(parts) == 1:
        return parts[0]
    arrays = all(isinstance(p.images, np.ndarray) for p in parts) and len({p.images.shape[1:] for p in parts}) == 1
    images = np.concatenate([p.images for p in parts]) if arrays else [im for p in parts for im in p.images]
    return SplitData(images, np.concatenate([p.labels for p in parts]), [x for p in parts for x in p.paths])
