"""int8 models: onnxruntime's static quantisation of an exported mimic model, calibrated on real FER2013 faces.

    python scripts/export.py ckpt=best.ckpt int8=true data.path=/path/to/fer2013.csv

Calibration runs the float graph on a seeded sample of FER2013 Training faces, prepared by the one preprocessing
path (`mimic.preprocessing.preprocess_array`, as evaluation prepares them), on the CPU and offline, and records each
tensor's range. The weights of convolutions and fully connected layers become int8 (per output channel), their
inputs uint8 (the x86 choice with VNNI, onnxruntime's advice), in QDQ form, which onnxruntime runs as int8 kernels.
The last layer, which gives the logits, and what follows (flip-TTA average, temperature, softmax) stay float, so the
probabilities keep their resolution and no two classes tie. The file keeps mimic's metadata, plus ``quantization``
(JSON: what was quantised and how it was calibrated).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from mimic.data.fer2013 import FER2013Source
from mimic.io import atomic_write
from mimic.models.onnx_model import INPUT
from mimic.preprocessing import PreprocessSpec, preprocess_array

QUANTIZED_OPS = ["Conv", "Gemm", "MaxPool", "AveragePool", "Relu"]  # Relu: folded into the int8 convolutions
CALIBRATION_FACES = 500


def fer2013_faces(
    path: str | os.PathLike, split: str, spec: PreprocessSpec, n: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """FER2013's ``split`` (train, val or test) prepared as ``spec`` says: faces float32 (N, C, H, W) and labels
    (FER2013's index order); ``n``: a seeded random sample of that many, in file order."""
    data = FER2013Source(path).load()[split]
    index = np.arange(len(data)) if n is None else np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
    return preprocess_array([data.images[i] for i in index], spec), data.labels[index]


def _drop_identity_pools(graph) -> None:
    """Remove average pools of a 1x1 kernel, stride 1 and no padding (small_cnn's adaptive pool at the size it was
    built for), which copy their input: int8, onnxruntime runs them as a costly layout change."""
    for node in list(graph.node):
        a = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
        identity = set(a.get("kernel_shape", [0])) | set(a.get("strides", [1])) == {1} and not any(a.get("pads", []))
        if node.op_type != "AveragePool" or not identity or node.output[0] in {o.name for o in graph.output}:
            continue
        for other in graph.node:
            other.input[:] = [node.input[0] if name == node.output[0] else name for name in other.input]
        graph.node.remove(node)


def quantize(fp32: str | os.PathLike, out: str | os.PathLike, faces: np.ndarray, about: str, batch: int = 32) -> dict:
    """Write the exported float model ``fp32`` as an int8 model at ``out`` (replaced whole), calibrated on
    ``faces`` (preprocessed, (N, C, H, W)); ``about`` names them in the metadata. Returns the ``quantization``
    metadata."""

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(faces, max(1, len(faces) // batch)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.batches, None)
            return None if x is None else {INPUT: np.ascontiguousarray(x, np.float32)}

    info = {
        "weights": "int8, per output channel; the logits' layer float",
        "activations": "uint8",
        "format": "QDQ",
        "ops": QUANTIZED_OPS,
        "calibration": f"MinMax on {len(faces)} {about}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared))  # shape inference; BatchNorm folded into the convolutions
        model = onnx.load(str(prepared))
        _drop_identity_pools(model.graph)
        onnx.save(model, str(prepared))
        logits = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul")][-1:]
        quantize_static(
            str(prepared),
            str(quantized),
            Faces(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=logits,  # uint8 logits would tie classes and coarsen every probability
        )
        model = onnx.load(str(quantized))
    meta = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**meta, "quantization": json.dumps(info)})
    atomic_write(out, lambda tmp: onnx.save(model, str(tmp)))
    return info
