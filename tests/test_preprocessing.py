"""The one crop -> tensor path: any size, gray or BGR in; the spec's size, channels and normalisation out."""

import numpy as np
import pytest
import torch

from mimic.preprocessing import PreprocessSpec, crop_face, expand_box, image_to_tensor, preprocess, to_model_image


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
