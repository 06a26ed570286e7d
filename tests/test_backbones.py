"""Backbones: torchvision's exact state_dict layout, strict round trips, gray stems, and the weights-file machinery.

The expected layouts are written here from torchvision's model source (torchvision/models/resnet.py and
mobilenetv3.py, torchvision/ops/misc.py), not generated from our nets: the block tables below are torchvision's,
the key names follow its module structure (Conv2dNormActivation = Sequential(conv, bn[, act]); SqueezeExcitation =
avgpool, fc1, activation, fc2, scale_activation; classifier = Linear, Hardswish, Dropout, Linear), and the
parameter counts are the ``num_params`` torchvision publishes with its weights. No test touches the network.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import shutil
import urllib.request
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import nn

from mimic.models import mobilenet as mobilenet_mod
from mimic.models import resnet as resnet_mod
from mimic.models import weights as weights_mod
from mimic.models.mobilenet import mobilenet_v3_large, mobilenet_v3_small
from mimic.models.resnet import resnet18, resnet50
from mimic.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsError,
    WeightsMeta,
    count_flops,
    load_weights,
)

BUILDERS = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v3_large": mobilenet_v3_large,
}
META_ATTR = {
    "resnet18": (resnet_mod, "RESNET18_IMAGENET"),
    "resnet50": (resnet_mod, "RESNET50_IMAGENET"),
    "mobilenet_v3_small": (mobilenet_mod, "MOBILENET_V3_SMALL_IMAGENET"),
    "mobilenet_v3_large": (mobilenet_mod, "MOBILENET_V3_LARGE_IMAGENET"),
}
# torchvision's *_Weights enums: URL of the file we use and the num_params of the 1000-class net.
TORCHVISION = {
    "resnet18": ("https://download.pytorch.org/models/resnet18-f37072fd.pth", 11_689_512),
    "resnet50": ("https://download.pytorch.org/models/resnet50-11ad3fa6.pth", 25_557_032),
    "mobilenet_v3_small": ("https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth", 2_542_856),
    "mobilenet_v3_large": ("https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth", 5_483_032),
}


# ---------------------------------------------------------------- the expected torchvision layouts


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def torchvision_resnet_layout(bottleneck: bool, layers: tuple[int, ...], classes: int = 1000) -> dict:
    """torchvision ResNet: conv1/bn1 stem; layerN.i blocks (BasicBlock: conv1 3x3, conv2 3x3; Bottleneck: conv1 1x1,
    conv2 3x3, conv3 1x1 x4), downsample.0 (1x1 conv) / .1 (BN) on block 0 when stride or width changes; fc."""
    exp = 4 if bottleneck else 1
    sd = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        for i in range(n):
            p = f"layer{li}.{i}"
            if bottleneck:
                sd[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                sd.update(_bn(f"{p}.bn1", planes))
                sd[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                sd.update(_bn(f"{p}.bn2", planes))
                sd[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                sd.update(_bn(f"{p}.bn3", planes * 4))
            else:
                sd[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                sd.update(_bn(f"{p}.bn1", planes))
                sd[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                sd.update(_bn(f"{p}.bn2", planes))
            if i == 0 and (li > 1 or inplanes != planes * exp):
                sd[f"{p}.downsample.0.weight"] = (planes * exp, inplanes, 1, 1)
                sd.update(_bn(f"{p}.downsample.1", planes * exp))
            inplanes = planes * exp
    sd["fc.weight"] = (classes, 512 * exp)
    sd["fc.bias"] = (classes,)
    return sd


# torchvision's _mobilenet_v3_conf tables: (input, kernel, expanded, out, use_se, activation, stride)
TV_SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]
TV_LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]


def _tv_make_divisible(v: float, divisor: int = 8) -> int:  # torchvision.models._utils._make_divisible
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def torchvision_mobilenet_layout(table: list[tuple], last_channel: int, classes: int = 1000) -> dict:
    sd = {"features.0.0.weight": (table[0][0], 3, 3, 3), **_bn("features.0.1", table[0][0])}
    for n, (cin, k, e, cout, se, _act, _stride) in enumerate(table, start=1):
        j = 0
        if e != cin:  # expand
            sd[f"features.{n}.block.{j}.0.weight"] = (e, cin, 1, 1)
            sd.update(_bn(f"features.{n}.block.{j}.1", e))
            j += 1
        sd[f"features.{n}.block.{j}.0.weight"] = (e, 1, k, k)  # depthwise
        sd.update(_bn(f"features.{n}.block.{j}.1", e))
        j += 1
        if se:
            sq = _tv_make_divisible(e // 4, 8)
            sd[f"features.{n}.block.{j}.fc1.weight"] = (sq, e, 1, 1)
            sd[f"features.{n}.block.{j}.fc1.bias"] = (sq,)
            sd[f"features.{n}.block.{j}.fc2.weight"] = (e, sq, 1, 1)
            sd[f"features.{n}.block.{j}.fc2.bias"] = (e,)
            j += 1
        sd[f"features.{n}.block.{j}.0.weight"] = (cout, e, 1, 1)  # project
        sd.update(_bn(f"features.{n}.block.{j}.1", cout))
    last_in = table[-1][3]
    n = len(table) + 1
    sd[f"features.{n}.0.weight"] = (6 * last_in, last_in, 1, 1)
    sd.update(_bn(f"features.{n}.1", 6 * last_in))
    sd["classifier.0.weight"] = (last_channel, 6 * last_in)
    sd["classifier.0.bias"] = (last_channel,)
    sd["classifier.3.weight"] = (classes, last_channel)
    sd["classifier.3.bias"] = (classes,)
    return sd


EXPECTED = {
    "resnet18": torchvision_resnet_layout(False, (2, 2, 2, 2)),
    "resnet50": torchvision_resnet_layout(True, (3, 4, 6, 3)),
    "mobilenet_v3_small": torchvision_mobilenet_layout(TV_SMALL, 1024),
    "mobilenet_v3_large": torchvision_mobilenet_layout(TV_LARGE, 1280),
}

# Worked out by hand from torchvision's source, as a check on the generators above.
SPOT_CHECKS = {
    "resnet18": {
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer4.1.conv2.weight": (512, 512, 3, 3),
    },
    "resnet50": {
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer3.5.conv3.weight": (1024, 256, 1, 1),
        "fc.weight": (1000, 2048),
    },
    "mobilenet_v3_small": {
        "features.1.block.1.fc1.weight": (8, 16, 1, 1),  # SE squeeze: _make_divisible(16 // 4) = 8
        "features.4.block.2.fc2.weight": (96, 24, 1, 1),
        "features.12.0.weight": (576, 96, 1, 1),
        "classifier.0.weight": (1024, 576),
    },
    "mobilenet_v3_large": {
        "features.1.block.0.0.weight": (16, 1, 3, 3),  # no expand conv: 16 -> 16
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),  # 72 // 4 = 18 rounds to 16 < 0.9 * 18, so 24
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
    },
}
COUNTS = {"resnet18": 122, "resnet50": 320, "mobilenet_v3_small": 244, "mobilenet_v3_large": 312}


def _layout(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.fixture(autouse=True)
def no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private torch hub cache, and a downloader that fails as it would offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(url: str, timeout: float = 0) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def _serve(monkeypatch: pytest.MonkeyPatch, data: bytes) -> list[str]:
    """A urlopen that answers every URL with ``data``; returns the list of URLs asked for."""
    calls = []

    def urlopen(url: str, timeout: float = 0) -> io.BytesIO:
        calls.append(url)
        return io.BytesIO(data)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def _fake_imagenet(arch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: bool = True):
    """An ImageNet-shaped file for ``arch`` with random weights (BN statistics too), named torchvision-style with
    its own sha256 prefix, placed in the hub cache; the builder's metadata is pointed at it."""
    torch.manual_seed(0)
    src = BUILDERS[arch](num_classes=1000, in_channels=3)
    with torch.no_grad():
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    filename = f"{arch}-{sha[:8]}.pth"
    (tmp_path / "origin").mkdir(exist_ok=True)
    origin = tmp_path / "origin" / filename
    origin.write_bytes(data)
    if cache:
        hub = weights_mod.hub_checkpoint_dir()
        hub.mkdir(parents=True, exist_ok=True)
        shutil.copy(origin, hub / filename)
    real = getattr(*META_ATTR[arch])
    meta = WeightsMeta(
        url=f"https://download.pytorch.org/models/{filename}",
        sha256=sha[:8],
        input_size=real.input_size,
        resize_size=real.resize_size,
        num_params=real.num_params,
        top1=real.top1,
    )
    monkeypatch.setattr(*META_ATTR[arch], meta)
    return meta, origin, src.state_dict()


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize("arch", BUILDERS)
def test_layout_is_torchvisions(arch: str) -> None:
    expected = EXPECTED[arch]
    assert SPOT_CHECKS[arch].items() <= expected.items()
    assert len(expected) == COUNTS[arch]
    got = _layout(BUILDERS[arch](num_classes=1000, in_channels=3))
    assert sorted(set(expected) - set(got)) == [], "keys torchvision has and we lack"
    assert sorted(set(got) - set(expected)) == [], "keys we have and torchvision lacks"
    assert {k: v for k, v in got.items() if expected[k] != v} == {}, "shape mismatches"
    n_params = sum(v.numel() for k, v in BUILDERS[arch](num_classes=1000, in_channels=3).named_parameters())
    assert n_params == TORCHVISION[arch][1]


@pytest.mark.parametrize("arch", BUILDERS)
def test_weights_meta_is_torchvisions_file(arch: str) -> None:
    meta = getattr(*META_ATTR[arch])
    assert meta.url == TORCHVISION[arch][0]
    assert meta.filename == f"{arch}-{meta.sha256}.pth" and len(meta.sha256) == 8
    assert meta.num_params == TORCHVISION[arch][1]
    assert meta.input_size == 224 and meta.mean == IMAGENET_MEAN


@pytest.mark.parametrize("arch", BUILDERS)
def test_state_dict_round_trip_is_strict(arch: str) -> None:
    torch.manual_seed(1)
    a = BUILDERS[arch](num_classes=7, in_channels=1)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = BUILDERS[arch](num_classes=7, in_channels=1)
    b.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_saved_net_loads_back_as_local_weights(arch: str, tmp_path: Path) -> None:
    """A state_dict saved from a 7-class gray net, given as model.weights=path, loads whole (classifier too)."""
    torch.manual_seed(1)
    a = BUILDERS[arch](num_classes=7, in_channels=1)
    path = tmp_path / "saved.pth"
    torch.save(a.state_dict(), path)
    b = BUILDERS[arch](num_classes=7, in_channels=1, weights=str(path))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("arch", BUILDERS)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_shapes(arch: str, in_channels: int) -> None:
    net = BUILDERS[arch](num_classes=7, in_channels=in_channels).eval()
    sizes = [48] if arch == "resnet50" else [48, 96, 112]  # resnet50 is slow on CPU; its stages are resnet18's code
    for size in sizes:
        with torch.no_grad():
            out = net(torch.randn(2, in_channels, size, size))
        assert out.shape == (2, 7) and torch.isfinite(out).all(), size


# The module names the freeze callback is given (DESIGN.md contract 5; the nets' docstrings), in forward order.
STAGES = {
    "resnet18": ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"],
    "resnet50": ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"],
    "mobilenet_v3_small": [f"features.{i}" for i in range(13)] + ["classifier"],
    "mobilenet_v3_large": [f"features.{i}" for i in range(17)] + ["classifier"],
}


@pytest.mark.parametrize("arch", BUILDERS)
def test_stage_names_cover_every_parameter_once(arch: str) -> None:
    net = BUILDERS[arch](num_classes=7)
    names = dict(net.named_modules())
    assert all(stage in names for stage in STAGES[arch])
    owners = [p for p, _ in net.named_parameters()]
    assert all(sum(fnmatch.fnmatch(p, f"{s}.*") for s in STAGES[arch]) == 1 for p in owners)
    head = net.get_submodule(net.head_linear)  # the layer fine-tuning re-initialises for a new class set
    assert isinstance(head, nn.Linear) and head.out_features == 7


@pytest.mark.parametrize(
    "arch, last_block_of_stride",
    [
        ("mobilenet_v3_small", {2: 0, 4: 1, 8: 3, 16: 8, 32: 12}),
        ("mobilenet_v3_large", {2: 1, 4: 3, 8: 6, 16: 12, 32: 16}),
    ],
)
def test_mobilenet_stages_by_stride(arch: str, last_block_of_stride: dict[int, int]) -> None:
    """The table in mobilenet.py's docstring: which features.N end each output stride."""
    net = BUILDERS[arch]().eval()
    x, sides = torch.zeros(1, 1, 64, 64), []
    with torch.no_grad():
        for block in net.features:
            x = block(x)
            sides.append(x.shape[-1])
    for stride, i in last_block_of_stride.items():
        assert sides[i] == 64 // stride and (i + 1 == len(sides) or sides[i + 1] < sides[i]), (stride, sides)


# ---------------------------------------------------------------- pretrained weights


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_gray_stem_equals_rgb_net_on_replicated_gray(arch: str, tmp_path: Path, monkeypatch) -> None:
    _fake_imagenet(arch, tmp_path, monkeypatch)
    rgb = BUILDERS[arch](num_classes=1000, in_channels=3, weights="imagenet").eval()
    gray = BUILDERS[arch](num_classes=1000, in_channels=1, weights="imagenet").eval()
    assert gray.get_submodule(gray.first_conv).weight.shape[1] == 1
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want, got = rgb(x.expand(-1, 3, -1, -1)), gray(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_imagenet_loads_strictly_and_gets_a_fresh_head(arch: str, tmp_path: Path, monkeypatch) -> None:
    _, _, src = _fake_imagenet(arch, tmp_path, monkeypatch)
    net = BUILDERS[arch](num_classes=7, in_channels=3, weights="imagenet")
    head = net.head_linear
    got = net.state_dict()
    assert got[f"{head}.weight"].shape[0] == 7
    for k, v in src.items():
        if not k.startswith(head + "."):
            assert torch.equal(got[k], v), k


def test_download_happens_once_and_is_checked(tmp_path: Path, monkeypatch, no_network: Path) -> None:
    meta, origin, _ = _fake_imagenet("resnet18", tmp_path, monkeypatch, cache=False)
    calls = _serve(monkeypatch, origin.read_bytes())
    resnet18(weights="imagenet")
    resnet18(weights="imagenet")
    assert calls == [meta.url] and (no_network / meta.filename).read_bytes() == origin.read_bytes()


def test_a_corrupted_download_is_not_kept(tmp_path: Path, monkeypatch, no_network: Path) -> None:
    meta, origin, _ = _fake_imagenet("resnet18", tmp_path, monkeypatch, cache=False)
    _serve(monkeypatch, origin.read_bytes()[:-10])
    with pytest.raises(WeightsError, match=f"expected one starting with {meta.sha256}"):
        resnet18(weights="imagenet")
    assert not (no_network / meta.filename).exists()


def test_corrupted_cached_file_is_rejected(tmp_path: Path, monkeypatch, no_network: Path) -> None:
    meta, _, _ = _fake_imagenet("resnet18", tmp_path, monkeypatch)
    cached = no_network / meta.filename
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as e:
        resnet18(weights="imagenet")
    msg = str(e.value)
    assert str(cached) in msg and f"starting with {meta.sha256}" in msg
    assert hashlib.sha256(bytes(data)).hexdigest() in msg and "Delete it" in msg


def test_offline_without_cached_file_says_what_to_put_where(no_network: Path) -> None:
    meta = resnet_mod.RESNET18_IMAGENET
    with pytest.raises(WeightsError) as e:
        load_weights("imagenet", meta)
    msg = str(e.value)
    assert meta.url in msg and str(no_network / "resnet18-f37072fd.pth") in msg
    assert "name resolution" in msg and "model.weights=/path/to/resnet18-f37072fd.pth" in msg


def test_local_path_without_hash_in_name_loads(tmp_path: Path) -> None:
    torch.manual_seed(2)
    src = mobilenet_v3_small(num_classes=1000, in_channels=3)
    path = tmp_path / "my_backbone.pth"
    torch.save(src.state_dict(), path)
    net = mobilenet_v3_small(num_classes=7, in_channels=1, weights=path)
    want = src.state_dict()["features.0.0.weight"].sum(1, keepdim=True)
    assert torch.equal(net.state_dict()["features.0.0.weight"], want)


def test_local_path_with_wrong_hash_suffix_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "resnet18-deadbeef.pth"
    torch.save(resnet18(num_classes=1000, in_channels=3).state_dict(), path)
    with pytest.raises(WeightsError, match="deadbeef"):
        resnet18(weights=str(path))


def test_bad_local_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such file"):
        resnet18(weights=str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="could not read"):
        resnet18(weights=str(garbage))
    wrapped = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": resnet18().state_dict(), "epoch": 3}, wrapped)
    with pytest.raises(WeightsError, match="not a plain state_dict"):
        resnet18(weights=str(wrapped))
    other = tmp_path / "other_net.pth"
    torch.save(mobilenet_v3_small().state_dict(), other)
    with pytest.raises(WeightsError, match="does not fit ResNet"):
        resnet18(weights=str(other))


def test_two_channel_input_cannot_take_rgb_weights(tmp_path: Path) -> None:
    path = tmp_path / "rgb.pth"
    torch.save(resnet18(num_classes=1000, in_channels=3).state_dict(), path)
    with pytest.raises(WeightsError, match="in_channels=2"):
        resnet18(in_channels=2, weights=str(path))


# ---------------------------------------------------------------- preprocessing and cost


def test_backbone_config_normalises_gray_input_with_imagenet_gray_stats() -> None:
    """A gray pixel is sum(luma * rgb) (ITU-R BT.601, what cv2.COLOR_BGR2GRAY uses): its mean is the luma-weighted
    mean; the luma-weighted std is exact for perfectly correlated channels (ImageNet's nearly are) and is the scale
    under which a replicated gray image looks most like what the RGB stem saw in training."""
    from omegaconf import OmegaConf

    luma = (0.299, 0.587, 0.114)
    conf = Path(__file__).parents[1] / "src" / "mimic" / "conf"
    preprocess = OmegaConf.load(conf / "_model_backbone.yaml").preprocess
    assert preprocess.channels == 1
    assert abs(preprocess.mean[0] - sum(w * m for w, m in zip(luma, IMAGENET_MEAN))) < 1e-4
    assert abs(preprocess.std[0] - sum(w * s for w, s in zip(luma, IMAGENET_STD))) < 1e-4


@pytest.mark.parametrize(("arch", "gmacs"), [("resnet18", 1.814), ("mobilenet_v3_small", 0.057)])
def test_count_flops_matches_torchvisions_ops(arch: str, gmacs: float) -> None:
    # torchvision's "_ops" (GFLOPS as it counts them, i.e. multiply-accumulates) at 224 px, RGB, 1000 classes;
    # it also counts the SE products, which we leave out.
    net = BUILDERS[arch](num_classes=1000, in_channels=3)
    assert count_flops(net, 224, 3) / 1e9 == pytest.approx(gmacs, rel=0.05)
    assert net.training  # mode restored
