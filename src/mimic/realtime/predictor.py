"""Checkpoint -> model + preprocessing -> class probabilities for all the faces of a frame in one batch.

The checkpoint alone describes everything (DESIGN.md contracts 1 and 2): `mimic.models.checkpoint.load_net` reads it
(``weights_only``, every field checked, the net built only by one of mimic's builders), faces go through
`mimic.preprocessing.crop_face` + `preprocess`, and the probabilities come from `mimic.models.inference`, the same
functions `EmotionClassifier` uses: with the checkpoint's flip TTA and calibration temperature unless overridden.

The bare net is used rather than the LightningModule so that starting the app does not import Lightning.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from mimic.models import inference
from mimic.models.checkpoint import load_net
from mimic.preprocessing import crop_face, preprocess

if TYPE_CHECKING:
    from mimic.faces import Detection

log = logging.getLogger(__name__)


class Predictor:
    """Class probabilities for face crops, from a mimic checkpoint.

    ``threads``: torch intra-op threads (None leaves PyTorch's default). ``tta_flip``: average the logits of each
    face and its mirror image (twice the classify cost); None follows the checkpoint, True/False overrides it.
    ``calibrated``: apply the checkpoint's temperature.
    """

    def __init__(
        self, ckpt: str | os.PathLike, threads: int | None = None, tta_flip: bool | None = None, calibrated: bool = True
    ) -> None:
        self.threads = int(threads) if threads else None
        self._threads_set_in: int | None = None
        self.net, self.card = load_net(ckpt)
        self.class_names, self.spec = self.card.class_names, self.card.preprocess
        self.temperature = self.card.temperature if calibrated else 1.0
        self.tta_flip = self.card.tta_flip if tta_flip is None else bool(tta_flip)
        if tta_flip is not None:
            log.info("flip TTA %s by predictor.tta_flip (the checkpoint says %s)", self.tta_flip, self.card.tta_flip)
        # the first forward pass sets up kernels: pay for it now, not on the first face
        self.predict_crops([np.zeros((self.spec.size, self.spec.size), np.uint8)])

    @torch.inference_mode()
    def predict_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Face crops (uint8 BGR or gray, any size) -> probabilities, float32 (N, num_classes)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        if self.threads and self._threads_set_in != threading.get_ident():
            torch.set_num_threads(self.threads)  # a per-thread setting: apply it in the thread that infers
            self._threads_set_in = threading.get_ident()
        x = preprocess(list(crops), self.spec)
        logits = inference.logits(self.net, x, self.tta_flip, self.card.channels_last)
        return inference.probabilities(logits, self.temperature).numpy()

    def predict(self, frame: np.ndarray, faces: Sequence[Detection | Sequence[int]]) -> np.ndarray:
        """Probabilities for every face of ``frame`` (a `Detection`, whose landmarks align it, or an (x, y, w, h)
        box), framed as the checkpoint's spec says, in one batch: float32 (N, num_classes)."""
        return self.predict_crops([crop_face(frame, face, self.spec) for face in faces])
