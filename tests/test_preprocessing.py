"""The one crop -> tensor path: any size, gray or BGR in; the spec's size, channels and normalisation out."""

import math
import re

import cv2
import numpy as np
import pytest
import torch

from mimic.errors import UserError
from mimic.faces import Detection
from mimic.preprocessing import (
    PreprocessSpec,
    crop_face,
    expand_box,
    framing_matrix,
    image_to_tensor,
    preprocess,
    to_model_image,
)


@pytest.mark.parametrize("shape", [(48, 48), (120, 90), (200, 200, 3), (64, 64, 1), (30, 40, 4)])
def test_any_crop_becomes_the_model_input(shape):
    crop = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    x = preprocess(crop, PreprocessSpec())
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def test_rgb_spec_and_batch():
    spec = PreprocessSpec(size=112, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    crops = [np.full((50, 60, 3), 128, np.uint8), np.zeros((48, 48), np.uint8)]
    x = preprocess(crops, spec)
    assert x.shape == (2, 3, 112, 112)
    assert torch.allclose(x[1, 0], torch.full((112, 112), -0.485 / 0.229))


def test_normalisation_matches_the_spec():
    spec = PreprocessSpec(mean=(0.5,), std=(0.25,))
    img = np.full((48, 48), 255, np.uint8)
    assert torch.allclose(preprocess(img, spec), torch.full((1, 48, 48), 2.0))


def test_gray_conversion_uses_bgr_order():
    bgr = np.zeros((48, 48, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in BGR
    gray = to_model_image(bgr, PreprocessSpec())
    assert abs(int(gray[0, 0, 0]) - 76) <= 1  # 0.299 * 255


def test_spec_round_trips_through_a_dict():
    spec = PreprocessSpec(size=96, channels=3, mean=(0.4,), std=(0.2,), crop_margin=0.2)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert spec.mean == (0.4, 0.4, 0.4)


def test_bad_spec_is_a_clear_error():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        PreprocessSpec(channels=2)
    with pytest.raises(ValueError, match="needs 3 values"):
        PreprocessSpec(channels=3, mean=(0.1, 0.2), std=(0.2,))
    with pytest.raises(ValueError, match="size must be a whole number, got '48'"):
        PreprocessSpec.from_dict({"size": "48"})
    with pytest.raises(ValueError, match="mean must be a list of numbers"):
        PreprocessSpec.from_dict({"mean": [{"_target_": "os.system"}]})
    with pytest.raises(ValueError, match=r"unknown settings \['margin'\]"):
        PreprocessSpec.from_dict({"margin": 0.2})


def test_crop_margin_squares_and_clips():
    frame = np.zeros((100, 200, 3), np.uint8)
    assert expand_box((10, 10, 20, 40), 0.0, 200, 100) == (0, 10, 40, 40)  # made square around its centre
    crop = crop_face(frame, (150, 50, 40, 40), PreprocessSpec(crop_margin=0.5))
    assert crop.shape[:2] == (70, 70)  # 80x80 around (170, 70), clipped by the frame's right and bottom edges
    with pytest.raises(ValueError, match="outside"):
        crop_face(frame, (500, 500, 10, 10), PreprocessSpec())


def test_batch_tensor_layout():
    imgs = np.zeros((4, 48, 48, 1), np.uint8)
    assert image_to_tensor(imgs, PreprocessSpec()).shape == (4, 1, 48, 48)


# ------------------------------------------------------------------------------------------------- eye framing
EYES = PreprocessSpec(framing="eyes")


def synthetic_face(spec: PreprocessSpec, side: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A gray face drawn with the spec's proportions: dark eye disks, a dark mouth line; and its five landmarks."""
    img = np.full((side, side), 200, np.uint8)
    right, left = (np.array([spec.eye_x + s * spec.eye_distance / 2, spec.eye_y]) * side for s in (-1, 1))
    corners = [np.array([spec.eye_x + s * 0.15, spec.mouth_y]) * side for s in (-1, 1)]
    for eye in (right, left):
        cv2.circle(img, tuple(int(round(v)) for v in eye - 0.5), 4, 0, -1)
    cv2.line(img, *(tuple(int(round(v)) for v in c - 0.5) for c in corners), 0, 2)
    nose = np.array([spec.eye_x, (spec.eye_y + spec.mouth_y) / 2]) * side
    return img, np.array([right, left, nose, *corners]) - 0.5  # pixel indices


def blob_centres(crop: np.ndarray) -> list[tuple[float, float]]:
    """(x, y) centres of the round dark blobs of a crop (the eyes), left to right."""
    n, labels, stats, centres = cv2.connectedComponentsWithStats((crop < 100).astype(np.uint8))
    eyes = [c for c, s in zip(centres[1:], stats[1:], strict=True) if 0.6 < s[2] / s[3] < 1.6]
    return sorted((float(x), float(y)) for x, y in eyes)


@pytest.mark.parametrize(("degrees", "zoom"), [(17, 2.5), (-20, 0.8), (0, 1.0)])
def test_eye_framing_levels_the_eyes_and_puts_them_where_fer2013_has_them(degrees, zoom):
    """A face rotated by a known angle, scaled and pasted into a frame, with its true landmarks: the crop has level
    eyes at the spec's eye positions, measured in the crop itself."""
    face, points = synthetic_face(EYES)
    to_frame = cv2.getRotationMatrix2D((50, 50), degrees, zoom)
    to_frame[:, 2] += (300, 200)
    frame = cv2.warpAffine(face, to_frame, (640, 480), flags=cv2.INTER_AREA, borderValue=200)
    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    landmarks = tuple(map(tuple, np.hstack([points, np.ones((5, 1))]) @ to_frame.T))
    size, found = 96, Detection((0, 0, 1, 1), 1.0, landmarks)
    crop = crop_face(frame, found, EYES, size=size)
    assert crop.shape == (size, size, 3)
    matrix = framing_matrix(found, EYES, size)  # the crop covers the drawn face's own square, turned and zoomed
    assert size / math.sqrt(abs(np.linalg.det(matrix[:, :2]))) == pytest.approx(100 * zoom, rel=1e-6)
    (rx, ry), (lx, ly) = blob_centres(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    want_y = EYES.eye_y * size - 0.5
    half = EYES.eye_distance / 2 * size
    assert abs(ry - ly) < 0.5 and abs(ry - want_y) < 0.7  # level, at the mean eye height
    assert abs(rx - (EYES.eye_x * size - 0.5 - half)) < 0.7 and abs(lx - (EYES.eye_x * size - 0.5 + half)) < 0.7


def test_a_box_without_landmarks_is_framed_by_the_measured_box_relation():
    """Haar: a square of box_scale box widths, centred (box_x, box_y) box widths off the box's centre."""
    ys, xs = np.mgrid[0:240, 0:320]
    frame = np.dstack([xs, ys, np.zeros_like(xs)]).astype(np.uint8)  # each pixel holds its own x and y
    spec = PreprocessSpec(framing="eyes", box_scale=1.2, box_x=0.1, box_y=-0.1)
    crop = crop_face(frame, (100, 80, 50, 50), spec, size=60)  # the crop covers x 100..159, y 70..129
    assert tuple(crop[0, 0, :2]) == (100, 70) and tuple(crop[-1, -1, :2]) == (159, 129)
    assert crop_face(frame, (100, 80, 50, 50), spec).shape == (48, 48, 3)


def test_eye_framing_fills_outside_the_frame_by_replicating_its_border():
    frame = np.full((100, 100), 77, np.uint8)
    crop = crop_face(frame, (70, 70, 60, 60), EYES)  # the face hangs over the corner
    assert crop.shape == (48, 48) and (crop == 77).all()


def test_old_checkpoints_keep_todays_box_crop_byte_for_byte():
    """A spec as checkpoints stored it before the eye framing: the same pixels as before, landmarks or not."""
    spec = PreprocessSpec.from_dict({"size": 48, "channels": 1, "mean": [0.5], "std": [0.5], "crop_margin": 0.1})
    assert spec.framing == "box"
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    tilted = Detection((150, 50, 40, 40), 0.9, ((160, 60), (185, 70), (172, 75), (162, 82), (180, 88)))
    today = frame[46:94, 146:194]  # the 48x48 square around (170, 70): 40 px grown by 10% on every side
    for face in (tilted, tilted.box):
        crop = crop_face(frame, face, spec)
        assert crop.shape == today.shape and crop.tobytes() == today.tobytes()


def test_framing_travels_in_the_checkpoint(tiny_checkpoint, tmp_path):
    from mimic.models.checkpoint import read_card

    spec = PreprocessSpec(framing="eyes", eye_y=0.4, box_scale=1.1)
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["preprocess"] = spec.to_dict()
    torch.save(ckpt, tmp_path / "eyes.ckpt")
    card, _ = read_card(tmp_path / "eyes.ckpt")
    assert card.preprocess == spec


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("framing", "tilted", "preprocess.framing must be one of box, eyes, got 'tilted'"),
        ("framing", {"_target_": "os.system"}, "preprocess.framing must be one of box, eyes"),
        ("eye_y", "0.4", "preprocess.eye_y must be a number from 0.0 to 1.0, got '0.4'"),
        ("eye_distance", 3, "preprocess.eye_distance must be a number from 0.01 to 1.0, got 3"),
        ("box_scale", float("nan"), "preprocess.box_scale must be a number"),
        ("mouth_y", 0.2, "preprocess.mouth_y (0.2) must be larger than eye_y"),
        ("photometric", "${oc.env:HOME}", "preprocess.photometric must be one of none, standardise, clahe"),
        ("photometric", {"_target_": "os.system"}, "preprocess.photometric must be one of none, standardise, clahe"),
    ],
)
def test_a_bad_framing_value_is_a_clear_error(key, value, message, tiny_checkpoint, tmp_path):
    from mimic.models.card import CheckpointError
    from mimic.models.checkpoint import read_card
    from mimic.models.classifier import EmotionClassifier

    with pytest.raises(UserError, match=re.escape(message)):
        PreprocessSpec.from_dict({"framing": "eyes", key: value})
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["preprocess"][key] = value
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=re.escape(f"bad.ckpt: hyper_parameters.preprocess.{key}")):
        read_card(tmp_path / "bad.ckpt")
    with pytest.raises(UserError, match=re.escape(f"model.{message}")):
        EmotionClassifier({"_target_": "mimic.models.small_cnn.small_cnn"}, ["happy", "sad"], {key: value})


def test_the_predictor_and_the_pipeline_frame_each_face_by_its_landmarks(tiny_checkpoint, tmp_path):
    from mimic.models.predictor import Predictor
    from mimic.realtime.pipeline import Pipeline

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["preprocess"]["framing"] = "eyes"
    torch.save(ckpt, tmp_path / "eyes.ckpt")
    predictor = Predictor(tmp_path / "eyes.ckpt")
    face, points = synthetic_face(EYES)
    to_frame = cv2.getRotationMatrix2D((50, 50), 25, 1.5)
    to_frame[:, 2] += (200, 100)
    frame = cv2.cvtColor(cv2.warpAffine(face, to_frame, (480, 360), borderValue=200), cv2.COLOR_GRAY2BGR)
    landmarks = tuple(map(tuple, np.hstack([points, np.ones((5, 1))]) @ to_frame.T))
    found = Detection((200, 100, 150, 150), 0.9, landmarks)
    want = predictor.predict_crops([crop_face(frame, found, predictor.spec)])
    assert np.array_equal(predictor.predict(frame, [found]), want)
    assert not np.array_equal(predictor.predict(frame, [found.box]), want)  # a box alone: the Haar framing

    class OneFace:
        config: dict = {}

        def detect(self, frame):
            return [found]

    result = Pipeline(predictor, OneFace()).step(frame, 0.0)
    assert np.array_equal(result.faces[0].probs, want[0]) and "crop" in result.seconds
    # the live loop's reader thread makes the net's input ahead (Predictor.inputs): the same probabilities
    ahead = Pipeline(predictor, OneFace()).step(frame, 0.0, [found], predictor.inputs(frame, [found]))
    assert np.array_equal(ahead.faces[0].probs, want[0]) and "crop" not in ahead.seconds


def test_real_faces_framed_on_their_eyes_have_them_where_fer2013_has_them(shared_data):
    """YuNet's landmarks on photos -> eye-framed crops; YuNet run again on each crop finds the eyes level and, on
    average, at the spec's positions (as scripts/bench/measure_framing.py measures FER2013's faces)."""
    from mimic.detectors import load_detector

    yunet, found = load_detector("yunet"), []
    for name in ("obama", "biden", "two_people", "obama_small"):
        frame = cv2.imread(str(shared_data / "faces" / f"{name}.jpg"))
        for face in yunet.detect(frame):
            crop = crop_face(frame, face, EYES, size=96)
            (again,) = yunet.detect(cv2.copyMakeBorder(crop, 32, 32, 32, 32, cv2.BORDER_REPLICATE))
            found.append((np.array(again.landmarks[:2]) + 0.5 - 32) / 96)  # right and left eye, crop fractions
    right, left = np.array(found).transpose(1, 0, 2)
    assert len(found) >= 5 and np.abs(right[:, 1] - left[:, 1]).max() < 0.02
    assert np.abs((right + left) / 2 - (EYES.eye_x, EYES.eye_y)).max() < 0.05  # 2.4 px of 48: landmark noise
    assert np.allclose(((right + left) / 2).mean(0), (EYES.eye_x, EYES.eye_y), atol=0.015)
    assert abs(np.hypot(*(left - right).T).mean() / EYES.eye_distance - 1) < 0.1


def test_the_folder_loader_frames_photos_as_the_model_does(shared_data, tmp_path):
    from mimic.data.folders import FolderSource
    from mimic.detectors import load_detector

    photo = cv2.imread(str(shared_data / "faces" / "obama.jpg"))
    (tmp_path / "w" / "0_happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "w" / "0_happy" / "a.png"), photo)
    source = FolderSource(tmp_path / "w", detector="yunet", preprocess=EYES.to_dict(), cache_dir=False)
    (crop,) = source.load()["train"].images
    face = max(load_detector("yunet").detect(photo), key=lambda d: d.area)
    assert np.array_equal(crop, crop_face(photo, face, EYES)) and crop.shape == (48, 48, 3)


# ---- photometric normalisation (issue 25) ---------------------------------------------------------------------------
def _face(seed: int = 0) -> np.ndarray:
    """A smooth, face-sized uint8 pattern with the spread of a FER2013 face (mean ~129, std ~50)."""
    noise = np.random.default_rng(seed).normal(0, 1, (48, 48))
    smooth = cv2.GaussianBlur(noise, (0, 0), 4)
    return np.clip(129 + 50 * smooth / smooth.std(), 0, 255).astype(np.uint8)


def test_photometric_none_is_todays_path_and_old_specs_read_as_none():
    face = _face()
    assert PreprocessSpec().photometric == "none"
    old = {k: v for k, v in PreprocessSpec().to_dict().items() if k != "photometric"}  # a checkpoint before it
    assert PreprocessSpec.from_dict(old).photometric == "none"
    x = preprocess([face], PreprocessSpec()).numpy()
    assert np.allclose(x, (face.astype(np.float32) / 255 - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(UserError, match="preprocess.photometric must be one of none, standardise, clahe, got 'hdr'"):
        PreprocessSpec(photometric="hdr")


def test_standardise_gives_a_dim_face_the_input_of_the_same_face_in_daylight():
    spec = PreprocessSpec(photometric="standardise")
    face = _face()
    dim = np.clip(np.rint(face * 0.3), 0, 255).astype(np.uint8)  # a dim room: mean grey ~39
    x, x_dim = preprocess([face, dim], spec).numpy()
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-4
    assert np.abs(x - x_dim).max() < 0.12  # only the rounding of the dimmed copy differs
    plain = preprocess([face, dim], PreprocessSpec()).numpy()
    assert np.abs(plain[0] - plain[1]).mean() > 0.5  # without it the net sees two different faces
    flat = preprocess([np.full((48, 48), 200, np.uint8)], spec).numpy()
    assert np.isfinite(flat).all() and np.abs(flat).max() == 0  # a flat crop is not blown up
    rgb = preprocess([cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)], PreprocessSpec(channels=3, photometric="standardise"))
    assert rgb.shape == (1, 3, 48, 48) and np.allclose(rgb[0, 0].numpy(), x, atol=1e-5)


def test_clahe_brings_a_dim_faces_contrast_back():
    spec = PreprocessSpec(photometric="clahe")
    face = _face()
    dim = np.clip(np.rint(face * 0.3), 0, 255).astype(np.uint8)
    x, x_dim = preprocess([face, dim], spec).numpy()
    plain = preprocess([face, dim], PreprocessSpec()).numpy()
    assert float(x_dim.std()) > 1.5 * float(plain[1].std())  # the dim face's spread is stretched
    assert np.corrcoef(x.ravel(), x_dim.ravel())[0, 1] > 0.9  # into the same face
    rgb = preprocess([cv2.cvtColor(dim, cv2.COLOR_GRAY2BGR)], PreprocessSpec(channels=3, photometric="clahe"))
    assert rgb.shape == (1, 3, 48, 48) and float(rgb.std()) > 1.5 * float(plain[1].std())


def test_photometric_travels_in_the_checkpoint_and_its_onnx_export(tiny_checkpoint, tmp_path):
    from mimic.models.onnx_export import export
    from mimic.models.predictor import open_model

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["preprocess"]["photometric"] = "standardise"
    torch.save(ckpt, tmp_path / "std.ckpt")
    export(tmp_path / "std.ckpt", tmp_path / "std.onnx")
    dim = np.clip(np.rint(_face(1) * 0.25), 0, 255).astype(np.uint8)
    by_torch = open_model(tmp_path / "std.ckpt", backend="torch")
    by_onnx = open_model(tmp_path / "std.onnx")
    assert by_torch.spec.photometric == by_onnx.spec.photometric == "standardise"
    assert np.allclose(by_torch.predict_crops([dim]), by_onnx.predict_crops([dim]), atol=1e-5)
    assert not np.allclose(by_torch.predict_crops([dim]), open_model(tiny_checkpoint).predict_crops([dim]), atol=1e-3)
