"""Parameters, MACs, training images/s and per-face inference latency of every model config, on this machine.

    python scripts/bench/benchmark_backbones.py [models=small_cnn,resnet18,...] [batch_size=32] [steps=5]
                                                [latency_repeats=50] [threads=N]

Each model is built from its src/mimic/conf/model/ config (random weights: speed does not depend on them) at the input
size its config sets. Per-face latency is one face through the model (batch 1, no autograd), without and with
flip test-time augmentation, median and p95 of repeated calls: the classify cost per face in the realtime app.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mimic.args import Key, parse, strings
from mimic.cli import user_errors
from mimic.errors import UserError
from mimic.labels import FER2013_CLASSES
from mimic.models.weights import count_flops

CONF = Path(__file__).resolve().parents[2] / "src" / "mimic" / "conf" / "model"
MODELS = ["small_cnn", "small_cnn_lite", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet50"]


def build(name: str):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for base in [d for d in cfg.pop("defaults", []) if d != "_self_"]:
        cfg = OmegaConf.merge(OmegaConf.load(CONF / f"{base}.yaml"), cfg)
    cfg.class_names = list(FER2013_CLASSES)
    if "weights" in cfg:
        cfg.weights = None
    cfg.log_images = False
    return instantiate(cfg, _recursive_=False)


def timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(name: str, args: SimpleNamespace) -> None:
    """Print one model's row of the table."""
    model = build(name)
    spec, net = model.spec, model.net
    params = sum(p.numel() for p in net.parameters())
    macs = count_flops(net, spec.size, spec.channels)
    x = torch.randn(args.batch_size, spec.channels, spec.size, spec.size)
    y = torch.randint(0, len(FER2013_CLASSES), (args.batch_size,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train = args.batch_size / statistics.median(timed(step, args.steps))
    model.eval()
    face = torch.randn(1, spec.channels, spec.size, spec.size)
    lat = {}
    for tta in (False, True):
        model.hparams.tta_flip = tta
        with torch.inference_mode():
            ts = sorted(timed(lambda: model(face), args.latency_repeats, warmup=5))
        lat[tta] = (statistics.median(ts) * 1e3, ts[int(0.95 * (len(ts) - 1))] * 1e3)
    print(
        f"{name:<20}{spec.size:>5}px{params / 1e6:>9.2f}M{macs / 1e6:>9.1f}{train:>13.1f}"
        f"{lat[False][0]:>9.2f} ({lat[False][1]:.2f}){lat[True][0]:>10.2f}",
        flush=True,
    )


KEYS = {
    "models": Key(strings, MODELS, "model configs to measure"),
    "batch_size": Key(int, 32, "training batch"),
    "steps": Key(int, 5, "timed training steps"),
    "latency_repeats": Key(int, 50, "timed one-face calls"),
    "threads": Key(int, None, "torch threads (default: torch's)"),
}


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        unknown = [m for m in args.models if not (CONF / f"{m}.yaml").is_file()]
        if unknown:
            raise UserError(f"models={','.join(unknown)}: no such model config in {CONF}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads, batch {args.batch_size} for training, batch 1 for latency")
    print(
        f"{'model':<20}{'input':>7}{'params':>10}{'MMACs':>9}{'train img/s':>13}{'face ms (p95)':>16}{'+flip ms':>10}"
    )
    for name in args.models:
        measure(name, args)


if __name__ == "__main__":
    main()
