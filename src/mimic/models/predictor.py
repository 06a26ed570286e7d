"""Model file -> model + preprocessing -> class probabilities for all the faces of a frame in one batch.

The model file alone describes everything (DESIGN.md contracts 1 and 2). A checkpoint is read by
`mimic.models.checkpoint.load_net` (``weights_only``, every field checked, the net built only by one of mimic's
builders) and run on PyTorch through `mimic.models.inference`, the functions `EmotionClassifier` uses; an exported
ONNX file (`mimic.models.onnx_model`) runs on onnxruntime, its graph being those same functions traced, and then
torch is never imported. ``backend="onnx"`` runs a checkpoint on onnxruntime too, through an export cached by the
checkpoint's hash (once cached, torch is not imported either); ``"auto"`` (the live app's default) does so when
onnxruntime is installed. Faces go through `mimic.preprocessing.crop_face` + `preprocess_array` either way.

The bare net is used rather than the LightningModule so that starting the app does not import Lightning.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mimic.errors import UserError
from mimic.models.bundled import resolve_ckpt
from mimic.models.card import ModelCard
from mimic.models.ckpt_reader import read_checkpoint_card
from mimic.models.onnx_model import OnnxModel, check_baked_settings, is_onnx, read_onnx_card
from mimic.preprocessing import crop_face, preprocess_array

if TYPE_CHECKING:
    from mimic.faces import Detection

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")


class Predictor:
    """Class probabilities for face crops, from a mimic checkpoint or an exported ONNX file.

    ``threads``: intra-op threads of torch or onnxruntime (None leaves the library's default). ``tta_flip``: average
    the logits of each face and its mirror image (twice the classify cost); None follows the model file, True/False
    overrides it. ``calibrated``: apply the file's temperature. ``backend``: what runs a checkpoint, "torch", "onnx"
    or "auto" (onnx when onnxruntime is installed, else torch; torch too when the export fails, with a warning). An
    ONNX file always runs on onnxruntime; its graph holds its flip TTA and temperature, so overriding them is an
    error.
    """

    def __init__(
        self,
        ckpt: str | os.PathLike,
        threads: int | None = None,
        tta_flip: bool | None = None,
        calibrated: bool = True,
        backend: str = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise UserError(f"predictor.backend={backend!r}: expected one of {', '.join(BACKENDS)}")
        self.threads = int(threads) if threads else None
        if is_onnx(ckpt):
            model = OnnxModel(ckpt, self.threads)
            check_baked_settings(model.card, ckpt, tta_flip, calibrated, prefix="predictor.")
        else:
            onnx = (_auto_backend() if backend == "auto" else backend) == "onnx"
            model = _exported(ckpt, self.threads, tta_flip, calibrated, backend == "auto") if onnx else None
        if model is None:
            self.backend, (self.card, self._run) = "torch", _torch_runner(ckpt, self.threads, tta_flip, calibrated)
        else:
            self.backend, self.card, self._run = "onnx", model.card, model
        self.class_names, self.spec = self.card.class_names, self.card.preprocess
        self.tta_flip = self.card.tta_flip if tta_flip is None else bool(tta_flip)
        if tta_flip is not None:
            # a checkpoint's cached export has the setting baked in: only PyTorch still holds the file's own card
            said = f" (the checkpoint says {self.card.tta_flip})" if self.backend == "torch" else ""
            log.info("flip TTA %s by predictor.tta_flip%s", self.tta_flip, said)
        # the first forward pass sets up kernels: pay for it now, not on the first face
        self.predict_crops([np.zeros((self.spec.size, self.spec.size), np.uint8)])

    def predict_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Face crops (uint8 BGR or gray, any size) -> probabilities, float32 (N, num_classes)."""
        return self.run(preprocess_array(list(crops), self.spec))

    def inputs(self, frame: np.ndarray, faces: Sequence[Detection | Sequence[int]]) -> np.ndarray:
        """The net's input for every face of ``frame`` (a `Detection`, whose landmarks align it, or an (x, y, w, h)
        box), framed as the model file's spec says: float32 (N, C, H, W). Reads only the spec, so a reader thread
        can make the next frame's while `run` classifies this one's."""
        return preprocess_array([crop_face(frame, face, self.spec) for face in faces], self.spec)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """`inputs`' faces in one batch -> probabilities, float32 (N, num_classes)."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self._run(inputs)

    def predict(self, frame: np.ndarray, faces: Sequence[Detection | Sequence[int]]) -> np.ndarray:
        """Probabilities for every face of ``frame`` in one batch (`inputs`, then `run`): float32 (N, num_classes)."""
        return self.run(self.inputs(frame, faces))


@functools.cache
def _auto_backend() -> str:
    """``backend="auto"``: onnx when onnxruntime imports, else torch; said once per process."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("predictor.backend=auto: onnxruntime is not installed, so PyTorch runs the model")
        return "torch"
    log.info("predictor.backend=auto: onnxruntime runs the model (predictor.backend=torch for PyTorch)")
    return "onnx"


def _exported(
    ckpt: str | os.PathLike, threads: int | None, tta_flip: bool | None, calibrated: bool, fall_back: bool
) -> OnnxModel | None:
    """The checkpoint's cached export on onnxruntime; with ``fall_back``, None (PyTorch runs it) when exporting fails
    for any reason but a bad checkpoint."""
    from mimic.models.onnx_export import export_cached  # start-up: torch only when a checkpoint needs exporting

    try:
        return OnnxModel(export_cached(ckpt, tta_flip, calibrated), threads)
    except Exception as e:
        if isinstance(e, UserError) or not fall_back:
            raise
        log.warning(
            "predictor.backend=auto: exporting %s for onnxruntime failed (%s: %s); PyTorch runs it",
            ckpt,
            type(e).__name__,
            e,
        )
        return None


def _torch_runner(
    ckpt: str | os.PathLike, threads: int | None, tta_flip: bool | None, calibrated: bool
) -> tuple[ModelCard, Callable[[np.ndarray], np.ndarray]]:
    """A checkpoint's card and its net on PyTorch as a function of preprocessed faces."""
    import torch  # start-up: an ONNX model runs without torch

    from mimic.models import inference  # start-up: imports torch
    from mimic.models.checkpoint import load_net  # start-up: imports torch

    net, card = load_net(ckpt)
    flip = card.tta_flip if tta_flip is None else bool(tta_flip)
    temperature = card.temperature if calibrated else 1.0
    threads_set_in: list[int] = []

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        if threads and threads_set_in != [threading.get_ident()]:
            torch.set_num_threads(threads)  # a per-thread setting: apply it in the thread that infers
            threads_set_in[:] = [threading.get_ident()]
        logits = inference.logits(net, torch.from_numpy(x), flip, card.channels_last)
        return inference.probabilities(logits, temperature).numpy()

    return card, run


def open_model(
    path: str | os.PathLike | None = None,
    threads: int | None = None,
    tta_flip: bool | None = None,
    calibrated: bool = True,
    backend: str = "auto",
) -> Predictor:
    """The one opener of a model file for inference: a checkpoint or an exported ONNX file (None or ``"bundled"``:
    the model bundled with mimic), as a `Predictor` (see its settings)."""
    return Predictor(resolve_ckpt(path), threads, tta_flip, calibrated, backend)


def read_model_card(path: str | os.PathLike) -> ModelCard:
    """The checked card of a checkpoint or an exported ONNX file, without running it and without importing torch (a
    checkpoint's is the card `mimic.models.checkpoint.read_card` gives, or its error)."""
    return read_onnx_card(path) if is_onnx(path) else read_checkpoint_card(path)
