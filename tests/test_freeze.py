"""FreezeModules: what is frozen when, BatchNorm buffers untouched, optimizer groups, resuming (issue 21901)."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from mimic.callbacks import FreezeModules
from mimic.data.datamodule import EmotionDataModule
from mimic.data.synthetic import SyntheticSource
from mimic.errors import UserError
from mimic.models.classifier import EmotionClassifier

CLASSES = ["happy", "sad", "neutral"]


def _model(**kw) -> EmotionClassifier:
    return EmotionClassifier(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": [4, 8, 8], "hidden": 8, "dropout": 0.0},
        class_names=CLASSES,
        log_images=False,
        tta_flip=False,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9},
        scheduler={"_target_": "mimic.models.classifier.warmup_cosine", "_partial_": True},
        **kw,
    )


@pytest.fixture(scope="module")
def dm() -> EmotionDataModule:
    d = EmotionDataModule(
        {"synthetic": SyntheticSource(CLASSES, n_train=48, n_val=12, n_test=12)}, CLASSES, batch_size=16
    )
    d.setup()
    return d


def _trainer(tmp_path, callbacks, epochs: int, **kw) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        **kw,
    )


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_frozen_modules_and_bn_buffers_stay_bitwise_equal(tmp_path, dm, caplog):
    model = _model()
    before = _snapshot(model.net)
    cb = FreezeModules(["conv1", "conv2"])
    with caplog.at_level(logging.INFO, logger="mimic.callbacks.freeze"):
        _trainer(tmp_path, [cb], epochs=2).fit(model, datamodule=dm)
    changed = _changed(before, model.net)
    assert not {k for k in changed if k.startswith(("conv1.", "conv2."))}  # weights, BN running stats, counters
    assert any(k.startswith("conv3.") for k in changed) and any(k.startswith("head.") for k in changed)
    assert "conv1.1.running_mean" in before and "conv2.1.num_batches_tracked" in before
    assert "froze conv1, conv2:" in caplog.text and "trainable" in caplog.text and "frozen parameters" in caplog.text
    opt_params = {id(p) for g in model.trainer.optimizers[0].param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in model.net.conv1.parameters()}
    assert opt_params == {id(p) for p in model.parameters() if p.requires_grad}


def test_unfreeze_schedule_adds_group_with_lr_factor(tmp_path, dm):
    model = _model()
    cb = FreezeModules(["conv1"], unfreeze_at={"conv2": 1}, lr_factor={"conv2": 0.5})
    seen = []

    class Probe(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            opt = trainer.optimizers[0]
            seen.append(
                (len(opt.param_groups), pl_module.net.conv2[0].weight.requires_grad, pl_module.net.conv2[1].training)
            )

    before = _snapshot(model.net)
    trainer = _trainer(tmp_path, [cb, Probe()], epochs=2)
    trainer.fit(model, datamodule=dm)
    assert seen == [(1, False, False), (2, True, True)]
    opt, sched = trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler
    assert opt.param_groups[1]["initial_lr"] == pytest.approx(0.05 * 0.5)
    assert len(sched.base_lrs) == 2  # the new group follows the schedule too
    assert opt.param_groups[1]["lr"] / opt.param_groups[1]["initial_lr"] == pytest.approx(
        opt.param_groups[0]["lr"] / opt.param_groups[0]["initial_lr"]
    )
    changed = _changed(before, model.net)
    assert any(k.startswith("conv2.") for k in changed) and not any(k.startswith("conv1.") for k in changed)
    assert cb.state_dict() == {"unfrozen": [["conv2", 1]]}


def test_resume_keeps_frozen_and_unfrozen_modules_as_they_were(tmp_path, dm):
    """Lightning issue 21901: BaseFinetuning re-freezes already unfrozen modules on resume. Here conv2 is unfrozen at
    epoch 1; a run resumed from the end of epoch 1 must keep conv2 training and conv1 frozen."""
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, save_top_k=0)
    model = _model()
    frozen_at_start = _snapshot(model.net)
    _trainer(tmp_path, [FreezeModules(["conv1"], unfreeze_at={"conv2": 1}), ckpt_cb], epochs=2).fit(
        model, datamodule=dm
    )
    last = tmp_path / "ck" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert len(saved["optimizer_states"][0]["param_groups"]) == 2

    resumed = _model()
    cb = FreezeModules(["conv1"], unfreeze_at={"conv2": 1})
    trainer = _trainer(tmp_path, [cb], epochs=4)
    trainer.fit(resumed, datamodule=dm, ckpt_path=last)
    after_first = {k: v for k, v in saved["state_dict"].items() if k.startswith("net.")}
    changed = {k[4:] for k, v in after_first.items() if not torch.equal(v, resumed.state_dict()[k])}
    assert resumed.net.conv2[0].weight.requires_grad and not resumed.net.conv1[0].weight.requires_grad
    assert any(k.startswith("conv2.") for k in changed)  # conv2 kept training after the resume
    assert not any(k.startswith("conv1.") for k in changed)
    assert all(
        torch.equal(frozen_at_start[k], resumed.net.state_dict()[k]) for k in frozen_at_start if k.startswith("conv1.")
    )
    assert len(trainer.optimizers[0].param_groups) == 2 and cb.unfrozen == [("conv2", 1)]


def test_resume_from_mid_epoch_checkpoint(tmp_path, dm):
    """A checkpoint written mid-epoch (step 4 = epoch 1, batch 1, after conv2 was unfrozen): Lightning skips
    on_train_epoch_start for the resumed epoch, so the restore must not depend on it."""
    ckpt_cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=4, save_top_k=-1, filename="{step}")
    _trainer(tmp_path, [FreezeModules(["conv1"], unfreeze_at={"conv2": 1}), ckpt_cb], epochs=2).fit(
        _model(), datamodule=dm
    )
    mid = tmp_path / "ck" / "step=4.ckpt"
    assert torch.load(mid, weights_only=True)["epoch"] == 1
    resumed = _model()
    cb = FreezeModules(["conv1"], unfreeze_at={"conv2": 1})
    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((pl_module.net.conv2[0].weight.requires_grad, pl_module.net.conv1[1].training))

    trainer = _trainer(tmp_path, [cb, Probe()], epochs=3)
    trainer.fit(resumed, datamodule=dm, ckpt_path=mid)
    assert seen and all(s == (True, False) for s in seen)
    assert cb.unfrozen == [("conv2", 1)] and len(trainer.optimizers[0].param_groups) == 2


def test_bad_pattern_is_a_clear_error(tmp_path, dm):
    with pytest.raises(UserError, match=r"'conv9' matches no module.*conv1"):
        _trainer(tmp_path, [FreezeModules(["conv9"])], epochs=1).fit(_model(), datamodule=dm)


def test_globs_and_train_bn(tmp_path, dm):
    model = _model()
    cb = FreezeModules(["conv[12]"], train_bn=True)
    cb.setup(None, model, "fit")
    assert not model.net.conv1[0].weight.requires_grad and not model.net.conv2[3].weight.requires_grad
    assert model.net.conv1[1].weight.requires_grad  # BatchNorm keeps training with train_bn
    assert model.net.conv3[0].weight.requires_grad
    cb2 = FreezeModules(["net.head"])
    cb2.setup(None, _model(), "fit")
    assert len(cb2._modules["net.head"]) == 1
