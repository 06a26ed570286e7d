"""Bad data said out loud (issue 9 section 4): class folders that give nothing, photos without a face, files mimic
does not read, a face-crop cache that must not outlive a detector setting, broken images in a merge, and detectors
named by config only. Each case asserts the warning (naming the folder or file, with the count) or the error."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from mimic.data.base import DataError
from mimic.data.folders import FolderSource
from mimic.data.synthetic import write_class_folders
from mimic.errors import UserError
from mimic.faces import HaarDetector, YuNetDetector, load_detector

CLASSES = ["happy", "sad", "neutral"]
_spec = importlib.util.spec_from_file_location("merge_datasets", REPO / "scripts" / "merge_datasets.py")
merge_datasets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(merge_datasets)
YUNET = "models/face_detection_yunet_2023mar.onnx"


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _load(caplog, root: Path, **kwargs):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mimic.data.folders"):
        return FolderSource(root, **{"cache_dir": False, **kwargs}).load()


def _faceless(path: Path, size: int = 400) -> Path:
    """A ``size`` x ``size`` photo with no face in it (smooth noise), as a JPEG."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------- class folders
def test_empty_class_folder_is_named_in_a_warning(tmp_path, caplog):
    write_class_folders(tmp_path / "w", CLASSES, per_class=2, size=64)
    for f in (tmp_path / "w" / "2_neutral").iterdir():
        f.unlink()
    splits = _load(caplog, tmp_path / "w", classes=CLASSES)
    assert len(splits["train"]) == 4
    (warning,) = _warnings(caplog)
    assert "1 class folder(s) give no images: 2_neutral/ (no image files)" in warning
    assert "capture_dataset.py --label <class>" in warning


def test_folders_not_named_after_the_classes_are_an_error_not_a_quiet_drop(tmp_path, caplog):
    """The case that went wrong: every photo in folders whose names are no class of the run was dropped with an INFO
    line, and training went on without them."""
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=9, size=64, indexed=False)
    (root / "happy").rename(root / "happy_pics")
    (root / "sad").rename(root / "sad_pics")
    with pytest.raises(DataError) as e:
        _load(caplog, root, classes=CLASSES)
    message = str(e.value)
    assert f"{root} holds no images of the classes ['happy', 'sad', 'neutral'] (18 image files" in message
    assert "happy_pics, sad_pics" in message and "<index>_<name>" in message and "capture_dataset.py" in message
    (warning,) = _warnings(caplog)
    assert "18 photos in happy_pics/ (9), sad_pics/ (9): not used" in warning
    assert "'happy_pics' looks like 'happy'" in warning and "'sad_pics' looks like 'sad'" in warning


def test_a_class_outside_the_run_is_named_with_its_count(tmp_path, caplog):
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad", "neutral"], per_class=3, size=64)
    (root / "1_sad").rename(root / "1_sadd")
    splits = _load(caplog, root, classes=CLASSES)
    assert len(splits["train"]) == 9  # the source hands over its own classes; the datamodule leaves 1_sadd out
    (warning,) = _warnings(caplog)
    assert "3 photos in 1_sadd/ (3): not used" in warning and "'sadd' looks like 'sad'" in warning


def test_unknown_class_name_without_a_class_list_is_named(tmp_path, caplog):
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=2, size=64)
    (root / "1_sad").rename(root / "1_glum")
    _load(caplog, root)
    (warning,) = _warnings(caplog)
    assert "2 photos in 1_glum/ (2): no emotion mimic knows" in warning and "data.classes" in warning


def test_a_source_with_no_usable_image_is_an_error(tmp_path, caplog):
    root = tmp_path / "w"
    (root / "0_happy").mkdir(parents=True)
    (root / "0_happy" / "a.jpg").write_bytes(b"")
    (root / "0_happy" / "b.png").write_bytes(b"not a png")
    (root / "1_sad").mkdir()
    with pytest.raises(DataError, match=rf"{root} holds no usable images \(2 image files, 2 skipped") as e:
        _load(caplog, root)
    assert "capture_dataset.py --label happy" in str(e.value)
    skipped, empty = _warnings(caplog)
    assert "skipped 2 of 2 photos" in skipped and "a.jpg: not an image" in skipped and "b.png: not an image" in skipped
    assert "0_happy/ (all 2 photos skipped), 1_sad/ (no image files)" in empty


@pytest.mark.slow
def test_finetune_on_misnamed_folders_stops_with_a_message(tmp_path, tiny_checkpoint):
    """Through the real command: `train.py +finetune=webcam` on folders that name no class of the run."""
    root = tmp_path / "data" / "webcam"
    write_class_folders(root, ["happy", "sad"], per_class=3, size=64, indexed=False)
    (root / "happy").rename(root / "0-happy")
    (root / "sad").rename(root / "1-sad")
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=synthetic",
            "+finetune=webcam",
            f"finetune.ckpt={tiny_checkpoint}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "model.net.widths=[8,16,32]",
            "model.net.hidden=32",
            "data.sources.synthetic.n_train=70",
            "data.sources.synthetic.n_val=35",
            "data.sources.synthetic.n_test=35",
            "data.sources.webcam.cache_dir=false",
            "trainer.max_epochs=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "error: webcam:" in proc.stderr and "holds no images of the classes" in proc.stderr
    assert "0-happy/ (3), 1-sad/ (3): not used" in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------------------------- photos and files
def test_square_photo_without_a_face_is_skipped_unless_the_folder_holds_crops(tmp_path, caplog):
    """A 400x400 photo with no face used to be kept whole as a face; now only with detect_faces=false."""
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=2, size=64)
    wall = _faceless(root / "0_happy" / "wall.jpg")
    splits = _load(caplog, root)
    assert str(wall) not in splits["train"].paths and len(splits["train"]) == 4
    (warning,) = _warnings(caplog)
    assert "skipped 1 of 5 photos" in warning and f"{wall}: no face found" in warning
    assert "data.sources.webcam.detect_faces=false" in warning

    splits = _load(caplog, root, detect_faces=False)
    assert str(wall) in splits["train"].paths and len(splits["train"]) == 5
    assert not _warnings(caplog)


def test_files_mimic_does_not_read_are_listed_once(tmp_path, caplog):
    root = tmp_path / "w"
    write_class_folders(root, ["happy", "sad"], per_class=2, size=64)
    (root / "0_happy" / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "1_sad" / "shot.cr2").write_bytes(b"II*\x00")
    (root / "0_happy" / "day2").mkdir()
    (root / "stray.jpg").write_bytes((root / "0_happy" / "0000.png").read_bytes())
    (root / "0_happy" / ".0005.png.part").write_bytes(b"half")  # a capture cut off mid-write: not even listed
    splits = _load(caplog, root)
    assert len(splits["train"]) == 4
    (warning,) = _warnings(caplog)
    assert "4 files under" in warning
    for name, why in [
        ("0_happy/IMG_0001.heic", "not an image"),
        ("1_sad/shot.cr2", "not an image"),
        ("0_happy/day2", "a folder inside a class folder"),
        ("stray.jpg", "not in a class folder"),
    ]:
        assert f"{root / name}: {why}" in warning
    assert ".part" not in warning and ".jpg .jpeg .png" in warning


# -------------------------------------------------------------------------------------------------- face-crop cache
def _detects_per_run(tmp_path, monkeypatch, cls, makers) -> list[int]:
    """Load one folder of two large photos once per detector (each made by a maker when its run starts), sharing one
    face-crop cache; how many photos each run sent to the detector (0: all came from the cache)."""
    calls = []
    real = cls.detect
    monkeypatch.setattr(cls, "detect", lambda self, frame: calls.append(1) or real(self, frame))
    root = tmp_path / "w"
    for i, name in enumerate(CLASSES[:2]):
        _faceless(root / f"{i}_{name}" / "photo.jpg", 300 + 20 * i)
    counts = []
    for make in makers:
        before = len(calls)
        with pytest.raises(DataError, match="no usable images"):  # faceless photos: "no face" is cached too
            FolderSource(root, detector=make(), cache_dir=tmp_path / "cache").load()
        counts.append(len(calls) - before)
    return counts


def test_crop_cache_is_keyed_on_every_haar_setting_and_the_cascade_file(tmp_path, monkeypatch):
    cascades = Path(cv2.data.haarcascades)
    cascade = tmp_path / "cascade.xml"
    shutil.copy(cascades / "haarcascade_frontalface_default.xml", cascade)

    def other_cascade_same_path() -> HaarDetector:
        shutil.copy(cascades / "haarcascade_frontalface_alt2.xml", cascade)
        return HaarDetector(cascade=str(cascade))

    makers = [
        lambda: HaarDetector(cascade=str(cascade)),  # fills the cache
        lambda: HaarDetector(cascade=str(cascade)),  # the same settings: all from the cache
        lambda: {"_target_": "mimic.faces.HaarDetector", "cascade": str(cascade)},  # the same, as a config
        lambda: HaarDetector(cascade=str(cascade), min_neighbors=8),
        other_cascade_same_path,  # old code: served from the cache (the key held no file, no hash)
    ]
    assert _detects_per_run(tmp_path, monkeypatch, HaarDetector, makers) == [2, 0, 0, 2, 2]


def test_crop_cache_is_keyed_on_yunet_thresholds(tmp_path, monkeypatch, shared_data):
    """The reported case: a run with score_threshold=0.999 got the crops an earlier 0.7 run had cached."""
    model = str(shared_data / YUNET)
    makers = [lambda t=t: YuNetDetector(model_path=model, score_threshold=t) for t in (0.7, 0.7, 0.999)]
    assert _detects_per_run(tmp_path, monkeypatch, YuNetDetector, makers) == [2, 0, 2]


def test_folder_source_scans_every_photo_in_full(tmp_path):
    """conf/detector/haar.yaml tracks faces across video frames (full_every: 4); unrelated photos must not be."""
    write_class_folders(tmp_path / "w", CLASSES, per_class=1, size=64)
    source = FolderSource(tmp_path / "w", detector=load_detector("haar"), cache_dir=False)
    assert source.detector.full_every == 1 and source.detector.config["full_every"] == 1


# ------------------------------------------------------------------------------------------------ detectors by name
def test_detectors_load_by_name_or_config_and_nothing_else(tmp_path):
    assert isinstance(load_detector("haar"), HaarDetector)
    assert load_detector("haar", min_neighbors=7).min_neighbors == 7
    for name in ("nope", "../train", "haar.yaml"):
        with pytest.raises(UserError, match=rf"unknown detector '{name}': use one of haar, yunet"):
            load_detector(name)
    marker = tmp_path / "PWNED"
    for target in ("builtins.open", "os.system", "mimic.faces.Path", "mimic.faces.FaceDetector", "mimic.io.os.system"):
        with pytest.raises(UserError, match=rf"detector _target_ '{target}': name a detector class of mimic.faces"):
            load_detector({"_target_": target, "file": str(marker), "mode": "w"})
    assert not marker.exists()
    with pytest.raises(UserError, match=r"mimic.faces.HaarDetector: .*'min_neighbours'.*min_neighbors"):
        load_detector({"_target_": "mimic.faces.HaarDetector", "min_neighbours": 3})
    write_class_folders(tmp_path / "w", CLASSES, per_class=1, size=64)
    with pytest.raises(UserError, match="unknown detector 'yunett'"):
        FolderSource(tmp_path / "w", detector="yunett", detect_faces=True, cache_dir=False).load()


# ------------------------------------------------------------------------------------------------------------ merge
def test_merge_skips_and_lists_broken_images(tmp_path, capsys):
    """Broken and zero-byte images used to be copied and counted."""
    day1 = tmp_path / "day1"
    write_class_folders(day1, ["happy", "sad"], per_class=3, size=48)
    (day1 / "0_happy" / "empty.jpg").write_bytes(b"")
    (day1 / "1_sad" / "cut.png").write_bytes((day1 / "1_sad" / "0000.png").read_bytes()[:40])
    (day1 / "1_sad" / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    before = _snapshot(day1)
    out = tmp_path / "merged"
    merge_datasets.main([str(out), str(day1)])
    stdout = capsys.readouterr().out
    assert _snapshot(day1) == before
    assert [sorted(p.name for p in (out / c).iterdir()) for c in ("0_happy", "1_sad")] == [
        ["0000.png", "0001.png", "0002.png"]
    ] * 2
    lines = [line.split() for line in stdout.splitlines()]
    assert ["0_happy", "3", "0"] in lines and ["1_sad", "3", "0"] in lines
    assert "2 broken images (they do not decode), not copied:" in stdout
    assert str(day1 / "0_happy" / "empty.jpg") in stdout and str(day1 / "1_sad" / "cut.png") in stdout
    assert f"1 files mimic does not read, not copied:\n  {day1 / '1_sad' / 'photo.heic'}" in stdout
    manifest = (out / "merge_manifest.csv").read_text()
    assert "empty.jpg" not in manifest and "cut.png" not in manifest and len(manifest.splitlines()) == 7
    assert all(
        hashlib.sha256((out / row.split(",")[0]).read_bytes()).hexdigest() == row.split(",")[2]
        for row in manifest.splitlines()[1:]
    )
