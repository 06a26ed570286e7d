"""Per-face classify time, PyTorch against onnxruntime (float and int8), 1 and 2 threads, batches of 1 and 4, and,
given FER2013, the PrivateTest accuracy of the float and the int8 model:

    python scripts/bench/benchmark_classify.py [ckpt=best.ckpt] [data.path=/path/to/fer2013.csv]
                                               [tta_flip=true|false] [repeats=300] [calibration=500]

Every model runs the checkpoint's whole inference (flip TTA, which doubles the cost, unless ``tta_flip=false``, and
temperature) on the same preprocessed faces: PyTorch through `mimic.models.predictor.Predictor`, onnxruntime on the
checkpoint's export, and, when ``data.path`` names FER2013, on its int8 model calibrated on ``calibration`` Training
faces as ``scripts/export.py int8=true`` makes it (`mimic.models.quantize`). No ``ckpt``: the bundled model.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from mimic.args import Key, boolean, parse
from mimic.cli import user_errors
from mimic.models.bundled import resolve_ckpt
from mimic.models.onnx_export import export
from mimic.models.onnx_model import OnnxModel
from mimic.models.predictor import Predictor
from mimic.models.quantize import CALIBRATION_FACES, fer2013_faces, quantize
from mimic.preprocessing import preprocess_array


def per_face_ms(run, x: np.ndarray, repeats: int) -> float:
    for _ in range(20):
        run(x)
    t = time.perf_counter()
    for _ in range(repeats):
        run(x)
    return (time.perf_counter() - t) / repeats / len(x) * 1e3


def accuracy(model: OnnxModel, faces: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    predicted = np.concatenate([model(faces[i : i + 256]).argmax(1) for i in range(0, len(faces), 256)])
    return float((predicted == labels).mean()), predicted


KEYS = {
    "ckpt": Key(str, None, "the checkpoint (default: the bundled model)"),
    "data.path": Key(str, None, "FER2013: also time the int8 model and compare accuracies on PrivateTest"),
    "tta_flip": Key(boolean, None, "flip TTA (default: as the checkpoint says)"),
    "repeats": Key(int, 300, "timed calls per case"),
    "calibration": Key(int, CALIBRATION_FACES, "FER2013 Training faces the int8 model is calibrated on"),
}


def main(argv: list[str] | None = None) -> None:
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        args = parse(argv, KEYS, __doc__)
        repeats, data, tta = args.repeats, args.data_path, args.tta_flip
        ckpt = resolve_ckpt(args.ckpt)
        fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / "model-int8.onnx"
        card = export(ckpt, fp32, tta)
        spec = card.preprocess
        models = {
            "pytorch": lambda threads: Predictor(ckpt, threads, tta)._run,
            "onnxruntime": lambda threads: OnnxModel(fp32, threads),
        }
        if data:
            train_faces = fer2013_faces(data, "train", spec, args.calibration)[0]
            quantize(fp32, int8, train_faces, "FER2013 Training faces (seeded sample)")
            models["onnxruntime int8"] = lambda threads: OnnxModel(int8, threads)
        faces = [np.random.default_rng(i).integers(0, 256, (64, 64), dtype=np.uint8) for i in range(4)]
        print(f"{ckpt.name}: {card.net['_target_'].rsplit('.', 1)[-1]}, flip TTA {card.tta_flip}, ms per face")
        print("backend            threads  batch 1  batch 4")
        for threads in (1, 2):
            for name, make in models.items():
                run = make(threads)
                ms = [per_face_ms(run, preprocess_array(faces[:n], spec), repeats) for n in (1, 4)]
                print(f"{name:<18} {threads:<8} {ms[0]:<8.3f} {ms[1]:.3f}")
        if data:
            x, y = fer2013_faces(data, "test", spec)
            (acc32, p32), (acc8, p8) = accuracy(OnnxModel(fp32), x, y), accuracy(OnnxModel(int8), x, y)
            print(
                f"PrivateTest accuracy ({len(y)} faces): float {acc32:.4f}, int8 {acc8:.4f} "
                f"({100 * (acc8 - acc32):+.2f} points); the two agree on {np.mean(p32 == p8):.4f} of the faces"
            )


if __name__ == "__main__":
    main()
