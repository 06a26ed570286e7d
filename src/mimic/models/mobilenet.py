"""MobileNetV3-Small / -Large as plain nn.Modules whose parameter names and shapes are torchvision's.

torchvision cannot be imported here, so this is our own code written from its model source (width 1.0, no dilation,
full tail: the configuration its ImageNet weights were trained in); the layout matches so those weights load strictly.

Module names are torchvision's: ``features`` is an nn.Sequential (``features.0`` the 3x3/2 stem conv-BN-hardswish,
then one inverted-residual block per entry of the table below, then the 1x1 last conv), ``avgpool``, and
``classifier`` (``classifier.0`` Linear, ``.1`` hardswish, ``.2`` dropout, ``.3`` the class Linear).

``features`` grouped by output stride, the way ResNet's layer1..layer4 are (names for the freeze callback):

=========  =============  ===============================  ===============================
stage      output stride  mobilenet_v3_small               mobilenet_v3_large
=========  =============  ===============================  ===============================
stem       2              features.0                       features.0, features.1
stage1     4              features.1                       features.2 - features.3
stage2     8              features.2 - features.3          features.4 - features.6
stage3     16             features.4 - features.8          features.7 - features.12
stage4     32             features.9 - features.12         features.13 - features.16
head       -              classifier                       classifier
=========  =============  ===============================  ===============================

(stage4 ends with the 1x1 last conv: features.12 / features.16.) Mind fnmatch globs: ``features.1*`` also matches
features.10, features.11, ...; name modules exactly (``features.1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .weights import WeightsMeta, load_pretrained

MOBILENET_V3_SMALL_IMAGENET = WeightsMeta(
    url="https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
    sha256="047dcff4",
    input_size=224,
    resize_size=256,
    num_params=2_542_856,
    top1=67.668,
    notes="torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1 (its only and default weights). Code BSD-3-Clause; "
    "the weights were trained on ImageNet-1k, whose terms of use apply.",
)
MOBILENET_V3_LARGE_IMAGENET = WeightsMeta(
    url="https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth",
    sha256="5c1a4163",
    input_size=224,
    resize_size=232,
    num_params=5_483_032,
    top1=75.274,
    notes="torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V2, its default (V1 is mobilenet_v3_large-8738ca79.pth "
    "at 74.042 top-1). Code BSD-3-Clause; the weights were trained on ImageNet-1k, whose terms of use apply.",
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% down (the TF MobileNet rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@dataclass(frozen=True)
class Bneck:
    """One row of the MobileNetV3 paper's tables 1/2: an inverted-residual block."""

    c_in: int
    kernel: int
    expanded: int
    c_out: int
    se: bool
    hardswish: bool
    stride: int


# fmt: off
SMALL = (
    Bneck(16, 3, 16, 16, True, False, 2),
    Bneck(16, 3, 72, 24, False, False, 2),
    Bneck(24, 3, 88, 24, False, False, 1),
    Bneck(24, 5, 96, 40, True, True, 2),
    Bneck(40, 5, 240, 40, True, True, 1),
    Bneck(40, 5, 240, 40, True, True, 1),
    Bneck(40, 5, 120, 48, True, True, 1),
    Bneck(48, 5, 144, 48, True, True, 1),
    Bneck(48, 5, 288, 96, True, True, 2),
    Bneck(96, 5, 576, 96, True, True, 1),
    Bneck(96, 5, 576, 96, True, True, 1),
)
LARGE = (
    Bneck(16, 3, 16, 16, False, False, 1),
    Bneck(16, 3, 64, 24, False, False, 2),
    Bneck(24, 3, 72, 24, False, False, 1),
    Bneck(24, 5, 72, 40, True, False, 2),
    Bneck(40, 5, 120, 40, True, False, 1),
    Bneck(40, 5, 120, 40, True, False, 1),
    Bneck(40, 3, 240, 80, False, True, 2),
    Bneck(80, 3, 200, 80, False, True, 1),
    Bneck(80, 3, 184, 80, False, True, 1),
    Bneck(80, 3, 184, 80, False, True, 1),
    Bneck(80, 3, 480, 112, True, True, 1),
    Bneck(112, 3, 672, 112, True, True, 1),
    Bneck(112, 5, 672, 160, True, True, 2),
    Bneck(160, 5, 960, 160, True, True, 1),
    Bneck(160, 5, 960, 160, True, True, 1),
)
# fmt: on


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BN -> activation, as indices 0, 1, 2 (torchvision's Conv2dNormActivation)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out, eps=0.001, momentum=0.01),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global pool, 1x1 squeeze + ReLU, 1x1 excite + hard-sigmoid, rescale the input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when it would not widen), depthwise kxk, optional SE, linear 1x1 project; residual at
    stride 1 when the width is kept."""

    def __init__(self, cfg: Bneck) -> None:
        super().__init__()
        act = nn.Hardswish if cfg.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if cfg.expanded != cfg.c_in:
            layers.append(ConvBNAct(cfg.c_in, cfg.expanded, 1, act=act))
        layers.append(ConvBNAct(cfg.expanded, cfg.expanded, cfg.kernel, cfg.stride, groups=cfg.expanded, act=act))
        if cfg.se:
            layers.append(SqueezeExcitation(cfg.expanded, _make_divisible(cfg.expanded // 4)))
        layers.append(ConvBNAct(cfg.expanded, cfg.c_out, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = cfg.stride == 1 and cfg.c_in == cfg.c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """``features`` (stem, inverted residuals, last 1x1 conv), global average pool, ``classifier`` MLP."""

    head_linear = "classifier.3"
    first_conv = "features.0.0"

    def __init__(
        self,
        blocks: tuple[Bneck, ...],
        last_channel: int,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        last_conv = 6 * blocks[-1].c_out
        self.features = nn.Sequential(
            ConvBNAct(in_channels, blocks[0].c_in, 3, stride=2, act=nn.Hardswish),
            *(InvertedResidual(b) for b in blocks),
            ConvBNAct(blocks[-1].c_out, last_conv, 1, act=nn.Hardswish),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def reset_head(self, num_classes: int) -> None:
        """Replace ``classifier.3`` with a fresh Linear for ``num_classes`` (``classifier.0`` keeps its weights)."""
        last = nn.Linear(self.classifier[3].in_features, num_classes)
        nn.init.normal_(last.weight, 0, 0.01)
        nn.init.zeros_(last.bias)
        self.classifier[3] = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def mobilenet_v3_small(
    num_classes: int = 7, in_channels: int = 1, weights: str | Path | None = None, dropout: float = 0.2
) -> MobileNetV3:
    """MobileNetV3-Small. ``weights``: None, ``"imagenet"`` (`MOBILENET_V3_SMALL_IMAGENET`) or a local state_dict
    path. ``dropout`` is classifier.2's rate (torchvision's default 0.2)."""
    net = MobileNetV3(SMALL, 1024, num_classes, in_channels, dropout)
    if weights:
        load_pretrained(net, weights, MOBILENET_V3_SMALL_IMAGENET)
    return net


def mobilenet_v3_large(
    num_classes: int = 7, in_channels: int = 1, weights: str | Path | None = None, dropout: float = 0.2
) -> MobileNetV3:
    """MobileNetV3-Large. ``weights``: None, ``"imagenet"`` (`MOBILENET_V3_LARGE_IMAGENET`) or a local state_dict
    path. ``dropout`` is classifier.2's rate (torchvision's default 0.2)."""
    net = MobileNetV3(LARGE, 1280, num_classes, in_channels, dropout)
    if weights:
        load_pretrained(net, weights, MOBILENET_V3_LARGE_IMAGENET)
    return net
