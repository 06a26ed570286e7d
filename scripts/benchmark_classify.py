"""Per-face classify time, PyTorch against onnxruntime, 1 and 2 threads, batches of 1 and 4:

    python scripts/benchmark_classify.py ckpt=best.ckpt [repeats=300]

Both run the checkpoint's whole inference (flip TTA and temperature as it says) on the same preprocessed faces, through
`mimic.realtime.predictor.Predictor`; the ONNX file is exported into a temporary folder first.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mimic.cli import user_errors
from mimic.models.onnx_model import OnnxModel, export
from mimic.preprocessing import preprocess_array
from mimic.realtime.predictor import Predictor


def per_face_ms(run, x: np.ndarray, repeats: int) -> float:
    for _ in range(20):
        run(x)
    t = time.perf_counter()
    for _ in range(repeats):
        run(x)
    return (time.perf_counter() - t) / repeats / len(x) * 1e3


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    ckpt, repeats = Path(args["ckpt"]), int(args.get("repeats", 300))
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        card = export(ckpt, onnx_path)
        faces = [np.random.default_rng(i).integers(0, 256, (64, 64), dtype=np.uint8) for i in range(4)]
        print(f"{ckpt.name}: {card.net['_target_'].rsplit('.', 1)[-1]}, flip TTA {card.tta_flip}, ms per face")
        print("backend       threads  batch 1  batch 4")
        for threads in (1, 2):
            for name, run in (
                ("pytorch", Predictor(ckpt, threads=threads)._run),
                ("onnxruntime", OnnxModel(onnx_path, threads)),
            ):
                ms = [per_face_ms(run, preprocess_array(faces[:n], card.preprocess), repeats) for n in (1, 4)]
                print(f"{name:<13} {threads:<8} {ms[0]:<8.3f} {ms[1]:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
