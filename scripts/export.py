"""Export a checkpoint as a self-describing ONNX file for onnxruntime, OpenCV's DNN module, phones and browsers:

    python scripts/export.py ckpt=best.ckpt [out=model.onnx] [tta_flip=true|false] [calibrated=true|false]

The graph gives calibrated class probabilities (flip TTA as the checkpoint says unless ``tta_flip=`` overrides it);
its metadata holds the class names, the preprocessing spec and the settings (`mimic.models.onnx_model`). An existing
``out`` is never overwritten: the file gets a free numbered name beside it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mimic.cli import user_errors
from mimic.errors import UserError

USAGE = "python scripts/export.py ckpt=<file.ckpt> [out=model.onnx] [tta_flip=true|false] [calibrated=true|false]"
BOOLS = {"true": True, "false": False}


def parse(argv: list[str]) -> dict[str, str]:
    args = dict(a.split("=", 1) if "=" in a else (a, None) for a in argv)
    unknown = sorted(set(args) - {"ckpt", "out", "tta_flip", "calibrated"})
    if unknown or None in args.values():
        raise UserError(f"unknown argument {(unknown or [a for a in argv if '=' not in a])[0]!r}. Usage: {USAGE}")
    if not args.get("ckpt"):
        raise UserError(f"ckpt= is required: the .ckpt file a training run printed on its last line. Usage: {USAGE}")
    for key in ("tta_flip", "calibrated"):
        if key in args and args[key].lower() not in BOOLS:
            raise UserError(f"{key}={args[key]}: expected true or false")
    return args


def main(argv: list[str]) -> None:
    with user_errors():
        from mimic.io import free_path
        from mimic.models.onnx_model import export

        args = parse(argv)
        asked = Path(args.get("out") or "model.onnx").expanduser()
        out = free_path(asked)
        if out != asked:
            print(f"{asked} exists: writing {out} instead (nothing is overwritten)")
        tta = BOOLS[args["tta_flip"].lower()] if "tta_flip" in args else None
        card = export(args["ckpt"], out, tta, BOOLS[args.get("calibrated", "true").lower()])
        print(
            f"wrote {out}: {len(card.class_names)} classes ({', '.join(card.class_names)}), input "
            f"[N, {card.preprocess.channels}, {card.preprocess.size}, {card.preprocess.size}], flip TTA "
            f"{'on' if card.tta_flip else 'off'}, temperature {card.temperature:.4g}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
