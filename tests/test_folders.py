"""FolderSource (class folders: validation, face crops, cache, skipped files, duplicates) and the datamodule merging
it with FER2013 onto one class set, with per-source sampling weights."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from mimic.data.base import SPLITS, DataError
from mimic.data.class_folders import scan_class_folders
from mimic.data.datamodule import EmotionDataModule
from mimic.data.fer2013 import FER2013Source
from mimic.data.folders import FolderSource
from mimic.data.synthetic import draw_face, write_class_folders
from mimic.labels import FER2013_CLASSES
from mimic.yunet import YuNetDetector

CLASSES = ["happy", "sad", "neutral"]


def write_fer2013_csv(path: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """A tiny FER2013 CSV (header emotion,pixels,Usage) of synthetic faces: ``per_class[usage]`` rows per class."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage, n in per_class.items():
        for label, name in enumerate(FER2013_CLASSES):
            for _ in range(n):
                lines.append(f"{label},{' '.join(map(str, draw_face(name, 48, rng).ravel()))},{usage}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _paste(photo: np.ndarray, width: int = 640, height: int = 480, x: int = 200, y: int = 60) -> np.ndarray:
    """The top square of a portrait (head and shoulders), 330 px high, on a plain 640x480 frame."""
    frame = np.full((height, width, 3), 90, np.uint8)
    frame[y : y + 330, x : x + 330] = cv2.resize(photo[: photo.shape[1]], (330, 330))
    return frame


def test_indexed_folders_give_class_order_and_images(tmp_path):
    write_class_folders(tmp_path / "w", ["sad", "happy", "neutral"], per_class=3, size=64)
    src = FolderSource(tmp_path / "w", cache_dir=False)
    assert src.class_names == ("sad", "happy", "neutral")
    splits = src.load()
    assert list(splits) == ["train"]
    assert np.bincount(splits["train"].labels).tolist() == [3, 3, 3]
    assert all(img.shape == (64, 64, 3) for img in splits["train"].images)


def test_plain_folders_take_order_from_classes(tmp_path):
    write_class_folders(tmp_path / "w", ["happy", "neutral", "sad"], per_class=1, size=48, indexed=False)
    assert FolderSource(tmp_path / "w", classes=CLASSES, cache_dir=False).class_names == tuple(CLASSES)
    assert FolderSource(tmp_path / "w", cache_dir=False).class_names == ("happy", "neutral", "sad")


@pytest.mark.parametrize(
    "folders, message",
    [
        (["0_happy", "0_sad"], r"0_happy and 0_sad both use index 0"),
        (["0_happy", "2_sad"], r"indices must be 0\.\.1.*index 1 is missing.*0_happy, 2_sad"),
        (["0_happy", "1_Happiness"], r"0_happy and 1_Happiness"),
        (["0_happy", "sad"], r"mixes <index>_<name> folders \(0_happy\) with plain <name> folders \(sad\)"),
        ([], r"no class folders found"),
    ],
)
def test_folder_conflicts_are_errors_naming_the_folders(tmp_path, folders, message):
    for name in folders:
        (tmp_path / name).mkdir()
    (tmp_path / "unsorted").mkdir()  # never a class
    with pytest.raises(DataError, match=message):
        scan_class_folders(tmp_path)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"not found.*capture_dataset\.py"):
        FolderSource(tmp_path / "nope")


def test_photos_are_cropped_cached_and_bad_files_skipped(tmp_path, shared_data, caplog, monkeypatch):
    root = tmp_path / "w"
    for i, name in enumerate(["obama", "biden"]):
        photo = cv2.imread(str(shared_data / "faces" / f"{name}.jpg"))
        folder = root / f"{i}_{['happy', 'sad'][i]}"
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "photo.jpg"), _paste(photo))
        cv2.imwrite(str(folder / "crop.png"), cv2.resize(photo[100:400, 330:660], (120, 120)))  # small: a crop
    (root / "0_happy" / "broken.jpg").write_bytes(b"not a jpeg at all")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "1_sad" / "wall.png"), rng.integers(0, 255, (300, 500, 3), dtype=np.uint8))
    (root / "0_happy" / ".0001.png.part").write_bytes(b"half")  # a capture interrupted mid-write: ignored
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="mimic.data.folders"):
        split = FolderSource(root, cache_dir=cache).load()["train"]
    assert sorted(Path(p).name for p in split.paths) == ["crop.png", "crop.png", "photo.jpg", "photo.jpg"]
    for img, path in zip(split.images, split.paths, strict=True):
        if path.endswith("photo.jpg"):  # cropped around the face: square (but where the frame clips it), small
            assert abs(img.shape[0] - img.shape[1]) <= 2 and 100 < img.shape[0] < 250
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 of 6 photos" in warnings[0].getMessage()
    assert "broken.jpg: not an image" in warnings[0].getMessage() and "wall.png: no face" in warnings[0].getMessage()
    assert "(2 skipped)" in caplog.text

    monkeypatch.setattr(YuNetDetector, "detect", lambda *a: pytest.fail("the cache was not used"))  # the default
    again = FolderSource(root, cache_dir=cache).load()["train"]
    assert all(np.array_equal(a, b) for a, b in zip(split.images, again.images, strict=True))


def test_duplicates_kept_once_and_seeded_split_is_disjoint(tmp_path):
    root = tmp_path / "w"
    write_class_folders(root, CLASSES, per_class=10, size=48)
    shutil.copy(root / "0_happy" / "0000.png", root / "0_happy" / "copy.png")
    shutil.copy(root / "1_sad" / "0001.png", root / "1_sad" / "copy.png")
    src = FolderSource(root, cache_dir=False, val_fraction=0.2, test_fraction=0.2, seed=3)
    splits = src.load()
    assert sum(len(s) for s in splits.values()) == 30
    assert {k: len(v) for k, v in splits.items()} == {"test": 6, "val": 6, "train": 18}
    digests = {k: {img.tobytes() for img in v.images} for k, v in splits.items()}
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    again = FolderSource(root, cache_dir=False, val_fraction=0.2, test_fraction=0.2, seed=3).load()
    assert again["test"].paths == splits["test"].paths  # seeded: the same photos held out every time


def test_split_layout(tmp_path):
    write_class_folders(tmp_path / "w" / "train", CLASSES, per_class=4, size=48, indexed=False)
    write_class_folders(tmp_path / "w" / "test", CLASSES, per_class=2, size=48, indexed=False, seed=1)
    splits = FolderSource(tmp_path / "w", classes=CLASSES, cache_dir=False).load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "test": 6}


def test_datamodule_merges_fer2013_and_folders_by_name(tmp_path):
    csv = write_fer2013_csv(tmp_path / "fer2013.csv", {"Training": 6, "PublicTest": 2, "PrivateTest": 2})
    write_class_folders(tmp_path / "webcam", ["sad", "neutral", "happy"], per_class=10, size=64)
    sources = {
        "fer2013": FER2013Source(csv, cache_dir=tmp_path / "cache"),
        "webcam": FolderSource(tmp_path / "webcam", cache_dir=False, name="webcam"),
    }
    dm = EmotionDataModule(
        sources, CLASSES, batch_size=20, val_fraction=0.2, seed=0, source_weights={"fer2013": 1.0, "webcam": 3.0}
    )
    dm.setup()
    # FER2013 happy/sad/neutral (3, 4, 6) -> 0, 1, 2; its other four classes dropped. Webcam: 8 train + 2 val each.
    assert dm.class_counts("train").tolist() == [6 + 8, 6 + 8, 6 + 8]
    per_source = {split: np.bincount(dm.dataset(split).sources, minlength=2).tolist() for split in SPLITS}
    assert per_source == {"train": [18, 24], "val": [6, 6], "test": [6, 0]}  # fer2013, webcam
    fer_rows = dm.data["train"]["labels"][dm.data["train"]["sources"] == 0]
    assert np.bincount(fer_rows).tolist() == [6, 6, 6]
    # source weights 1:3 -> about three quarters of the drawn training faces are webcam photos
    drawn = np.concatenate([b[2].numpy() for _ in range(20) for b in dm.train_dataloader()])
    assert 0.68 < (drawn == 1).mean() < 0.82
    x, y, s, *_ = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (1, 48, 48) and set(s.tolist()) <= {0, 1}
