"""Exported ONNX models (`scripts/export.py`, `mimic.models.onnx_model`): the same probabilities as the checkpoint,
self-describing metadata read through the checkpoint's checks, clear errors for foreign and damaged files, and
`realtime.py` on onnxruntime without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from mimic.errors import UserError
from mimic.models import CheckpointError, read_card
from mimic.models.onnx_model import OnnxModel, export, read_onnx_card
from mimic.preprocessing import preprocess_array
from mimic.realtime.predictor import Predictor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sharp(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with flip TTA on and a small temperature, so both are exercised and differences show."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["tta_flip"] = True
    ckpt["state_dict"]["temperature"] = torch.tensor(0.2)
    path = tmp_path_factory.mktemp("sharp") / "sharp.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def exported(sharp) -> Path:
    out = sharp.with_suffix(".onnx")
    export(sharp, out)
    return out


@pytest.fixture(scope="module")
def faces(request) -> list[np.ndarray]:
    """Real FER2013 faces from the shared sample when present, synthetic faces otherwise."""
    try:
        root = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        root = None
    files = sorted((root / "fer2013_folders_sample" / "test").glob("*/*.jpg"))[:8] if root else []
    if files:
        return [cv2.imread(str(f)) for f in files]
    from mimic.data.synthetic import draw_faces

    return list(draw_faces(["happy", "sad", "angry", "surprise"] * 2, 64, np.random.default_rng(0), bgr=True))


def test_the_graph_gives_the_checkpoints_probabilities(sharp, exported, faces):
    torch_predictor, onnx_model = Predictor(sharp), OnnxModel(exported)
    for n in (1, 4):
        crops = faces[:n]
        want = torch_predictor.predict_crops(crops)
        got = onnx_model(preprocess_array(crops, torch_predictor.spec))
        assert got.shape == (n, 7) and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-4
    assert want.max() > 0.2  # a temperature of 0.2 sharpens: the comparison is not of flat uniform outputs


def test_the_metadata_carries_the_checkpoints_card(sharp, exported):
    card, _ = read_card(sharp)
    assert read_onnx_card(exported) == card
    meta = {p.key: json.loads(p.value) for p in onnx.load(exported).metadata_props}
    assert meta["mimic_model"] == 1 and meta["class_names"] == card.class_names
    assert meta["preprocess"] == card.preprocess.to_dict() and meta["preprocess"]["framing"] == "box"
    assert meta["tta_flip"] is True and meta["temperature"] == pytest.approx(0.2)


def test_export_script_never_overwrites(sharp, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"mine")
    proc = subprocess.run(
        [sys.executable, "scripts/export.py", f"ckpt={sharp}", f"out={out}", "tta_flip=false"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == b"mine" and "model-1.onnx" in proc.stdout
    card = read_onnx_card(tmp_path / "model-1.onnx")
    assert card.tta_flip is False and card.temperature == pytest.approx(0.2)


def _with_metadata(src: Path, dst: Path, **changes: str | None) -> Path:
    model = onnx.load(src)
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update(changes)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {k: v for k, v in meta.items() if v is not None})
    onnx.save(model, dst)
    return dst


def test_bad_onnx_files_are_clear_errors(exported, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 7])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 7])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), foreign)
    hydra = json.dumps({"_target_": "mimic.models.small_cnn.small_cnn", "hidden": {"_target_": "os.system"}})
    cases = {
        "missing": (tmp_path / "nope.onnx", "model file not found"),
        "junk": (junk, "is not an ONNX model onnxruntime opens"),
        "foreign": (foreign, "an ONNX model without mimic's metadata"),
        "format": ({"mimic_model": "2"}, "this mimic reads format 1"),
        "lacks": ({"preprocess": None}, "metadata lacks preprocess"),
        "not json": ({"class_names": "[angry"}, "metadata.class_names is not JSON text"),
        "names": ({"class_names": "[1, 2, 3, 4, 5, 6, 7]"}, "class_names must be a list of class names"),
        "spec type": ({"preprocess": json.dumps({"size": "48"})}, "preprocess.size must be a whole number"),
        "spec key": ({"preprocess": json.dumps({"evil": 1})}, "preprocess has unknown settings ['evil']"),
        "hydra": ({"net": hydra}, "net.hidden._target_ = 'os.system': refused"),
        "temperature": ({"temperature": "-1"}, "metadata.temperature must be one positive number"),
        "tta": ({"tta_flip": '"yes"'}, "tta_flip must be true or false"),
        "shape": ({"class_names": json.dumps(["happy", "sad"])}, "do not fit its metadata"),
    }
    for name, (changes, message) in cases.items():
        path = changes if isinstance(changes, Path) else _with_metadata(exported, tmp_path / f"{name}.onnx", **changes)
        for open_ in (read_onnx_card, Predictor):
            with pytest.raises(CheckpointError) as e:
                open_(path)
            assert message in str(e.value) and str(path) in str(e.value), (name, str(e.value))


def test_settings_baked_into_the_graph_are_not_silently_ignored(exported):
    with pytest.raises(UserError, match="tta_flip=false"):
        Predictor(exported, tta_flip=False)
    with pytest.raises(UserError, match="calibrated=false"):
        Predictor(exported, calibrated=False)
    assert Predictor(exported, tta_flip=True).backend == "onnx"


def test_fine_tuning_needs_the_checkpoint(exported):
    from mimic.finetune import resolve_checkpoint

    path, _ = resolve_checkpoint(exported, "logs")
    with pytest.raises(CheckpointError, match="exported ONNX model: it holds no training state"):
        read_card(path)


def test_backend_onnx_exports_a_checkpoint_once(sharp, faces, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path))
    p = Predictor(sharp, threads=1, backend="onnx")
    cached = list((tmp_path / "onnx").glob("*.onnx"))
    assert p.backend == "onnx" and len(cached) == 1
    np.testing.assert_allclose(p.predict_crops(faces[:4]), Predictor(sharp).predict_crops(faces[:4]), atol=1e-4)
    stamp = cached[0].stat().st_mtime_ns
    Predictor(sharp, backend="onnx")
    assert cached[0].stat().st_mtime_ns == stamp


def test_realtime_runs_an_onnx_file_without_torch(exported, faces, tmp_path):
    """`realtime.py ckpt=model.onnx` headless on a folder of images, in a fresh interpreter: rows in the log, and
    torch never imported (start-up time)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, face in enumerate(faces[:3]):
        frame = cv2.copyMakeBorder(cv2.resize(face, (160, 160)), 80, 80, 160, 160, cv2.BORDER_CONSTANT, value=0)
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    log = tmp_path / "faces.csv"
    args = [
        f"ckpt={exported}",
        f"source={folder}",
        "display=false",
        "detector=haar",
        "reactions.sound=false",
        f"log.path={log}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['realtime.py', *{args!r}]\n"
        "try:\n"
        "    runpy.run_path('realtime.py', run_name='__main__')\n"
        "finally:\n"
        "    print('torch imported:', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 frames" in proc.stdout and "torch imported: False" in proc.stdout, proc.stdout + proc.stderr
    assert log.is_file() and log.read_text().startswith("timestamp")
