"""The export command (`mimic-export`, ``scripts/export.py``): a checkpoint as a self-describing ONNX file for
onnxruntime, OpenCV's DNN module, phones and browsers.

    mimic-export [ckpt=best.ckpt] [out=model.onnx] [tta_flip=true|false] [calibrated=true|false]
                 [int8=true data.path=/path/to/fer2013.csv [calibration=500]]

No ``ckpt``: the model bundled with mimic (`mimic.models.bundled`). The graph gives calibrated class probabilities
(flip TTA as the checkpoint says unless ``tta_flip=`` overrides it); its metadata holds the class names, the
preprocessing spec and the settings (`mimic.models.onnx_model`). An existing ``out`` is never overwritten: the file gets
a free numbered name beside it. ``int8=true`` writes an int8 model instead (default ``model-int8.onnx``), calibrated on
``calibration`` FER2013 Training faces from ``data.path`` (`mimic.models.quantize`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mimic.args import Key, boolean, parse
from mimic.cli import user_errors
from mimic.data.fer2013 import locate
from mimic.errors import UserError
from mimic.io import free_path
from mimic.models.bundled import resolve_ckpt
from mimic.models.onnx_export import export
from mimic.models.quantize import CALIBRATION_FACES, fer2013_faces, quantize

KEYS = {
    "ckpt": Key(str, None, "the checkpoint to export (default: the bundled model)"),
    "out": Key(Path, None, "the file to write (default: model.onnx, or model-int8.onnx with int8=true)"),
    "tta_flip": Key(boolean, None, "flip TTA in the graph (default: as the checkpoint says)"),
    "calibrated": Key(boolean, True, "apply the checkpoint's calibration temperature"),
    "int8": Key(boolean, False, "write an int8 model, calibrated on FER2013 Training faces from data.path"),
    "data.path": Key(str, None, "FER2013 (fer2013.csv, .csv.gz, .tar.gz or its image folders), for int8=true"),
    "calibration": Key(int, CALIBRATION_FACES, "FER2013 Training faces the int8 model is calibrated on"),
}


def main(argv: list[str] | None = None) -> None:
    """Export as the command line (``key=value`` words; default: ``sys.argv``) says."""
    with user_errors():
        args = parse(argv, KEYS, __doc__)
        if args.calibration < 1:
            raise UserError(f"calibration={args.calibration}: expected a whole number of faces, at least 1")
        if args.int8 and not args.data_path:
            raise UserError(
                "int8=true needs data.path=<FER2013: fer2013.csv, .csv.gz, .tar.gz or its image folders>: the int8 "
                "model is calibrated on real FER2013 Training faces"
            )
        asked = args.out or Path("model-int8.onnx" if args.int8 else "model.onnx")
        out = free_path(asked)
        if out != asked:
            print(f"{asked} exists: writing {out} instead (nothing is overwritten)")
        if args.int8:
            locate(args.data_path)  # a wrong path is said now, not after the export
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "model.onnx" if args.int8 else out
            card = export(resolve_ckpt(args.ckpt), fp32, args.tta_flip, args.calibrated)
            if args.int8:
                faces, _ = fer2013_faces(args.data_path, "train", card.preprocess, args.calibration)
                quantize(fp32, out, faces, "FER2013 Training faces (seeded sample)")
        print(
            f"wrote {out}: {len(card.class_names)} classes ({', '.join(card.class_names)}), input "
            f"[N, {card.preprocess.channels}, {card.preprocess.size}, {card.preprocess.size}], flip TTA "
            f"{'on' if card.tta_flip else 'off'}, temperature {card.temperature:.4g}"
            + (f", int8 (calibrated on {len(faces)} FER2013 Training faces)" if args.int8 else "")
        )
