"""Checkpoint -> model + preprocessing -> class probabilities for all the faces of a frame in one batch.

The checkpoint alone describes everything (DESIGN.md contracts 1 and 2): it is read with
`mimic.models.checkpoint.read_checkpoint` (``weights_only``, `CheckpointError` for files that are not ours), the net is
rebuilt from its ``net`` config (builders under ``mimic.models.`` only), faces go through
`mimic.preprocessing.crop_face` + `preprocess`, and the probabilities are those of
`EmotionClassifier.predict_proba`: softmax of the logits divided by the checkpoint's calibration temperature, with
optional flip test-time augmentation (tests/test_realtime_parts.py holds the two equal).

The bare net is used rather than the LightningModule so that starting the app does not import Lightning.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mimic.models.checkpoint import load_net
from mimic.preprocessing import PreprocessSpec, crop_face, preprocess


class Predictor:
    """Class probabilities for face crops, from a mimic checkpoint.

    ``threads``: torch intra-op threads (None leaves PyTorch's default). ``tta_flip``: average the logits of each
    face and its mirror image (twice the classify cost). ``calibrated``: apply the checkpoint's temperature.
    """

    def __init__(
        self,
        ckpt: str | os.PathLike,
        threads: int | None = None,
        tta_flip: bool = False,
        calibrated: bool = True,
        warmup: bool = True,
    ) -> None:
        self.threads = int(threads) if threads else None
        self._threads_set_in: int | None = None
        self.net, hp, temperature = load_net(ckpt)
        self.class_names: list[str] = list(hp["class_names"])
        self.spec = PreprocessSpec.from_dict(hp["preprocess"])
        self.temperature = temperature if calibrated else 1.0
        self.tta_flip = tta_flip
        self.channels_last = bool(hp.get("channels_last", True))
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if warmup:  # the first forward pass sets up kernels: pay for it now, not on the first face
            self.predict_crops([np.zeros((self.spec.size, self.spec.size), np.uint8)])

    @torch.inference_mode()
    def predict_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch (N, C, H, W) -> probabilities (N, num_classes)."""
        if self.threads and self._threads_set_in != threading.get_ident():
            torch.set_num_threads(self.threads)  # a per-thread setting: apply it in the thread that infers
            self._threads_set_in = threading.get_ident()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.net(x)
        if self.tta_flip:
            logits = (logits + self.net(torch.flip(x, dims=[3]))) / 2
        return F.softmax(logits.float() / self.temperature, dim=1)

    def predict_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Face crops (uint8 BGR or gray, any size) -> probabilities, float32 (N, num_classes)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self.predict_tensor(preprocess(list(crops), self.spec)).numpy()

    def predict(self, frame: np.ndarray, boxes: Sequence[Sequence[int]]) -> np.ndarray:
        """Probabilities for every (x, y, w, h) face box of ``frame``, in one batch: float32 (N, num_classes)."""
        return self.predict_crops([crop_face(frame, box, self.spec) for box in boxes])
