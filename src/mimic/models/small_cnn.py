"""small_cnn: a plain three-stage CNN for 48x48 grayscale faces, with the stage names fine-tuning relies on.

Stages are ``conv1``, ``conv2``, ``conv3`` (``convs_per_stage`` 3x3 conv-BN-ReLU layers and a 2x2 max-pool each) and
``head`` (flatten of the 6x6 map, a hidden layer, dropout, the classifier). DESIGN.md contract 5: these names are the
fine-tuning API.

``separable=True`` (config ``small_cnn_lite``) makes every 3x3 conv but the net's very first a MobileNet-v1 block:
a depthwise 3x3 conv-BN-ReLU then a pointwise 1x1 conv-BN-ReLU, at the same resolution and widths. The stage names,
the head and ``head_linear`` stay as they are, so fine-tuning, export and quantisation see the same net shape; the
default (``separable=False``) builds exactly the layers, and state_dict keys, it always has.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _stage(c_in: int, c_out: int, convs: int, dropout: float, separable_from: int | None = None) -> nn.Sequential:
    """``convs`` 3x3 conv-BN-ReLU layers, then a 2x2 max-pool (and channel dropout); the convs from index
    ``separable_from`` on (None: none) are depthwise 3x3 + pointwise 1x1 pairs instead."""
    layers: list[nn.Module] = []
    for i in range(convs):
        c = c_in if i == 0 else c_out
        if separable_from is not None and i >= separable_from:
            layers += _conv_bn_relu(c, c, 3, groups=c) + _conv_bn_relu(c, c_out, 1)
        else:
            layers += _conv_bn_relu(c, c_out, 3)
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
        separable: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(separable, bool):
            raise ValueError(f"separable must be true or false, got {separable!r}")
        w1, w2, w3 = widths
        # separable: the first conv stays a full 3x3 (cheap on a 1-channel image; a depthwise one would be one filter)
        first, rest = (1, 0) if separable else (None, None)
        self.conv1 = _stage(in_channels, w1, convs_per_stage, stage_dropout, first)
        self.conv2 = _stage(w1, w2, convs_per_stage, stage_dropout, rest)
        self.conv3 = _stage(w2, w3, convs_per_stage, stage_dropout, rest)
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
