"""int8 models (`mimic.models.quantize`, `scripts/export.py int8=true`): int8 kernels in the graph, mimic's metadata
kept and marked, probabilities close to the float model's, calibration on real FER2013 faces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from mimic.data.synthetic import draw_faces
from mimic.models.onnx_export import export
from mimic.models.onnx_model import OnnxModel
from mimic.models.quantize import fer2013_faces, quantize
from mimic.preprocessing import preprocess_array

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "model.onnx"
    export(tiny_checkpoint, out)
    return out


def _faces(n: int, seed: int) -> list[np.ndarray]:
    names = ["happy", "sad", "angry", "surprise", "neutral", "fear", "disgust"]
    return list(draw_faces((names * n)[:n], 64, np.random.default_rng(seed), bgr=True))


def _int8_weights(path: Path) -> int:
    model = onnx.load(path)
    return sum(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)


def test_int8_model_keeps_the_metadata_and_the_probabilities(fp32, tmp_path):
    float_model = OnnxModel(fp32)
    spec = float_model.card.preprocess
    out = tmp_path / "int8.onnx"
    info = quantize(fp32, out, preprocess_array(_faces(64, 0), spec), "synthetic faces")
    int8 = OnnxModel(out)
    assert int8.card == float_model.card and float_model.quantization is None
    assert int8.quantization == info and info["calibration"] == "MinMax on 64 synthetic faces"
    assert _int8_weights(out) >= 4 and _int8_weights(fp32) == 0  # every conv and linear layer
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert "AveragePool" in {node.op_type for node in onnx.load(fp32).graph.node} and "AveragePool" not in ops
    x = preprocess_array(_faces(16, 1), spec)
    want, got = float_model(x), int8(x)
    assert got.shape == want.shape and np.allclose(got.sum(1), 1, atol=1e-5)
    assert 0 < np.abs(got - want).max() < 0.05
    assert all(len(set(row)) == len(row) for row in got.tolist())  # float logits: no two classes tie


@pytest.mark.slow
def test_export_int8_calibrates_on_fer2013(tiny_checkpoint, shared_data, tmp_path):
    folders = shared_data / "fer2013_folders_sample"
    if not folders.is_dir():
        pytest.skip(f"{folders} not found")
    command = [sys.executable, "scripts/export.py", f"ckpt={tiny_checkpoint}", "int8=true", f"out={tmp_path}/q.onnx"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "int8=true needs data.path=" in proc.stderr, proc.stderr
    proc = subprocess.run(
        [*command, f"data.path={folders}", "calibration=40"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "int8 (calibrated on 40 FER2013 Training faces)" in proc.stdout
    model = OnnxModel(tmp_path / "q.onnx")
    assert model.quantization["calibration"] == "MinMax on 40 FER2013 Training faces (seeded sample)"
    assert _int8_weights(tmp_path / "q.onnx") >= 4
    faces, labels = fer2013_faces(folders, "test", model.card.preprocess)
    assert faces.shape == (len(labels), 1, 48, 48) and len(labels) == 84
    assert np.allclose(model(faces).sum(1), 1, atol=1e-5)
