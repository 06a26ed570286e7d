"""Exported ONNX models (`scripts/export.py`, `mimic.models.onnx_model`): the same probabilities as the checkpoint,
self-describing metadata read through the checkpoint's checks, clear errors for foreign and damaged files, and
`realtime.py` on onnxruntime without importing torch."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from mimic.errors import UserError
from mimic.models.card import CheckpointError
from mimic.models.checkpoint import read_card
from mimic.models.onnx_export import export
from mimic.models.onnx_model import OnnxModel, read_onnx_card
from mimic.models.predictor import Predictor
from mimic.preprocessing import preprocess_array

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


@pytest.mark.slow
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


@pytest.mark.slow  # a real export of the bundled model in a subprocess
def test_export_script_without_ckpt_exports_the_bundled_model(tmp_path):
    from mimic.models import bundled

    out = tmp_path / "bundled.onnx"
    proc = subprocess.run(
        [sys.executable, "scripts/export.py", f"out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    card = read_onnx_card(out)
    assert card.class_names == read_card(bundled.bundled_path())[0].class_names and card.tta_flip is True


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

    with pytest.raises(CheckpointError, match="fine-tuning needs the .ckpt it was exported from"):
        resolve_checkpoint(exported)
    with pytest.raises(CheckpointError, match="init_from=.* a warm start needs the .ckpt it was exported from"):
        resolve_checkpoint(exported, "init_from")
    with pytest.raises(CheckpointError, match="exported ONNX model: it holds no training state"):
        read_card(exported)


def test_evaluate_gives_the_checkpoints_numbers(sharp, exported, tmp_path):
    """`scripts/evaluate.py ckpt=model.onnx`: Lightning's test of the graph's probabilities, the checkpoint's metrics
    and predictions.csv; settings the graph holds and foreign files are clear errors."""
    from conftest import compose

    from mimic.evaluate import run

    data = ["data=synthetic", "data.sources.synthetic.n_train=14", "data.sources.synthetic.n_val=7"]
    data += ["data.sources.synthetic.n_test=42"]
    reports, rows = {}, {}
    for name, model in (("ckpt", sharp), ("onnx", exported)):
        reports[name] = run(compose("evaluate", [f"ckpt={model}", *data], output_dir=tmp_path / name))
        with open(tmp_path / name / "predictions.csv") as f:
            rows[name] = list(csv.DictReader(f))
        assert (tmp_path / name / "confusion_matrix.png").is_file()
    assert reports["onnx"]["checkpoint"] == str(exported.resolve()) and reports["onnx"]["n"] == 42
    for key in ("test/acc", "test/f1", "test/nll", "test/ece", "test/ece_uncalibrated", "test/temperature"):
        assert reports["onnx"][key] == pytest.approx(reports["ckpt"][key], abs=1e-4), key
    assert reports["onnx"]["test/confusion_matrix"] == reports["ckpt"]["test/confusion_matrix"]
    assert reports["onnx"]["tta_flip"] is True
    same = ("image", "label", "predicted")
    for ours, theirs in zip(rows["onnx"], rows["ckpt"], strict=True):
        assert [ours[k] for k in same] == [theirs[k] for k in same]
        p = {k: float(v) for k, v in ours.items() if k.startswith("p_")}
        assert p == pytest.approx({k: float(theirs[k]) for k in p}, abs=1e-4)
    with pytest.raises(UserError, match="tta_flip=false: .* does flip TTA inside its graph"):
        run(compose("evaluate", [f"ckpt={exported}", *data, "tta_flip=false"], output_dir=tmp_path / "flip"))
    foreign = _with_metadata(exported, tmp_path / "foreign.onnx", mimic_model=None)
    with pytest.raises(CheckpointError, match="without mimic's metadata"):
        run(compose("evaluate", [f"ckpt={foreign}", *data], output_dir=tmp_path / "foreign"))


def test_backend_onnx_exports_a_checkpoint_once_and_again_when_it_changes(sharp, faces, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(sharp.read_bytes())
    p = Predictor(ckpt, threads=1, backend="onnx")
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert p.backend == "onnx" and len(cached) == 1
    np.testing.assert_allclose(p.predict_crops(faces[:4]), Predictor(ckpt).predict_crops(faces[:4]), atol=1e-4)
    stamp = cached[0].stat().st_mtime_ns
    Predictor(ckpt, backend="onnx")
    assert cached[0].stat().st_mtime_ns == stamp

    changed = torch.load(ckpt, weights_only=True)  # the same file, retrained: other weights and temperature
    changed["state_dict"]["temperature"] = torch.tensor(0.5)
    changed["state_dict"]["net.head.7.bias"] = changed["state_dict"]["net.head.7.bias"] + torch.arange(7.0)
    torch.save(changed, ckpt)
    again = Predictor(ckpt, backend="onnx")
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2 and again.card.temperature == 0.5
    want = Predictor(ckpt).predict_crops(faces[:4])
    np.testing.assert_allclose(again.predict_crops(faces[:4]), want, atol=1e-4)
    assert np.abs(want - p.predict_crops(faces[:4])).max() > 0.05


def test_backend_auto_is_onnxruntime_when_installed(sharp, tmp_path, monkeypatch, caplog):
    import mimic.models.onnx_export as onnx_export
    import mimic.models.predictor as predictor

    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path))
    predictor._auto_backend.cache_clear()
    with caplog.at_level(logging.INFO, logger="mimic.models.predictor"):
        assert Predictor(sharp, backend="auto").backend == "onnx"
        assert Predictor(sharp, backend="auto").backend == "onnx"
    assert caplog.text.count("predictor.backend=auto: onnxruntime runs the model") == 1

    def broken(*args):
        raise RuntimeError("the exporter broke")

    monkeypatch.setattr(onnx_export, "export_cached", broken)
    with caplog.at_level(logging.WARNING, logger="mimic.models.predictor"):
        assert Predictor(sharp, backend="auto").backend == "torch"
    assert "exporting" in caplog.text and "the exporter broke); PyTorch runs it" in caplog.text
    with pytest.raises(RuntimeError, match="the exporter broke"):
        Predictor(sharp, backend="onnx")

    predictor._auto_backend.cache_clear()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: importing it raises ImportError
    try:
        with caplog.at_level(logging.INFO, logger="mimic.models.predictor"):
            assert Predictor(sharp, backend="auto").backend == "torch"
        assert "onnxruntime is not installed, so PyTorch runs the model" in caplog.text
    finally:
        predictor._auto_backend.cache_clear()


def test_the_live_default_is_auto():
    from conftest import compose

    assert compose("realtime").predictor.backend == "auto"


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
