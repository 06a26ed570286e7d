"""A checkpoint's card, read and checked without torch (DESIGN.md contracts 2 and 3), and the checks every reader of a
checkpoint runs.

A ``.ckpt`` is torch's zip: ``<name>/data.pkl``, the pickled checkpoint dict, and ``<name>/data/<key>``, the raw
numbers of each tensor storage. `read_checkpoint_card` unpickles data.pkl with `_Unpickler`, whose only globals are
what a checkpoint holds (``OrderedDict``, torch's tensor rebuilders and storage types), each resolved to a stand-in
here: a tensor becomes a `Tensor`, whose numbers are read from the zip as numpy when first needed, so the optimizer
state a checkpoint also holds is never read. Any other global is refused before anything runs, as
``torch.load(weights_only=True)`` refuses it. So listing checkpoints (the web page's model picker) never imports
torch; loading one's weights does (`mimic.models.checkpoint`).

`checked` holds a loaded checkpoint to mimic's rules, whichever reader loaded it: `mimic.models.checkpoint.read_card`
runs it on ``torch.load``'s dict too, so both readers give one card, and one error, per file.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from mimic.models.card import CheckpointError, ModelCard, check_finite, net_config, plain

OPTIMIZER_TARGETS = ("torch.optim.", "mimic.models.classifier.")
REQUIRED_HPARAMS = ("net", "class_names", "preprocess", "mimic_version")
ADVICE = "Use a .ckpt written by `python train.py`."
PICKLED_CODE = "not a PyTorch file, or one holding pickled Python objects, which could run code and are never loaded"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a file torch.save wrote in its pre-1.6 format
STORAGES = {  # torch's storage types -> the numpy type of their bytes ("bfloat16": 16-bit words widened to float32)
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
}


def existing(path: str | os.PathLike) -> Path:
    """``path`` (``~`` expanded) when it names a file a checkpoint reader may open; `CheckpointError` saying what to
    pass instead when it is missing or an exported ONNX model."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Pass the .ckpt file a training run printed on its last line "
            f"(they live under outputs/<task>/runs/<date>_<time>/checkpoints/)."
        )
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{path} is an exported ONNX model: it holds no training state. Pass the .ckpt it was exported from."
        )
    return path


def _why(error: Exception) -> str:
    """What a reader's ``error`` says of a file it could not load, for `unreadable`."""
    if isinstance(error, pickle.UnpicklingError):  # torch's own text suggests weights_only=False: not advice to pass on
        return PICKLED_CODE
    return str(error).strip().split(". ")[0] or f"{type(error).__name__}: the file is empty or cut short"


def unreadable(path: Path, why: Exception | str) -> CheckpointError:
    """The error for a file that is not a checkpoint a reader can load without running pickled code; ``why``: what
    the reader raised (torch.load raises many kinds on junk: UnpicklingError, RuntimeError, EOFError, ...), or says."""
    why = _why(why) if isinstance(why, Exception) else why
    return CheckpointError(
        f"{path} is not a mimic checkpoint: it could not be read as a PyTorch checkpoint without running pickled "
        f"code ({why}). {ADVICE}"
    )


class _StorageType:
    """What a global ``torch.<type>Storage`` stands for here: the numpy type of a storage's bytes."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class _Storage:
    """A tensor storage of the archive, its numbers read on first use as a flat numpy array."""

    __slots__ = ("archive", "entry", "kind", "numel", "big_endian", "_values")

    def __init__(self, archive: zipfile.ZipFile, entry: str, kind: _StorageType, numel: int, big: bool) -> None:
        self.archive, self.entry, self.kind, self.numel, self.big_endian = archive, entry, kind, numel, big
        self._values: np.ndarray | None = None

    def values(self) -> np.ndarray:
        """The storage's numbers, read-only; a `ValueError` when the archive holds more or fewer bytes."""
        if self._values is None:
            raw = np.dtype("u2" if self.kind.dtype == "bfloat16" else self.kind.dtype)
            raw = raw.newbyteorder(">" if self.big_endian else "<")
            size, stored = self.numel * raw.itemsize, self.archive.getinfo(self.entry).file_size
            if stored != size:
                raise ValueError(f"{self.entry} holds {stored} bytes, not the {size} of its {self.numel} numbers")
            values = np.frombuffer(self.archive.read(self.entry), raw)
            if self.kind.dtype == "bfloat16":  # numpy has no bfloat16: its bits are the top half of a float32's
                values = (values.astype(np.uint32) << 16).view(np.float32)
            self._values = values
        return self._values


class Tensor:
    """A tensor of a checkpoint read without torch: ``shape``, and its numbers as numpy (`numpy`) read from the
    archive when first asked for. Named as torch's class, so that a message naming its type reads the same."""

    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def numpy(self) -> np.ndarray:
        """The numbers, read-only (bfloat16 as float32)."""
        flat = self.storage.values()
        if math.prod(self.shape) == 0:
            return np.empty(self.shape, flat.dtype)
        strides = [s * flat.itemsize for s in self.stride]  # within the storage: `_rebuild_tensor` checked
        return np.lib.stride_tricks.as_strided(flat[self.offset :], self.shape, strides, writeable=False)


def _sizes(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(n, int) and n >= 0 for n in value)


def _rebuild_tensor(storage: Any, offset: Any, shape: Any, stride: Any, *_: Any) -> Tensor:
    """``torch._utils._rebuild_tensor_v2``: a `Tensor` of ``storage``, once its shape is known to lie inside it."""
    if not isinstance(storage, _Storage) or not isinstance(offset, int) or offset < 0:
        raise ValueError("a tensor without a storage of torch's")
    if not _sizes(shape) or not _sizes(stride) or len(shape) != len(stride):
        raise ValueError(f"a tensor of shape {shape!r} and strides {stride!r}")
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
    if math.prod(shape) and last >= storage.numel:
        raise ValueError(f"a tensor reaches past its storage {storage.entry}")
    return Tensor(storage, offset, shape, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Tensor:
    """``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    if not isinstance(data, Tensor):
        raise ValueError("a parameter without a tensor")
    return data


GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGES.items()},
}
"""Every global a checkpoint's pickle may name, and what it stands for here; nothing else is looked up."""


class _Unpickler(pickle.Unpickler):
    """An unpickler of a checkpoint's data.pkl that imports and calls nothing but `GLOBALS`; its storages are
    ``<prefix>/data/<key>`` of ``archive`` (None: a file that is not torch's zip, which has none)."""

    def __init__(self, file: IO[bytes], archive: zipfile.ZipFile | None = None, prefix: str = "") -> None:
        super().__init__(file)
        self.archive, self.prefix, self.storages = archive, prefix, {}
        self.names = set(archive.namelist()) if archive is not None else set()
        big = f"{prefix}/byteorder" in self.names and archive.read(f"{prefix}/byteorder").strip() == b"big"
        self.big_endian = bool(big)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is refused")
        return GLOBALS[module, name]

    def persistent_load(self, pid: Any) -> _Storage:
        """``("storage", type, key, location, numel)``: the storage ``<prefix>/data/<key>``, one per key."""
        ok = isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
        if not ok or self.archive is None or not isinstance(pid[2], str) or not isinstance(pid[4], int):
            raise pickle.UnpicklingError(f"{pid!r} is not a storage of torch's")
        key = pid[2]
        if key not in self.storages:
            entry = f"{self.prefix}/data/{key}"
            if entry not in self.names:
                raise ValueError(f"the storage {entry} is missing")
            self.storages[key] = _Storage(self.archive, entry, pid[1], pid[4], self.big_endian)
        return self.storages[key]


def _not_zip(path: Path) -> str:
    """Why a file that is not a zip archive is no checkpoint: what torch would say of it, found as safely."""
    with open(path, "rb") as f:
        head = f.read(4)
        if not head:
            return _why(EOFError())  # as torch says it
        if head == b"PK\x03\x04":
            return "the zip archive is cut short or damaged"
        f.seek(0)
        try:
            first = _Unpickler(f).load()
        except Exception as e:  # junk: what the unpickler says (a refused global, a bad opcode, the end of the file)
            return _why(e)
    if first == LEGACY_MAGIC:
        return "it is in PyTorch's format of before 1.6, which only torch itself reads; save it again with torch.save"
    return "Invalid magic number; corrupt file?"


def _load(archive: zipfile.ZipFile) -> Any:
    """The checkpoint dict of torch's zip ``archive``, its tensors `Tensor`s (readable while the archive is open)."""
    names = archive.namelist()
    prefix = names[0].split("/", 1)[0] if names else ""
    if f"{prefix}/data.pkl" not in names:
        raise ValueError("a zip archive without the data.pkl of a PyTorch file")
    with archive.open(f"{prefix}/data.pkl") as f:
        return _Unpickler(f, archive, prefix).load()


def _numbers(path: Path) -> Callable[[Any], np.ndarray]:
    """`Tensor.numpy` for `checked`, a damaged storage of ``path`` the error of an unreadable file."""

    def numbers(tensor: Tensor) -> np.ndarray:
        try:
            return tensor.numpy()
        except Exception as e:  # a storage cut short or damaged (zipfile raises BadZipFile, zlib.error, ...)
            raise unreadable(path, e) from None

    return numbers


def read_checkpoint_card(path: str | os.PathLike) -> ModelCard:
    """The checked card of the checkpoint ``path``, read without torch and without running pickled code: the card
    `mimic.models.checkpoint.read_card` gives, or the `CheckpointError` it raises."""
    path = existing(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise unreadable(path, _not_zip(path)) from None
    except Exception as e:  # an unreadable file (OSError), a zip archive of a format zipfile lacks
        raise unreadable(path, e) from None
    with archive:
        try:
            ckpt = _load(archive)
        except Exception as e:  # a refused global, a damaged pickle or zip entry
            raise unreadable(path, e) from None
        return checked(ckpt, path, Tensor, _numbers(path))


def _optimizer_config(cfg: Any, where: str) -> None:
    """A stored optimizer / scheduler config is never built on load; a file that names other code there is refused."""
    if cfg is None:
        return
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"{where} must be a mapping, got {type(cfg).__name__}")
    args = dict(cfg)
    target, partial = args.pop("_target_", None), args.pop("_partial_", False)
    if target is not None and not (isinstance(target, str) and target.startswith(OPTIMIZER_TARGETS)):
        raise CheckpointError(
            f"{where}._target_ = {target!r}: mimic's training stores a torch.optim optimizer or scheduler (or "
            f"mimic's own schedule) there; a file naming other code is refused"
        )
    if not isinstance(partial, bool):
        raise CheckpointError(f"{where}._partial_ must be true or false, got {partial!r}")
    plain(args, where)


def _card(ckpt: Mapping[str, Any], path: Path, numbers: Callable[[Any], np.ndarray]) -> ModelCard:
    """Check a loaded checkpoint dict's hyper-parameters field by field; `CheckpointError` naming the field."""
    hp, where = ckpt["hyper_parameters"], f"{path}: hyper_parameters"
    net = net_config(hp["net"], f"{where}.net", CheckpointError)
    net.pop("weights", None)
    for name in ("optimizer", "scheduler"):
        _optimizer_config(hp.get(name), f"{where}.{name}")
    t = ckpt["state_dict"].get("temperature")
    t = np.ones(()) if t is None else numbers(t)
    where_t = f"{path}: state_dict.temperature"
    if t.size != 1 or t.dtype.kind not in "biuf":
        raise CheckpointError(f"{where_t} must be one positive number, got {t.tolist()}")
    rest = {k: v for k, v in hp.items() if k not in ("net", "optimizer", "scheduler")}
    return ModelCard.check(net, rest, float(t.reshape(())), where, where_t)


def checked(ckpt: Any, path: Path, tensor: type, numbers: Callable[[Any], np.ndarray]) -> ModelCard:
    """The card of the loaded checkpoint ``ckpt`` of ``path``, every field checked (a `CheckpointError` naming the
    first that fails): a dict with mimic's hyper-parameters and a state_dict of tensors (of type ``tensor``), a net of
    mimic's builders, plain data without Hydra keys elsewhere, one positive temperature and finite float weights.
    ``numbers``: a tensor's numbers as numpy."""
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("hyper_parameters"), dict):
        bare = isinstance(ckpt, dict) and ckpt and all(isinstance(v, tensor) for v in ckpt.values())
        what = "it is a plain state_dict" if bare else "it holds no hyper_parameters"
        raise CheckpointError(f"{path} is not a mimic checkpoint: {what}, nothing says how to build its net. {ADVICE}")
    missing = [k for k in REQUIRED_HPARAMS if k not in ckpt["hyper_parameters"]]
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, tensor) for k, v in state.items()):
        missing.append("state_dict")
    if missing:
        raise CheckpointError(
            f"{path} is not a mimic checkpoint: it lacks {', '.join(missing)} in its hyper-parameters "
            f"(a checkpoint of another model?). {ADVICE}"
        )
    card = _card(ckpt, path, numbers)
    for name, values in state.items():
        check_finite(numbers(values), f"{path}: state_dict.{name}")
    return card
