"""Export a checkpoint as a self-describing ONNX file for onnxruntime, OpenCV's DNN module, phones and browsers:

    python scripts/export.py [ckpt=best.ckpt] [out=model.onnx] [tta_flip=true|false] [calibrated=true|false]
                             [int8=true data.path=/path/to/fer2013.csv [calibration=500]]

No ``ckpt``: the model bundled with mimic (`mimic.models.bundled`).

The graph gives calibrated class probabilities (flip TTA as the checkpoint says unless ``tta_flip=`` overrides it);
its metadata holds the class names, the preprocessing spec and the settings (`mimic.models.onnx_model`). An existing
``out`` is never overwritten: the file gets a free numbered name beside it. ``int8=true`` writes an int8 model
instead (default ``model-int8.onnx``), calibrated on ``calibration`` FER2013 Training faces from ``data.path``
(`mimic.models.quantize`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mimic.cli import user_errors
from mimic.errors import UserError

USAGE = (
    "python scripts/export.py [ckpt=<file.ckpt>] [out=model.onnx] [tta_flip=true|false] [calibrated=true|false] "
    "[int8=true data.path=<fer2013.csv> [calibration=500]]"
)
KEYS = {"ckpt", "out", "tta_flip", "calibrated", "int8", "data.path", "calibration"}
BOOLS = {"true": True, "false": False}


def parse(argv: list[str]) -> dict[str, str]:
    args = dict(a.split("=", 1) if "=" in a else (a, None) for a in argv)
    unknown = sorted(set(args) - KEYS)
    if unknown or None in args.values():
        raise UserError(f"unknown argument {(unknown or [a for a in argv if '=' not in a])[0]!r}. Usage: {USAGE}")
    for key in ("tta_flip", "calibrated", "int8"):
        if key in args and args[key].lower() not in BOOLS:
            raise UserError(f"{key}={args[key]}: expected true or false")
    if not args.get("calibration", "1").isdigit() or int(args.get("calibration", "1")) < 1:
        raise UserError(f"calibration={args['calibration']}: expected a whole number of faces, at least 1")
    if BOOLS[args.get("int8", "false").lower()] and not args.get("data.path"):
        raise UserError(
            "int8=true needs data.path=<FER2013: fer2013.csv, .csv.gz, .tar.gz or its image folders>: the int8 "
            f"model is calibrated on real FER2013 Training faces. Usage: {USAGE}"
        )
    return args


def main(argv: list[str]) -> None:
    with user_errors():
        from mimic.io import free_path
        from mimic.models.bundled import resolve_ckpt
        from mimic.models.onnx_model import export

        args = parse(argv)
        int8 = BOOLS[args.get("int8", "false").lower()]
        asked = Path(args.get("out") or ("model-int8.onnx" if int8 else "model.onnx")).expanduser()
        out = free_path(asked)
        if out != asked:
            print(f"{asked} exists: writing {out} instead (nothing is overwritten)")
        tta = BOOLS[args["tta_flip"].lower()] if "tta_flip" in args else None
        calibrated = BOOLS[args.get("calibrated", "true").lower()]
        if int8:
            from mimic.data.fer2013 import locate

            locate(args["data.path"])  # a wrong path is said now, not after the export
        with tempfile.TemporaryDirectory() as tmp:
            card = export(resolve_ckpt(args.get("ckpt")), Path(tmp) / "model.onnx" if int8 else out, tta, calibrated)
            if int8:
                from mimic.models.quantize import CALIBRATION_FACES, fer2013_faces, quantize

                n = int(args.get("calibration", CALIBRATION_FACES))
                faces, _ = fer2013_faces(args["data.path"], "train", card.preprocess, n)
                quantize(Path(tmp) / "model.onnx", out, faces, "FER2013 Training faces (seeded sample)")
        print(
            f"wrote {out}: {len(card.class_names)} classes ({', '.join(card.class_names)}), input "
            f"[N, {card.preprocess.channels}, {card.preprocess.size}, {card.preprocess.size}], flip TTA "
            f"{'on' if card.tta_flip else 'off'}, temperature {card.temperature:.4g}"
            + (f", int8 (calibrated on {len(faces)} FER2013 Training faces)" if int8 else "")
        )


if __name__ == "__main__":
    main(sys.argv[1:])
