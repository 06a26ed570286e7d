"""scripts/capture_dataset.py fed a video made from the real portraits, and scripts/merge_datasets.py."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, load_script

from mimic.data.folders import FolderSource
from mimic.data.synthetic import write_class_folders

FPS = 10


capture_dataset = load_script("capture_dataset")
merge_datasets = load_script("merge_datasets")


@pytest.fixture(scope="module")
def video(shared_data, tmp_path_factory) -> Path:
    """4 s at 10 fps, 640x480: Obama's head and shoulders drifting across a textured frame."""
    photo = cv2.imread(str(shared_data / "faces" / "obama.jpg"))
    head = cv2.resize(photo[: photo.shape[1]], (300, 300))
    path = tmp_path_factory.mktemp("video") / "faces.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 480))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG video here")
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(40, 200, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    for i in range(4 * FPS):
        frame = background.copy()
        x, y = 60 + 6 * i, 90 + int(20 * np.sin(i / 5))
        frame[y : y + 300, x : x + 300] = head
        writer.write(frame)
    writer.release()
    return path


def _capture(flags: str, *args: str) -> None:
    """Run the script in-process: ``flags`` is split on spaces, ``args`` (paths) are passed as they are."""
    capture_dataset.main(["preview=false", *flags.split(), *args])


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_capture_from_video_writes_numbered_face_crops(video, tmp_path, capsys):
    root = tmp_path / "webcam"
    write_class_folders(root, ["happy", "sad"], per_class=1, size=64)
    (root / "0_happy" / "0000.png").rename(root / "0_happy" / "0007.png")  # numbering goes on from the highest
    _capture("label=happy every=0.5 count=5 countdown=1", f"source={video}", f"out={root}")
    assert _files(root / "0_happy") == [f"{i:04d}.png" for i in range(7, 13)]
    out = capsys.readouterr().out
    assert "[5/5]" in out and "saved 5 face crops" in out
    crop = cv2.imread(str(root / "0_happy" / "0012.png"))
    assert crop.shape[0] == crop.shape[1] and 100 < crop.shape[0] < 300  # the face, not the frame

    # a new label gets the next index; the video ends before count is reached: 4 s -> crops at 0.1, 1.1, 2.1, 3.1 s
    _capture("label=Neutral every=0.95 count=50 countdown=0.05", f"source={video}", f"out={root}")
    assert _files(root / "2_neutral") == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert "ended after 4 of 50 crops" in capsys.readouterr().out
    src = FolderSource(root, cache_dir=False)
    assert src.class_names == ("happy", "sad", "neutral")
    assert np.bincount(src.load()["train"].labels).tolist() == [6, 1, 4]


def test_auto_label_sorts_by_confidence(video, tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "auto"
    _capture("every=1 count=2 countdown=0 confidence=1.01 auto_label=true", f"ckpt={tiny_checkpoint}",
             f"source={video}", f"out={root}")  # fmt: skip
    unsorted = _files(root / "unsorted")
    assert len(unsorted) == 2 and all(n.split("_")[0] in ("0000", "0001") and "-" in n for n in unsorted)
    _capture("every=1 count=3 countdown=0 confidence=0 auto_label=true", f"ckpt={tiny_checkpoint}",
             f"source={video}", f"out={root}")  # fmt: skip
    classes = [p for p in root.iterdir() if p.name != "unsorted"]
    assert classes and sum(len(_files(p)) for p in classes) == 3
    assert all(p.name.split("_", 1)[0].isdigit() for p in classes)
    assert "saved 3 face crops" in capsys.readouterr().out


def test_bad_camera_fails_cleanly(tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/capture_dataset.py", "label=happy", "camera=7", f"out={tmp_path}/w", "preview=false"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: could not open camera 7 (indices tried: 7" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("under", ["", "sub"], ids=["out_is_a_file", "out_below_a_file"])
def test_out_naming_a_file_is_refused_and_left_alone(tmp_path, capsys, under):
    """out= naming a file, or a folder below one: exit 2 with the path named, the file byte-identical, nothing made."""
    user_file = tmp_path / "notes.txt"
    user_file.write_bytes(b"my notes\n")
    out = user_file / under if under else user_file
    with pytest.raises(SystemExit) as e:
        _capture("label=happy source=nowhere.mp4", f"out={out}")
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{user_file} is a file, not a folder" in err and "out=" in err
    assert user_file.read_bytes() == b"my notes\n" and sorted(tmp_path.iterdir()) == [user_file]


def test_saved_crop_never_overwrites_a_photo_added_meanwhile(tmp_path):
    root = tmp_path / "webcam"
    saver = capture_dataset.Saver(root, "happy")
    crop = np.full((64, 64, 3), 200, np.uint8)
    assert saver.save(crop).name == "0000.png"
    mine = root / "0_happy" / "0001.png"  # another capture (or the user) adds a photo between two saves
    mine.write_bytes(b"not to be overwritten")
    assert saver.save(crop).name == "0002.png"
    assert mine.read_bytes() == b"not to be overwritten"
    assert sorted(_files(root / "0_happy")) == ["0000.png", "0001.png", "0002.png"]


def test_no_camera_at_all_lists_the_indices_tried(tmp_path, capsys, monkeypatch):
    from mimic.errors import UserError

    def refuse(index, **kw):
        raise UserError(f"could not open camera {index}")

    monkeypatch.setattr(capture_dataset, "CameraSource", refuse)
    with pytest.raises(SystemExit) as e:
        _capture("label=happy", f"out={tmp_path / 'w'}")
    assert e.value.code == 2
    assert "no camera could be opened (indices tried: 0, 1, 2, 3)" in capsys.readouterr().err


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_merge_remaps_dedupes_and_leaves_inputs_alone(tmp_path, capsys):
    day1, day2 = tmp_path / "day1", tmp_path / "day2"
    write_class_folders(day1, ["happy", "sad"], per_class=3, size=48, seed=1)
    write_class_folders(day2, ["happy", "neutral", "angry"], per_class=2, size=48, seed=2, indexed=False)
    (day2 / "happy").rename(day2 / "smile")
    (day2 / "smile" / "dup.png").write_bytes((day1 / "0_happy" / "0001.png").read_bytes())
    (day2 / "neutral" / "copy.png").write_bytes((day1 / "1_sad" / "0000.png").read_bytes())  # in two classes
    before = {d: _snapshot(d) for d in (day1, day2)}

    out = tmp_path / "merged"
    merge_datasets.main([f"out={out}", f"inputs={day1},{day2}", "rename=smile=happy", "classes=happy,sad,neutral"])
    assert {d: _snapshot(d) for d in (day1, day2)} == before
    assert sorted(p.name for p in out.iterdir()) == ["0_happy", "1_sad", "2_neutral", "merge_manifest.csv"]
    assert [len(_files(out / c)) for c in ("0_happy", "1_sad", "2_neutral")] == [5, 3, 2]
    text = capsys.readouterr().out
    assert "before:" in text and "after" in text and "dropped classes: angry" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["happy", "3", "3"] in lines and ["0_happy", "5", "1"] in lines and ["2_neutral", "2", "1"] in lines
    assert "1 photos were in two classes" in text
    assert FolderSource(out, cache_dir=False).class_names == ("happy", "sad", "neutral")

    with pytest.raises(SystemExit) as e:  # never into a non-empty folder, never into an input
        merge_datasets.main([f"out={out}", f"inputs={day1}"])
    assert e.value.code == 2 and "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        merge_datasets.main([f"out={day1 / 'sub'}", f"inputs={day1}"])
    assert "overlaps input" in capsys.readouterr().err
    assert {d: _snapshot(d) for d in (day1, day2)} == before


def test_merge_refuses_split_layout(tmp_path, capsys):
    write_class_folders(tmp_path / "kaggle" / "train", ["happy"], per_class=1, size=48, indexed=False)
    with pytest.raises(SystemExit):
        merge_datasets.main([f"out={tmp_path / 'out'}", f"inputs={tmp_path / 'kaggle'}"])
    assert "split into train/" in capsys.readouterr().err and not (tmp_path / "out").exists()
