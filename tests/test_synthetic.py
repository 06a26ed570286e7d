"""Tests of mimic.data.synthetic: drawing, the seeded source, the class-folder writer, scenes, and learnability."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch

from mimic.data.base import SplitData
from mimic.data.synthetic import SyntheticSource, draw_face, draw_faces, draw_scene, write_class_folders
from mimic.labels import FER2013_CLASSES, KNOWN_CLASSES, UnknownClassError


@pytest.mark.parametrize("name", KNOWN_CLASSES)
def test_every_class_draws_gray_and_bgr(name):
    gray = draw_face(name)
    assert gray.shape == (48, 48) and gray.dtype == np.uint8
    colour = draw_face(name, size=64, rng=np.random.default_rng(0), bgr=True)
    assert colour.shape == (64, 64, 3) and colour.dtype == np.uint8
    assert gray.std() > 20 and colour.std() > 10  # a face, not a flat square


def test_canonical_faces_are_deterministic_and_differ_between_classes():
    faces = {name: draw_face(name).astype(np.int16) for name in KNOWN_CLASSES}
    assert all(np.array_equal(face, draw_face(name)) for name, face in faces.items())
    for a in KNOWN_CLASSES:
        for b in KNOWN_CLASSES:
            if a < b:
                assert np.abs(faces[a] - faces[b]).mean() > 1.0, (a, b)


def test_synonyms_variations_and_batches():
    assert np.array_equal(draw_face("Happiness"), draw_face("happy"))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(draw_face("sad", rng=rng_a), draw_face("sad", rng=rng_b))
    assert not np.array_equal(draw_face("sad", rng=rng_a), draw_face("sad"))
    flipped = draw_face("contempt", flip=True)
    assert np.abs(flipped.astype(int) - draw_face("contempt")[:, ::-1]).mean() < 3  # a mirror, up to rounding
    batch = draw_faces(["fear", "angry", "neutral"], size=32, rng=np.random.default_rng(1), bgr=True)
    assert batch.shape == (3, 32, 32, 3)


def test_unknown_names_are_clear_errors():
    with pytest.raises(UnknownClassError, match="Known classes: .*contempt"):
        draw_face("bored")
    with pytest.raises(UnknownClassError, match="bored"):
        SyntheticSource(classes=["happy", "bored"])
    with pytest.raises(TypeError, match="unknown variation.*known: rotation"):
        draw_face("happy", wobble=3)
    with pytest.raises(ValueError, match="size"):
        draw_face("happy", size=8)


def test_source_splits_are_balanced_and_shaped():
    source = SyntheticSource(n_train=70, n_val=21, n_test=15, size=40, seed=3)
    assert source.name == "synthetic" and source.class_names == FER2013_CLASSES
    splits = source.load()
    assert set(splits) == {"train", "val", "test"}
    for split, n in (("train", 70), ("val", 21), ("test", 15)):
        data = splits[split]
        assert isinstance(data, SplitData) and len(data) == n
        assert data.images.shape == (n, 40, 40) and data.images.dtype == np.uint8
        assert data.labels.dtype == np.int64
        counts = np.bincount(data.labels, minlength=7)
        assert counts.max() - counts.min() <= 1, (split, counts)
    assert np.bincount(splits["train"].labels).tolist() == [10] * 7


def test_source_is_deterministic_per_seed_and_splits_differ():
    a = SyntheticSource(n_train=28, n_val=14, n_test=14, seed=1).load()
    b = SyntheticSource(n_train=28, n_val=14, n_test=14, seed=1).load()
    c = SyntheticSource(n_train=28, n_val=14, n_test=14, seed=2).load()
    for split in a:
        assert np.array_equal(a[split].images, b[split].images) and np.array_equal(a[split].labels, b[split].labels)
        assert not np.array_equal(a[split].images, c[split].images)
    assert not np.array_equal(a["val"].images, a["test"].images)
    train = {img.tobytes() for img in a["train"].images}
    assert not any(img.tobytes() in train for img in a["test"].images)


def test_source_with_other_classes():
    source = SyntheticSource(classes=["Neutral", "contempt", "happiness"], n_train=9, n_val=0, n_test=3)
    assert source.class_names == ("neutral", "contempt", "happy")
    splits = source.load()
    assert len(splits["val"]) == 0 and splits["val"].images.shape == (0, 48, 48)
    assert sorted(set(splits["train"].labels.tolist())) == [0, 1, 2]


def test_source_is_fast():
    start = time.process_time()
    splits = SyntheticSource().load()  # 3000 + 600 + 600 faces
    elapsed = time.process_time() - start
    assert sum(len(s) for s in splits.values()) == 4200
    assert elapsed < 5.0, f"4200 faces took {elapsed:.1f} s of CPU"


@pytest.mark.parametrize("indexed", [True, False])
def test_write_class_folders(tmp_path, indexed):
    counts = write_class_folders(tmp_path, ["happy", "Sadness", "contempt"], per_class=3, size=64, indexed=indexed)
    assert counts == {"happy": 3, "sad": 3, "contempt": 3}
    expected = ["0_happy", "1_sad", "2_contempt"] if indexed else ["contempt", "happy", "sad"]
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    files = sorted((tmp_path / expected[0]).iterdir())
    assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png"]
    img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 64, 3)


def test_write_class_folders_gray_and_errors(tmp_path):
    write_class_folders(tmp_path, ["neutral"], per_class=1, size=48, bgr=False)
    assert cv2.imread(str(tmp_path / "0_neutral" / "0000.png"), cv2.IMREAD_UNCHANGED).shape == (48, 48)
    with pytest.raises(UnknownClassError):
        write_class_folders(tmp_path, ["nope"], per_class=1)


def test_draw_scene_draws_faces_in_their_boxes():
    empty = draw_scene([], 320, 240)
    assert empty.shape == (240, 320, 3) and empty.dtype == np.uint8
    scene = draw_scene([("happy", (20, 30, 120, 120)), ("sad", (170, 60, 140, 140))], 320, 240)
    assert np.array_equal(scene, draw_scene([("happy", (20, 30, 120, 120)), ("sad", (170, 60, 140, 140))], 320, 240))
    changed = np.abs(scene.astype(int) - empty.astype(int)).sum(2) > 30
    assert changed[60:130, 50:110].mean() > 0.8 and changed[100:180, 210:270].mean() > 0.8
    assert not changed[:150, 150:160].any()  # nothing between the heads (shoulders may pass below the boxes)
    varied = draw_scene(
        [("surprise", (0, 0, 200, 200)), ("fear", (250, 100, 150, 150))], 400, 300, np.random.default_rng(0)
    )
    assert varied.shape == (300, 400, 3)


def test_haar_finds_drawn_faces():
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        pytest.skip("OpenCV's Haar cascade is not installed")
    rng = np.random.default_rng(0)
    found = 0
    for name, size in (("happy", 120), ("neutral", 160), ("angry", 200), ("sad", 150), ("disgust", 180)):
        scene = draw_scene([(name, (100, 40, size, size))], 400, 300, rng)
        found += len(cascade.detectMultiScale(cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(40, 40))) > 0
    assert found >= 4


def _hog(images: np.ndarray) -> torch.Tensor:
    hog = cv2.HOGDescriptor((48, 48), (16, 16), (8, 8), (8, 8), 9)
    return torch.from_numpy(np.stack([hog.compute(img).ravel() for img in images]))


@pytest.mark.slow  # fits a classifier on a few thousand faces
def test_classes_are_learnable():
    """A linear classifier on HOG features, trained with torch in about a second, separates held-out faces."""
    torch.manual_seed(0)
    splits = SyntheticSource(n_train=1500, n_val=0, n_test=700, seed=11).load()
    x_train, x_test = _hog(splits["train"].images), _hog(splits["test"].images)
    y_train, y_test = torch.from_numpy(splits["train"].labels), torch.from_numpy(splits["test"].labels)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    model = torch.nn.Linear(x_train.shape[1], 7)
    optim = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x_train), y_train)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.85, accuracy
