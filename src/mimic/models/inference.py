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
    mirror image (twice the cost; faces and mirror images go through the net as one batch, which is cheaper per face
    than two of half the size, and gives the same logits: the net is in eval mode whenever flip TTA is on)."""
    n = x.shape[0]
    if tta_flip:
        x = torch.cat([x, torch.flip(x, dims=[3])])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = net(x)
    return (out[:n] + out[n:]) / 2 if tta_flip else out


def probabilities(logits: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """Class probabilities (float32): the softmax of the logits divided by the calibration temperature."""
    return F.softmax(logits.float() / temperature, dim=1)
