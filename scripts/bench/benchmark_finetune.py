"""Does fine-tuning help on your faces, and what does it cost on FER2013?

    python scripts/bench/benchmark_finetune.py ckpt=outputs/.../best.ckpt folders=data/webcam \
        fer2013=../shared/data/fer2013/fer2013.csv.gz [classes=happy,sad,neutral] [epochs=6] \
        [test_fraction=0.3] [seed=0] [out=outputs/benchmark_finetune] [json=result.json] [<train override> ...]

Holds out a seeded, stratified ``test_fraction`` of the folder dataset (or uses its ``test/`` folder), fine-tunes
``ckpt`` with the real `python train.py +finetune=webcam` recipe (composed in-process; any other ``key=value`` is a
Hydra override of it, e.g. ``data.batch_size=16``)
on FER2013 merged with the rest, and reports accuracy on the held-out photos and on FER2013 PrivateTest, restricted to
the run's classes, before and after, so forgetting is visible. Before fine-tuning the FER2013 model is scored on the
run's classes only: the argmax over just those classes' logits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hydra.errors import ConfigCompositionException

from mimic.args import Key, parse, strings
from mimic.cli import user_errors
from mimic.data.folders import FolderSource
from mimic.errors import UserError
from mimic.finetune import compose_train, fer2013_test, score
from mimic.labels import canonical, remap
from mimic.train import run as train


def run(args: SimpleNamespace) -> dict:
    folders = FolderSource(
        args.folders,
        classes=args.classes,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        seed=args.seed,
        cache_dir=args.cache_dir,
    )
    classes = [canonical(c) for c in args.classes] if args.classes else list(folders.class_names)
    splits = folders.load()
    if "test" not in splits:
        raise UserError(f"{args.folders}: nothing held out; give test_fraction above 0 or a test/ folder")
    held = splits["test"]
    held_labels = remap(held.labels, folders.class_names, classes)
    keep = held_labels >= 0
    held_images = [img for img, k in zip(held.images, keep, strict=True) if k]
    held_labels = held_labels[keep]
    fer_images, fer_labels = fer2013_test(args.fer2013, classes, args.cache_dir)
    print(
        f"classes {classes}; held-out photos: {len(held_labels)} "
        f"({dict(zip(classes, np.bincount(held_labels, minlength=len(classes)).tolist(), strict=True))}); "
        f"FER2013 PrivateTest rows of these classes: {len(fer_labels)}"
    )

    out = Path(args.out).expanduser() / time.strftime("%Y-%m-%d_%H-%M-%S")
    overrides = [
        f"finetune.ckpt={Path(args.ckpt).resolve()}",
        f"data.sources.fer2013.path={Path(args.fer2013).resolve()}",
        f"data.sources.webcam.root={Path(args.folders).resolve()}",
        f"data.sources.webcam.test_fraction={args.test_fraction}",
        f"data.sources.webcam.val_fraction={args.val_fraction}",
        f"data.sources.webcam.seed={args.seed}",
        f"data.classes=[{','.join(classes)}]",
        f"paths.log_dir={out.parent}",
        *([f"trainer.max_epochs={args.epochs}"] if args.epochs else []),
        *args.extra,
    ]
    if args.cache_dir:
        overrides += [
            f"+data.sources.fer2013.cache_dir={args.cache_dir}",
            f"data.sources.webcam.cache_dir={args.cache_dir}",
        ]
    try:  # the run takes the checkpoint's net and preprocessing, whatever model= says (mimic.finetune)
        cfg = compose_train(["+finetune=webcam", *overrides], out)
    except ConfigCompositionException as e:
        raise UserError(f"a train override: {e}") from None

    before = {
        "photos": score(args.ckpt, held_images, held_labels, classes)["accuracy"],
        "fer2013": score(args.ckpt, fer_images, fer_labels, classes)["accuracy"],
    }
    start = time.perf_counter()
    results = train(cfg)
    minutes = (time.perf_counter() - start) / 60
    best = results["best_checkpoint"]
    after = {
        "photos": score(best, held_images, held_labels, classes)["accuracy"],
        "fer2013": score(best, fer_images, fer_labels, classes)["accuracy"],
    }

    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    print(f"\nfine-tuned in {minutes:.1f} min: {best}")
    print(f"  {'accuracy on':<34}{'before':>8}{'after':>8}")
    print(
        f"  {'held-out photos (' + str(len(held_labels)) + ')':<34}{fmt(before['photos']):>8}{fmt(after['photos']):>8}"
    )
    print(
        f"  {'FER2013 PrivateTest (' + str(len(fer_labels)) + ')':<34}{fmt(before['fer2013']):>8}"
        f"{fmt(after['fer2013']):>8}"
    )
    report = {
        "ckpt": str(Path(args.ckpt).resolve()),
        "folders": str(Path(args.folders).resolve()),
        "classes": classes,
        "held_out_photos": int(len(held_labels)),
        "fer2013_test_rows": int(len(fer_labels)),
        "before": before,
        "after": after,
        "finetuned_ckpt": best,
        "minutes": round(minutes, 2),
        "overrides": overrides,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


KEYS = {
    "ckpt": Key(str, None, "the FER2013 checkpoint to start from", required=True),
    "folders": Key(str, None, "the class-folder dataset to fine-tune on", required=True),
    "fer2013": Key(str, None, "fer2013.csv(.gz) or its folder: merged in, and scored on", required=True),
    "classes": Key(strings, None, "the run's classes (default: the folders' classes)"),
    "epochs": Key(int, None, "fine-tuning epochs (default: src/mimic/conf/finetune/webcam.yaml's)"),
    "test_fraction": Key(float, 0.3, "the held-out part of a pooled folder dataset"),
    "val_fraction": Key(float, 0.2, "the validation part of a pooled folder dataset"),
    "seed": Key(int, 0, "seed of the folder dataset's split"),
    "cache_dir": Key(str, None, "face-crop and FER2013 cache (default: the user cache)"),
    "out": Key(str, "outputs/benchmark_finetune", "where the fine-tuning run goes"),
    "json": Key(str, None, "also write the figures to this JSON file"),
}


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        run(parse(argv, KEYS, __doc__, extra="", extra_help="any train.yaml override (data.batch_size=16, ...)"))


if __name__ == "__main__":
    main()
