"""Pretrained ImageNet weights for the backbones: where each file comes from, how it is checked, how a net takes it.

A builder's ``weights`` argument is ``None`` (random init), ``"imagenet"`` (torchvision's published file, downloaded
once into the torch hub cache, ``torch.hub.get_dir()/checkpoints``) or a path to a local ``.pth`` state_dict.

The sha256 is checked every time the file is read, also when it was already in the cache (torch.hub only checks
right after a download). torchvision puts the first 8 hex digits of each file's sha256 in its name
(``resnet18-f37072fd.pth``); that prefix is what ``WeightsMeta.sha256`` holds and what is compared, the same check
``torch.hub`` makes with ``check_hash=True``. A full digest works too (the comparison is a prefix match).

Grayscale nets (``in_channels=1``) take the RGB stem filters summed over the colour axis (`adapt_first_conv`).
Their inputs should then be normalised with ImageNet's statistics seen through the gray conversion's luma weights,
which conf/_model_backbone.yaml holds (the one place; tests/test_backbones.py derives them from the figures here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mimic.errors import UserError
from mimic.io import download, sha256_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torch.hub's convention: "<name>-<hex>.<ext>" where <hex> starts the file's sha256. We ask for 8+ hex digits.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


class WeightsError(UserError, ValueError):
    """A pretrained-weights file that is missing, corrupted, or does not fit the net."""


@dataclass(frozen=True)
class WeightsMeta:
    """One published weights file and what its net expects.

    url: torchvision's download URL; its file name is the cache file name. sha256: the hex prefix torchvision puts in
    that name (8 digits), or a full digest. input_size: the training / eval crop side; resize_size: the side images
    are resized to before that crop at eval. mean/std: RGB normalisation on [0, 1] pixels. num_params: of the 1000-class
    net, as torchvision publishes it. top1: ImageNet-1k top-1 accuracy at 224 px.
    """

    url: str
    sha256: str
    input_size: int
    resize_size: int
    num_params: int
    top1: float
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    notes: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def hub_checkpoint_dir() -> Path:
    """Where ``torch.hub`` keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def verify_sha256(path: Path, expected: str, advice: str) -> None:
    """Raise `WeightsError` unless the file's sha256 starts with ``expected``; ``advice`` says what to do then."""
    got = sha256_file(path)
    if not got.startswith(expected.lower()):
        raise WeightsError(
            f"{path} is corrupted or not the expected file: its sha256 is {got}, expected one starting with "
            f"{expected}. {advice}"
        )


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, a pickle with code in it, not a torch file at all, ...
        raise WeightsError(f"could not read {path} as a PyTorch state_dict: {e}") from None
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise WeightsError(
            f"{path} is not a plain state_dict (a mapping of parameter names to tensors, like torchvision's "
            f"resnet18-f37072fd.pth). A mimic / Lightning checkpoint is fine-tuned from with +finetune=..., "
            f"not loaded as model.weights."
        )
    return dict(sd)


def _fetch(meta: WeightsMeta, path: Path) -> None:
    """Download ``meta``'s file to ``path`` and check it; a corrupted download is removed."""
    try:
        download(meta.url, path, what=f"ImageNet weights {meta.filename}")
    except UserError as e:
        raise WeightsError(
            f"model.weights=imagenet needs {meta.filename}, which is not in the torch hub cache: {e} Keep its name "
            f"({path}), or point model.weights at the file: model.weights=/path/to/{meta.filename}."
        ) from None
    try:
        verify_sha256(path, meta.sha256, "Run again to download it afresh.")
    except WeightsError:
        path.unlink()
        raise


def load_weights(spec: str | Path, meta: WeightsMeta, cache_dir: Path | None = None) -> dict[str, Tensor]:
    """The state_dict ``spec`` names: ``"imagenet"`` (``<cache_dir or hub_checkpoint_dir()>/<meta.filename>``,
    downloaded once, sha256-checked on every call) or a local ``.pth`` path (checked against the hash in its name
    when it has a torch.hub-style ``-<8+ hex digits>`` suffix). Read with ``torch.load(weights_only=True)``."""
    if str(spec) == "imagenet":
        path = Path(cache_dir or hub_checkpoint_dir()) / meta.filename
        if not path.is_file():
            _fetch(meta, path)
        else:
            verify_sha256(
                path,
                meta.sha256,
                f"Delete it and run again to download it afresh, or put the right file there ({meta.url}).",
            )
        return _read_state_dict(path)

    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"model.weights={spec}: no such file. Give a local .pth state_dict, 'imagenet' for torchvision's "
            f"{meta.filename}, or null for random initialisation."
        )
    m = _HASH_IN_NAME.search(path.name)
    if m:
        verify_sha256(
            path,
            m.group(1),
            f"By torch.hub's convention the '-{m.group(1)}' in its name is the start of its sha256: replace the "
            f"file with an intact copy, or rename it if that part of the name is not a hash.",
        )
    return _read_state_dict(path)


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Fit pretrained RGB stem filters (out, 3, k, k) to a net with ``in_channels`` inputs.

    For one channel the filters are summed over RGB. A gray image replicated into 3 channels gives exactly the
    same stem response as the summed filter on the gray image (the conv is linear), so the pretrained filters keep
    their response and every later layer, BatchNorm statistics included, sees activations of the scale it was
    trained on; averaging instead would shrink them by 3. Replicating the channel at the input would be the same
    function at three times the stem's input cost. The inputs should be normalised as conf/_model_backbone.yaml says.
    """
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1 and weight.shape[1] == 3:
        return weight.sum(dim=1, keepdim=True)
    raise WeightsError(
        f"pretrained stem takes {weight.shape[1]} channels; only 1 (grayscale) or {weight.shape[1]} can be adapted, "
        f"got in_channels={in_channels}"
    )


def load_pretrained(net: nn.Module, spec: str | Path, meta: WeightsMeta) -> None:
    """Load ``spec`` (see `load_weights`) into a backbone strictly, adapting its stem to the net's input channels.

    The net must name its stem conv ``first_conv`` and its last Linear ``head_linear`` and have ``reset_head``.
    When the file's classifier has another number of classes than the net (ImageNet's 1000 vs our 7), every tensor
    but that classifier's loads strictly and the net gets a fresh classifier for its own classes; when it fits
    (a state_dict saved from this net) everything loads, classifier included.
    """
    sd = load_weights(spec, meta)
    stem_key = f"{net.first_conv}.weight"
    in_channels = net.get_submodule(net.first_conv).in_channels
    if stem_key in sd:
        sd[stem_key] = adapt_first_conv(sd[stem_key], in_channels)
    head = net.get_submodule(net.head_linear)
    head_keys = {f"{net.head_linear}.weight", f"{net.head_linear}.bias"}
    fresh_head = f"{net.head_linear}.weight" in sd and sd[f"{net.head_linear}.weight"].shape != head.weight.shape
    if fresh_head:
        sd = {k: v for k, v in sd.items() if k not in head_keys}
    try:
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise WeightsError(f"model.weights={spec} does not fit {type(net).__name__}: {e}") from None
    if fresh_head:
        missing = [k for k in missing if k not in head_keys]
    if missing or unexpected:
        raise WeightsError(
            f"model.weights={spec} does not fit {type(net).__name__}: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}"
        )
    if fresh_head:
        net.reset_head(head.out_features)


def _few(keys: list[str], n: int = 5) -> str:
    return "[" + ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "") + "]"


def count_flops(net: nn.Module, input_size: int, in_channels: int) -> int:
    """Multiply-accumulates of one forward pass on a (1, in_channels, size, size) input, from Conv2d and Linear.

    Counted with forward hooks: a conv costs out_elements * in_channels / groups * kh * kw, a Linear in * out.
    BatchNorm, activations, pooling and the SE product are left out (they are a few percent at most).
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return total
