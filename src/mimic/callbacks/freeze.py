"""FreezeModules: keep named parts of the net frozen while the rest trains, and unfreeze them on a schedule.

Modules are named as the net names them (DESIGN.md contract 4: ``conv1``, ``layer3``, ``features.*``), never by index.
What happens when:

- ``setup`` (every fit, fresh or resumed, before ``configure_optimizers``): every module matched by ``patterns`` or by
  a key of ``unfreeze_at`` gets ``requires_grad=False``, so the optimizer only ever sees trainable parameters.
  Trainable and frozen parameter counts are logged.
- ``on_fit_start`` of a resumed run (after ``configure_optimizers``, before the optimizer state is loaded): modules
  that were unfrozen before the checkpoint are unfrozen again and their parameter groups are re-added in the same
  order, so the saved optimizer state fits and they keep training. Lightning's ``BaseFinetuning`` restores the groups
  but leaves the parameters frozen (lightning issue 21901); this callback restores both.
- ``on_train_start`` and ``on_train_epoch_start``: BatchNorm layers inside frozen modules are put back in eval mode,
  so their running statistics stay exactly as loaded (unless ``train_bn``).
- ``on_train_epoch_start`` of epoch ``unfreeze_at[pattern]``: that pattern's modules become trainable and join the
  optimizer as a new parameter group at ``lr_factor`` times the configured learning rate, following the same LR
  schedule as the rest.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mimic.errors import UserError

log = logging.getLogger(__name__)


class FreezeModules(L.Callback):
    """Freeze the modules matching ``patterns`` (names or globs, relative to the LightningModule's ``net`` or to the
    module itself); ``unfreeze_at`` ({pattern: epoch}) makes a pattern trainable from that epoch on, with learning rate
    ``lr_factor`` (one number, or {pattern: factor}) times the optimizer's. ``train_bn`` keeps BatchNorm layers of
    frozen modules training (Lightning's meaning); by default they are frozen and in eval mode."""

    def __init__(
        self,
        patterns: Sequence[str] = (),
        unfreeze_at: Mapping[str, int] | None = None,
        lr_factor: float | Mapping[str, float] = 0.1,
        train_bn: bool = False,
    ) -> None:
        self.unfreeze_at = {str(k): int(v) for k, v in (unfreeze_at or {}).items()}
        self.patterns = list(dict.fromkeys([*map(str, patterns), *self.unfreeze_at]))
        if not self.patterns:
            raise UserError("callbacks.freeze.patterns is empty: name the modules to freeze, e.g. [conv1, conv2].")
        factors = dict(lr_factor) if isinstance(lr_factor, Mapping) else {}
        unknown = set(factors) - set(self.unfreeze_at)
        if unknown:
            raise UserError(f"callbacks.freeze.lr_factor names {sorted(unknown)}, which unfreeze_at does not schedule.")
        self.lr_factor = {p: float(factors.get(p, 0.1 if factors else lr_factor)) for p in self.unfreeze_at}
        self.train_bn = train_bn
        self.unfrozen: list[tuple[str, int]] = []  # (pattern, epoch) in the order their groups joined the optimizer
        self._restored: list[tuple[str, int]] = []
        self._modules: dict[str, list[nn.Module]] = {}

    @property
    def state_key(self) -> str:
        return self._generate_state_key(patterns=self.patterns)

    # ---- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": [[p, e] for p, e in self.unfrozen]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = [(str(p), int(e)) for p, e in state_dict.get("unfrozen", [])]

    # ---- hooks, in the order they run ----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._modules = self._match(pl_module)
        self.unfrozen = []
        for mods in self._modules.values():
            for m in mods:
                _set_trainable(m, False, self.train_bn)
        self._log_counts(pl_module, "froze " + ", ".join(self.patterns))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        restored, self._restored = self._restored, []
        for pattern, epoch in restored:
            if pattern not in self._modules:
                raise UserError(
                    f"the checkpoint's freeze state unfroze {pattern!r}, which callbacks.freeze does not "
                    f"name ({self.patterns}); resume with the callback settings the run started with."
                )
            self._unfreeze(trainer, pl_module, pattern, epoch, resumed=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._frozen_bn_to_eval()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = {p for p, _ in self.unfrozen}
        for pattern, epoch in self.unfreeze_at.items():
            if pattern not in done and trainer.current_epoch >= epoch:
                self._unfreeze(trainer, pl_module, pattern, trainer.current_epoch)
        self._frozen_bn_to_eval()
        n_train = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        pl_module.log("freeze/trainable_params", float(n_train), on_step=False, on_epoch=True)

    # ---- helpers -------------------------------------------------------------------------------------------------
    def _match(self, pl_module: L.LightningModule) -> dict[str, list[nn.Module]]:
        """{pattern: top-most modules whose name matches it}; a pattern that matches nothing is an error."""
        root = getattr(pl_module, "net", None)
        root, prefix = (root, "net.") if isinstance(root, nn.Module) else (pl_module, "")
        named = [(n, m) for n, m in root.named_modules() if n]
        out: dict[str, list[nn.Module]] = {}
        taken: list[str] = []
        for pattern in self.patterns:
            hits = []
            for name, module in named:
                if not (fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(prefix + name, pattern)):
                    continue
                if any(name == t or name.startswith(t + ".") for t in taken):
                    continue  # inside a module already matched
                hits.append(module)
                taken.append(name)
            if not hits:
                top = [n for n, _ in root.named_children()]
                raise UserError(
                    f"callbacks.freeze: {pattern!r} matches no module of the net. Its top-level "
                    f"modules are {top} (globs like 'layer*' and dotted names like 'features.3' work)."
                )
            out[pattern] = hits
        return out

    def _unfreeze(
        self, trainer: L.Trainer, pl_module: L.LightningModule, pattern: str, epoch: int, resumed: bool = False
    ) -> None:
        for m in self._modules[pattern]:
            _set_trainable(m, True, train_bn=True)
            m.train(pl_module.training)
        params = [p for m in self._modules[pattern] for p in m.parameters() if p.requires_grad]
        factor = self.lr_factor.get(pattern, 0.1)
        for optimizer in trainer.optimizers:
            present = {id(p) for g in optimizer.param_groups for p in g["params"]}
            new = [p for p in params if id(p) not in present]
            if new:
                _add_group(trainer, optimizer, new, factor)
        self.unfrozen.append((pattern, epoch))
        self._log_counts(pl_module, f"{'re-' if resumed else ''}unfroze {pattern} (epoch {epoch}, LR x{factor:g})")

    def _frozen_bn_to_eval(self) -> None:
        if self.train_bn:
            return
        done = {p for p, _ in self.unfrozen}
        for pattern, mods in self._modules.items():
            if pattern not in done:
                for m in mods:
                    for bn in m.modules():
                        if isinstance(bn, _BatchNorm):
                            bn.eval()

    def _log_counts(self, pl_module: L.LightningModule, what: str) -> None:
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in pl_module.parameters() if not p.requires_grad)
        log.info("%s: %s trainable, %s frozen parameters", what, f"{trainable:,}", f"{frozen:,}")


def _set_trainable(module: nn.Module, trainable: bool, train_bn: bool) -> None:
    for m in module.modules():
        keep = isinstance(m, _BatchNorm) and train_bn and not trainable
        for p in m.parameters(recurse=False):
            p.requires_grad = trainable or keep


def _add_group(trainer: L.Trainer, optimizer, params: list, factor: float) -> None:
    """Add ``params`` at ``factor`` x the optimizer's configured LR, and extend its LR scheduler to the new group so
    it follows the same schedule (warm-up, cosine) at that scale."""
    base = float(optimizer.defaults.get("lr", optimizer.param_groups[0]["lr"])) * factor
    first = optimizer.param_groups[0]
    scale = first["lr"] / first["initial_lr"] if first.get("initial_lr") else 1.0
    optimizer.add_param_group({"params": params, "lr": base * scale, "initial_lr": base, "lr_scale": factor})
    for config in trainer.lr_scheduler_configs:
        sched = config.scheduler
        if getattr(sched, "optimizer", None) is not optimizer:
            continue
        for name, value in (("base_lrs", base), ("_last_lr", base * scale)):
            if isinstance(getattr(sched, name, None), list):
                getattr(sched, name).append(value)
        if isinstance(getattr(sched, "lr_lambdas", None), list):
            sched.lr_lambdas.append(sched.lr_lambdas[-1])
        if isinstance(getattr(sched, "min_lrs", None), list):  # ReduceLROnPlateau
            sched.min_lrs.append(sched.min_lrs[-1])
