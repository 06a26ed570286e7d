"""Sharpness-aware minimisation (Foret et al., 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization"): each step takes the gradient at the weights moved ``rho`` uphill, so training seeks weights whose
whole neighbourhood has a low loss. It was reported to generalise better and to resist noisy labels, as FER2013's are.

`SAM` wraps any optimizer (``model.sam``: rho; 0 is off). Its ``step(closure)`` runs the closure twice, as Lightning's
automatic optimisation allows for optimizers like L-BFGS: once at the weights, once at the weights moved uphill, then
it puts the weights back and lets the wrapped optimizer step with the second gradient. A step costs two forward and
backward passes. The second pass leaves BatchNorm's running statistics alone, so they stay those of the real weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class SAM(torch.optim.Optimizer):
    """``base`` (an optimizer over the parameters to train) stepped with the gradient at ``w + rho * g / |g|``;
    ``net``'s BatchNorm layers keep their running statistics during that second pass."""

    def __init__(self, base: torch.optim.Optimizer, rho: float, net: nn.Module | None = None) -> None:
        if rho <= 0:
            raise ValueError(f"SAM's rho must be above 0, not {rho}")
        self.base, self.rho, self.net = base, float(rho), net
        self.moved = False  # True during the second pass, so the model can leave its loss out of the logs
        super().__init__(base.param_groups, {})
        self.param_groups = base.param_groups  # one set of groups: a scheduler's LR changes reach the base optimizer
        self.state = base.state  # and its momentum buffers are what checkpoints save

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if closure is None:
            raise RuntimeError("SAM needs a closure: it takes the gradient twice a step")
        with torch.enable_grad():
            loss = closure()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return loss
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        if not torch.isfinite(norm):
            return self.base.step()  # let the base optimizer meet the bad gradient as it would without SAM
        scale = self.rho / (norm + 1e-12)
        moves = [p.grad * scale for p in params]
        torch._foreach_add_(params, moves)
        momenta, self.moved = self._hold_batchnorm(), True
        try:
            with torch.enable_grad():
                closure()
        finally:
            torch._foreach_sub_(params, moves)
            self.moved = False
            for layer, momentum in momenta:
                layer.momentum = momentum
        self.base.step()
        return loss

    def _hold_batchnorm(self) -> list[tuple[nn.modules.batchnorm._BatchNorm, float | None]]:
        """Sets every BatchNorm layer's momentum to 0 (its running statistics then stay as they are) and returns the
        layers with the momenta to put back."""
        layers = self.net.modules() if self.net is not None else []
        norms = [m for m in layers if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        held = [(m, m.momentum) for m in norms if m.track_running_stats and m.training]
        for m, _ in held:
            m.momentum = 0.0
        return held

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups, self.state = self.base.param_groups, self.base.state
