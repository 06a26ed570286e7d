"""The nets mimic builds, and the one way to build one: `NETS` is the allow-list of builders a ``net._target_`` may
name, in a config or a model file (DESIGN.md contract 3), and `build_net` calls one with plain-data arguments, never
through Hydra. A net of more than `MAX_PARAMETERS` is refused after a build on PyTorch's meta device, which allocates
nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mimic.errors import UserError, said
from mimic.models.card import NET_BUILDERS, net_config
from mimic.models.mobilenet import mobilenet_v3_large, mobilenet_v3_small
from mimic.models.resnet import resnet18, resnet50
from mimic.models.small_cnn import small_cnn

NETS: dict[str, Callable[..., nn.Module]] = {
    f"{b.__module__}.{b.__name__}": b for b in (small_cnn, resnet18, resnet50, mobilenet_v3_small, mobilenet_v3_large)
}
"""The only builders a ``net._target_`` may name, in a config or a checkpoint: mimic's own (`card.NET_BUILDERS`
names them without importing torch, for `card.net_config`'s check)."""
if tuple(NETS) != NET_BUILDERS:
    raise ImportError(f"mimic.models.card.NET_BUILDERS {NET_BUILDERS} must name the builders of NETS {tuple(NETS)}")
MAX_PARAMETERS = 100_000_000  # resnet50 has 25 M: a file asking for more is refused before anything is allocated


def build_net(
    net: Mapping[str, Any],
    num_classes: int,
    in_channels: int,
    weights: str | None = None,
    where: str = "model.net",
    error: type[UserError] = UserError,
) -> nn.Module:
    """Call the builder ``net._target_`` names (one of `NETS`) with the config's arguments; a net of more than
    `MAX_PARAMETERS` is refused after a build on the meta device, which allocates nothing."""
    args = net_config(net, where, error)
    builder = NETS[args.pop("_target_")]
    try:
        with torch.device("meta"):
            shape = builder(num_classes=num_classes, in_channels=in_channels, **args)
        size = sum(p.numel() for p in shape.parameters())
        if size > MAX_PARAMETERS:
            raise error(
                f"{where} describes a net of {size:,} parameters; mimic builds at most {MAX_PARAMETERS:,} (resnet50 "
                f"has 25 million). Choose smaller widths or hidden sizes."
            )
        if weights is not None:
            args["weights"] = weights
        return builder(num_classes=num_classes, in_channels=in_channels, **args)
    except UserError:
        raise
    except (TypeError, ValueError) as e:  # an argument the builder does not take, or a value it cannot use
        raise error(f"{where} does not fit {net['_target_']}: {said(e)}") from None
