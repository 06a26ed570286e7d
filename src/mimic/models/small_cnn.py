"""small_cnn: a plain three-stage CNN for 48x48 grayscale faces, with the stage names fine-tuning relies on.

Stages are ``conv1``, ``conv2``, ``conv3`` (two 3x3 conv-BN-ReLU layers and a 2x2 max-pool each) and ``head``
(flatten of the 6x6 map, a hidden layer, dropout, the classifier). DESIGN.md contract 4: these names are the
fine-tuning API.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _stage(c_in: int, c_out: int, convs: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    if dropout:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Three conv stages (each halves the resolution) and a fully connected head."""

    head_linear = "head.7"  # the layer with a row per class

    def __init__(
        self,
        num_classes: int = 7,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 2,
        hidden: int = 256,
        dropout: float = 0.4,
        stage_dropout: float = 0.0,
        pool_to: int = 6,
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = _stage(in_channels, w1, convs_per_stage, stage_dropout)
        self.conv2 = _stage(w1, w2, convs_per_stage, stage_dropout)
        self.conv3 = _stage(w2, w3, convs_per_stage, stage_dropout)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool_to),  # identity at 48x48 input; keeps other input sizes working
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(w3 * pool_to * pool_to, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv3(self.conv2(self.conv1(x))))


def small_cnn(num_classes: int = 7, in_channels: int = 1, **kwargs) -> SmallCNN:
    """Builder, as configs name it (``_target_: mimic.models.small_cnn.small_cnn``). No pretrained weights exist."""
    kwargs.pop("weights", None)
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, **kwargs)
