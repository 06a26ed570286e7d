"""Training and evaluation throughput of a model on this machine, through the full path and a bare PyTorch loop.

    python scripts/bench/benchmark_train.py [data=PATH_TO_FER2013] [steps=40] [batch_size=128] [widths=32,64,128]
                                            [threads=N]

Full path: Lightning Trainer + EmotionDataModule + albumentations augmentation (the default FER2013 recipe's
transforms). Its data wait is the time between one training batch ending and the next starting (fetching,
augmenting, collating), as a share of the whole step. Bare loop: the same net and batch size over in-memory tensors,
no Lightning, no augmentation, timed in the same process. Precision and memory format are tried in the bare loop;
the trainer runs at the default config's precision.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mimic.args import Key, integers, parse
from mimic.cli import user_errors
from mimic.data.datamodule import EmotionDataModule
from mimic.data.fer2013 import FER2013Source
from mimic.data.synthetic import SyntheticSource
from mimic.errors import UserError
from mimic.labels import FER2013_CLASSES
from mimic.models.classifier import EmotionClassifier

REPO = Path(__file__).resolve().parents[2]


class StepTimer(L.Callback):
    """Wall time of every training step, and the part of it spent waiting for the batch."""

    def __init__(self, skip: int = 3) -> None:
        self.skip, self.steps, self.waits, self._end, self._start = skip, [], [], None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._end is not None and batch_idx >= self.skip:
            self.waits.append(now - self._end)
        self._start = now

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if batch_idx >= self.skip and self._end is not None:
            self.steps.append(now - self._end)
        self._end = now


def make_model(widths: list[int], channels_last: bool) -> EmotionClassifier:
    return EmotionClassifier(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": widths},
        class_names=list(FER2013_CLASSES),
        preprocess={"size": 48, "channels": 1, "mean": [0.5], "std": [0.5]},
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01, "momentum": 0.9},
        channels_last=channels_last,
        log_images=False,
    )


def datamodule(data: str | None, batch_size: int) -> EmotionDataModule:
    recipe = OmegaConf.load(REPO / "src" / "mimic" / "conf" / "data" / "fer2013.yaml")
    augment = [instantiate(t) for t in recipe.data.augment]
    if data:
        source = {"fer2013": FER2013Source(data)}
    else:
        source = {"synthetic": SyntheticSource(n_train=6000, n_val=600, n_test=10)}
    return EmotionDataModule(source, list(FER2013_CLASSES), batch_size=batch_size, augment=augment)


def full_path(dm, widths, steps, precision) -> dict:
    timer = StepTimer()
    model = make_model(widths, channels_last=True)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=dm)
    step, wait = statistics.median(timer.steps), sum(timer.waits) / sum(timer.steps)
    return {"images/s": dm.batch_size / step, "data wait": wait, "model": model}


def bare_loop(widths, steps, batch_size, precision: str, channels_last: bool) -> float:
    model = make_model(widths, channels_last).net.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 1, 48, 48)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    y = torch.randint(0, 7, (batch_size,))
    times = []
    for i in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return batch_size / statistics.median(times)


@torch.inference_mode()
def eval_throughput(model: EmotionClassifier, dm: EmotionDataModule, tta: bool) -> float:
    model.eval()
    model.hparams.tta_flip = tta
    n, t = 0, time.perf_counter()
    for x, *_ in dm.val_dataloader():
        model(x)
        n += len(x)
    return n / (time.perf_counter() - t)


KEYS = {
    "data": Key(str, None, "FER2013 csv/csv.gz/tar.gz or folder (default: synthetic faces)"),
    "steps": Key(int, 40, "training steps per case (the first 3 not timed)"),
    "batch_size": Key(int, 128, "training batch"),
    "widths": Key(integers, [32, 64, 128], "small_cnn's three stage widths"),
    "threads": Key(int, None, "torch threads (default: torch's)"),
}


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        if len(args.widths) != 3:
            raise UserError(f"widths={','.join(map(str, args.widths))}: give three widths, e.g. widths=32,64,128")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dm = datamodule(args.data, args.batch_size)
    dm.setup("fit")
    print(
        f"small_cnn widths {args.widths}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"{args.steps} steps each (first 3 not timed), data: {args.data or 'synthetic'}"
    )
    bare = {}
    for precision, cl in [("32-true", True), ("32-true", False), ("bf16-mixed", True)]:
        bare[(precision, cl)] = bare_loop(args.widths, args.steps, args.batch_size, precision, cl)
        print(f"bare loop        {precision:<10} channels_last={cl!s:<5} {bare[(precision, cl)]:7.1f} images/s")
    full = full_path(dm, args.widths, args.steps, "32-true")
    ref = bare[("32-true", True)]
    print(
        f"full path        32-true    channels_last=True  {full['images/s']:7.1f} images/s "
        f"= {full['images/s'] / ref:.1%} of the bare loop; data wait {full['data wait']:.1%} of step time"
    )
    for tta in (False, True):
        print(
            f"evaluation       tta_flip={tta!s:<5}                 "
            f"{eval_throughput(full['model'], dm, tta):7.1f} images/s"
        )


if __name__ == "__main__":
    main()
