"""ResNet-18 / ResNet-50 as plain nn.Modules whose parameter names and shapes are torchvision's.

torchvision cannot be imported here, so this is our own code written from its model source; the layout matches
so that torchvision's published ImageNet weights load strictly (tests/test_backbones.py holds the layout).

Stages, in forward order (DESIGN.md contract 4, the names the freeze callback takes): ``conv1``, ``bn1`` (the stem,
stride 2, then a stride-2 max-pool), ``layer1`` (stride 4), ``layer2`` (8), ``layer3`` (16), ``layer4`` (32), ``fc``.
At 48 px input layer4 works on a 2x2 map; inputs of any size work (global average pooling before ``fc``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .weights import WeightsMeta, load_pretrained

RESNET18_IMAGENET = WeightsMeta(
    url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
    sha256="f37072fd",
    input_size=224,
    resize_size=256,
    num_params=11_689_512,
    top1=69.758,
    notes="torchvision ResNet18_Weights.IMAGENET1K_V1 (its only and default weights). Code BSD-3-Clause; the "
    "weights were trained on ImageNet-1k, whose terms of use apply.",
)
RESNET50_IMAGENET = WeightsMeta(
    url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    sha256="11ad3fa6",
    input_size=224,
    resize_size=232,
    num_params=25_557_032,
    top1=80.858,
    notes="torchvision ResNet50_Weights.IMAGENET1K_V2, its default (new training recipe; V1 is resnet50-0676ba61.pth "
    "at 76.130 top-1). Code BSD-3-Clause; the weights were trained on ImageNet-1k, whose terms of use apply.",
)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the first one strides."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strides: "ResNet v1.5", as torchvision), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), four residual stages, global average pool, dropout, ``fc``."""

    head_linear = "fc"
    first_conv = "conv1"

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage, c_in = self._make_layer(block, c_in, planes, blocks, stride=1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)  # holds no tensors: the layout stays torchvision's
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _make_layer(
        block: type[BasicBlock | Bottleneck], c_in: int, planes: int, blocks: int, stride: int
    ) -> tuple[nn.Sequential, int]:
        c_out = planes * block.expansion
        downsample = None
        if stride != 1 or c_in != c_out:
            downsample = nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))
        layers = [block(c_in, planes, stride, downsample)]
        layers += [block(c_out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers), c_out

    def reset_head(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh Linear for ``num_classes`` (after loading ImageNet's 1000-class weights)."""
        self.fc = nn.Linear(self.fc.in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def resnet18(
    num_classes: int = 7, in_channels: int = 1, weights: str | Path | None = None, dropout: float = 0.0
) -> ResNet:
    """ResNet-18. ``weights``: None, ``"imagenet"`` (`RESNET18_IMAGENET`) or a local state_dict path."""
    net = ResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, dropout)
    if weights:
        load_pretrained(net, weights, RESNET18_IMAGENET)
    return net


def resnet50(
    num_classes: int = 7, in_channels: int = 1, weights: str | Path | None = None, dropout: float = 0.0
) -> ResNet:
    """ResNet-50. ``weights``: None, ``"imagenet"`` (`RESNET50_IMAGENET`) or a local state_dict path."""
    net = ResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, dropout)
    if weights:
        load_pretrained(net, weights, RESNET50_IMAGENET)
    return net
