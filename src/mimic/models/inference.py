"""The one inference path: a batch of preprocessed faces -> logits -> calibrated probabilities, with a checkpoint's
settings (flip test-time augmentation, channels-last memory format, the fitted temperature).

`EmotionClassifier` (validation, test, evaluation) and the realtime `Predictor` both call these two functions, so
the probabilities shown live are the ones the tests measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def logits(net: nn.Module, x: Tensor, tta_flip: bool = False, channels_last: bool = True) -> Tensor:
    """The net's logits for a batch (N, C, H, W); with ``tta_flip`` the mean of the logits of each face and of its
    mirror image (twice the cost)."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = net(x)
    if tta_flip:
        out = (out + net(torch.flip(x, dims=[3]))) / 2
    return out


def probabilities(logits: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """Class probabilities (float32): the softmax of the logits divided by the calibration temperature."""
    return F.softmax(logits.float() / temperature, dim=1)
