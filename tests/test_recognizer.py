"""`from mimic import EmotionRecognizer; EmotionRecognizer().detect(image)`: faces, landmarks and every class's
probability, the same numbers the realtime predictor gives."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import load_script, train_tiny_checkpoint

from mimic import EmotionRecognizer
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.models.bundled import bundled_path
from mimic.models.predictor import Predictor

synthetic_patches = load_script("bench/make_test_video").synthetic_patches


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return train_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def frame():
    """Two synthetic faces of different sizes on a plain 640x480 frame."""
    big, small = synthetic_patches(2)[:2]
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[60:316, 40:296] = big
    frame[150:310, 400:560] = cv2.resize(small, (160, 160))
    return frame


def test_detect_gives_box_landmarks_and_every_class(ckpt, frame):
    recognizer = EmotionRecognizer(ckpt=ckpt)
    faces = recognizer.detect(frame)
    assert len(faces) == 2
    assert faces[0]["box"][2] > faces[1]["box"][2]  # largest first
    for face in faces:
        assert set(face) == {"box", "score", "landmarks", "emotions", "label", "confidence"}
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert len(face["landmarks"]) == 5
        assert list(face["emotions"]) == recognizer.class_names
        assert sum(face["emotions"].values()) == pytest.approx(1.0, abs=1e-5)
        assert face["label"] == max(face["emotions"], key=face["emotions"].get)
        assert face["confidence"] == max(face["emotions"].values())


def test_the_same_probabilities_as_the_realtime_predictor(ckpt, frame):
    detections = sorted(load_detector("yunet").detect(frame), key=lambda d: -d.area)
    expected = Predictor(ckpt).predict(frame, detections)
    got = EmotionRecognizer(ckpt=ckpt, backend="torch").detect(frame)
    assert np.allclose([list(f["emotions"].values()) for f in got], expected, atol=1e-6)
    on_onnx = EmotionRecognizer(ckpt=ckpt).detect(frame)  # the default backend: onnxruntime, when installed
    assert np.allclose([list(f["emotions"].values()) for f in on_onnx], expected, atol=1e-4)


def test_image_files_gray_and_bgra_arrays(ckpt, frame, tmp_path):
    recognizer = EmotionRecognizer(ckpt=ckpt, detector="haar")
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), frame)
    from_file = recognizer.detect(path)
    assert [f["box"] for f in from_file] == [f["box"] for f in recognizer.detect(frame)]
    assert from_file and from_file[0]["landmarks"] is None  # Haar has no landmarks
    assert isinstance(recognizer.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)), list)
    assert isinstance(recognizer.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)), list)
    assert recognizer.detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert set(recognizer.classify(frame[60:316, 40:296])) == set(recognizer.class_names)


@pytest.mark.parametrize(
    "image, message",
    [
        ("missing.jpg", "no such file"),
        ("notes.txt", "not an image"),
        (np.zeros((10, 10), np.float32), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "channels"),
        ([[1, 2], [3, 4]], "list"),
    ],
)
def test_bad_images_are_clear_errors(ckpt, tmp_path, image, message):
    (tmp_path / "notes.txt").write_text("not a picture")
    if isinstance(image, str):
        image = tmp_path / image
    with pytest.raises(UserError, match=message):
        EmotionRecognizer(ckpt=ckpt).detect(image)


def test_the_default_model_is_the_bundled_one():
    try:
        path = bundled_path()
    except UserError as e:  # a checkout without the trained file: the error says where it belongs and what to do
        assert "ckpt=" in str(e)
        with pytest.raises(UserError, match="bundled model"):
            EmotionRecognizer()
        return
    recognizer = EmotionRecognizer()
    assert recognizer.predictor.card == Predictor(path).card
    assert recognizer.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_import_mimic_stays_light():
    code = "import sys, mimic; print(sorted(m for m in ('torch', 'cv2', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
