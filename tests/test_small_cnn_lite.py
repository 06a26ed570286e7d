"""small_cnn_lite (issue 14): small_cnn with depthwise-separable blocks, at most a third of its multiply-adds, the same
stage names and head, and everything built on those (training, the safe loader, ONNX and int8 export, freezing)
working unchanged; the default small_cnn keeps its exact layout, so existing checkpoints load as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SYNTHETIC, compose
from hydra.utils import instantiate
from torch import nn

from mimic.data.synthetic import draw_faces, write_class_folders
from mimic.errors import UserError
from mimic.finetune import load_matching
from mimic.models.checkpoint import read_card, read_checkpoint
from mimic.models.classifier import EmotionClassifier
from mimic.models.nets import build_net
from mimic.models.onnx_export import export
from mimic.models.onnx_model import OnnxModel
from mimic.models.predictor import Predictor
from mimic.models.quantize import quantize
from mimic.models.small_cnn import SmallCNN, small_cnn
from mimic.models.weights import count_flops
from mimic.preprocessing import preprocess_array
from mimic.settings import check_settings
from mimic.train import run


def _model(name: str, tmp_path: Path, overrides: tuple[str, ...] = ()) -> EmotionClassifier:
    cfg = compose("train", [f"model={name}", "data=synthetic", *overrides], tmp_path)
    return instantiate(cfg.model, _recursive_=False)


def _faces(n: int, seed: int = 0) -> list[np.ndarray]:
    names = ["happy", "sad", "angry", "surprise", "neutral", "fear", "disgust"]
    return list(draw_faces((names * n)[:n], 64, np.random.default_rng(seed), bgr=True))


def test_lite_costs_at_most_a_third_of_small_cnn(tmp_path):
    """Both nets as their configs build them, counted at the input their configs set (48 px, 1 channel)."""
    base, lite = _model("small_cnn", tmp_path), _model("small_cnn_lite", tmp_path)
    assert (lite.spec.size, lite.spec.channels) == (base.spec.size, base.spec.channels) == (48, 1)
    base_macs = count_flops(base.net, base.spec.size, base.spec.channels)
    lite_macs = count_flops(lite.net, lite.spec.size, lite.spec.channels)
    assert 3 * lite_macs <= base_macs, (lite_macs, base_macs)
    convs = [m for m in lite.net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].groups == 1 and convs[0].kernel_size == (3, 3)  # the first conv sees the whole image
    depthwise = [m for m in convs if m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert [m.out_channels for m in convs[1:]].count(128) > 0  # small_cnn's widths kept


def _default_layout(widths=(32, 64, 128), hidden=256, classes=7) -> dict[str, tuple[int, ...]]:
    """small_cnn's state_dict as it was before the separable option, written out from its structure: per stage,
    conv (index 0), BN (1), ReLU, conv (3), BN (4), ReLU, pool; head: pool, flatten, dropout, Linear (3), BN (4),
    ReLU, dropout, Linear (7)."""
    sd: dict[str, tuple[int, ...]] = {}
    c_in = 1
    for stage, w in enumerate(widths, 1):
        for conv, bn, c in ((0, 1, c_in), (3, 4, w)):
            sd[f"conv{stage}.{conv}.weight"] = (w, c, 3, 3)
            for k in ("weight", "bias", "running_mean", "running_var"):
                sd[f"conv{stage}.{bn}.{k}"] = (w,)
            sd[f"conv{stage}.{bn}.num_batches_tracked"] = ()
        c_in = w
    sd["head.3.weight"] = (hidden, widths[-1] * 36)
    for k in ("weight", "bias", "running_mean", "running_var"):
        sd[f"head.4.{k}"] = (hidden,)
    sd["head.4.num_batches_tracked"] = ()
    sd["head.7.weight"], sd["head.7.bias"] = (classes, hidden), (classes,)
    return sd


def test_default_small_cnn_layout_is_unchanged(tmp_path):
    want = _default_layout()
    for net in (SmallCNN(), small_cnn(), _model("small_cnn", tmp_path).net):
        got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert list(got) == list(want) and got == want
        assert isinstance(net.get_submodule(net.head_linear), nn.Linear)
    lite = _model("small_cnn_lite", tmp_path).net
    assert lite.head_linear == SmallCNN.head_linear and lite.get_submodule(lite.head_linear).out_features == 7
    lite_head = {k: tuple(v.shape) for k, v in lite.state_dict().items() if k.startswith("head.")}
    assert lite_head == {k: v for k, v in want.items() if k.startswith("head.")}  # the same head, by name and shape


def test_separable_must_be_a_bool(tmp_path):
    with pytest.raises(ValueError, match="separable must be true or false"):
        small_cnn(separable="yes")
    with pytest.raises(UserError, match="does not fit mimic.models.small_cnn.small_cnn"):
        build_net({"_target_": "mimic.models.small_cnn.small_cnn", "separable": 3}, 7, 1)
    cfg = compose("train", ["model=small_cnn_lite", "model.net.separable=maybe"], tmp_path)
    with pytest.raises(UserError, match=r"model.net.separable=maybe: expected true or false"):
        check_settings(cfg, "train")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One short epoch of `train.py model=small_cnn_lite data=synthetic` (a fast_dev_run saves no checkpoint)."""
    out = tmp_path_factory.mktemp("lite_run")
    overrides = [
        "model=small_cnn_lite",
        *TINY_SYNTHETIC,
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "data.sources.synthetic.n_val=32",
        "data.sources.synthetic.n_test=32",
        "logger=none",
    ]
    return out, run(compose("train", overrides, output_dir=out))


@pytest.mark.slow  # a training run in the fixture; small_cnn's own paths are in the default suite
def test_training_run_writes_a_checkpoint_the_safe_loader_reads(trained):
    _, results = trained
    best = Path(results["best_checkpoint"])
    card, raw = read_card(best)
    assert card.net["separable"] is True and card.net["convs_per_stage"] == 3
    assert card.net["_target_"] == "mimic.models.small_cnn.small_cnn"
    model = EmotionClassifier.load(best)
    assert any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.net.modules())
    want = {k: v for k, v in raw["state_dict"].items()}
    got = model.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert 0 <= results["test/acc"] <= 1


@pytest.mark.slow  # a training run in the fixture; small_cnn's own paths are in the default suite
def test_onnx_and_int8_exports_give_the_checkpoints_probabilities(trained, tmp_path):
    _, results = trained
    best = Path(results["best_checkpoint"])
    fp32 = tmp_path / "lite.onnx"
    export(best, fp32)
    torch_predictor, onnx_model = Predictor(best), OnnxModel(fp32)
    faces = _faces(4)
    for n in (1, 4):
        want = torch_predictor.predict_crops(faces[:n])
        got = onnx_model(preprocess_array(faces[:n], torch_predictor.spec))
        assert got.shape == (n, 7) and np.abs(got - want).max() < 1e-4
    int8 = tmp_path / "lite-int8.onnx"
    quantize(fp32, int8, preprocess_array(_faces(64, 1), torch_predictor.spec), "synthetic faces")
    x = preprocess_array(_faces(16, 2), torch_predictor.spec)
    want, got = onnx_model(x), OnnxModel(int8)(x)
    assert np.allclose(got.sum(1), 1, atol=1e-5) and 0 < np.abs(got - want).max() < 0.05


@pytest.mark.slow  # a training run in the fixture; small_cnn's own paths are in the default suite
def test_finetune_webcam_freezes_conv1_conv2_and_maps_the_head_by_name(trained, tmp_path):
    """`python train.py +finetune=webcam` from the lite checkpoint: conv1 and conv2 (depthwise, pointwise, their BN
    statistics) stay bitwise, conv3 and the head learn, the head starts from the checkpoint's rows by class name."""
    _, results = trained
    start = read_checkpoint(results["best_checkpoint"])["state_dict"]
    classes = ["happy", "sad", "neutral"]
    write_class_folders(tmp_path / "data" / "webcam", classes, per_class=8, size=64)
    overrides = [
        "+finetune=webcam",
        f"finetune.ckpt={results['best_checkpoint']}",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.sources.webcam.cache_dir=false",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "data.batch_size=16",
        "logger=none",
        "callbacks.lr_monitor=null",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    model_before = EmotionClassifier.load(results["best_checkpoint"])
    tuned_results = run(compose("train", overrides, output_dir=tmp_path / "out"))
    tuned = read_checkpoint(tuned_results["best_checkpoint"])["state_dict"]
    frozen = [k for k in tuned if k.startswith(("net.conv1.", "net.conv2."))]
    assert any(k.endswith("running_mean") for k in frozen) and "net.conv2.4.running_var" in frozen  # dw and pw BN
    assert all(torch.equal(tuned[k], start[k]) for k in frozen), "conv1/conv2 changed"
    assert any(not torch.equal(tuned[k], start[k]) for k in tuned if k.startswith("net.conv3."))
    assert EmotionClassifier.load(tuned_results["best_checkpoint"]).class_names == classes

    # the head's start: the checkpoint's rows of happy, sad, neutral (FER2013 rows 3, 4, 6), found by head_linear
    fresh = EmotionClassifier(net=dict(model_before.hparams.net), class_names=classes, log_images=False)
    done = load_matching(fresh, start, model_before.class_names, head_init="by_name")
    assert done["head"] == "head.7"
    for k in ("weight", "bias"):
        assert torch.equal(fresh.state_dict()[f"net.head.7.{k}"], start[f"net.head.7.{k}"][[3, 4, 6]])
