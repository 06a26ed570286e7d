"""`python analyze.py` (issue 26) on a synthetic two-person clip with a scene cut, a folder of photos and a broken
video, run twice as a user would: every output file read back, no track across the cut, an existing folder kept, the
broken file named and skipped, and the finished inputs skipped the second time. And the one-call API,
`EmotionRecognizer.analyze_video`."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, load_script
from test_realtime_parts import load_video_maker

from mimic.analysis import collect_inputs, output_folder
from mimic.data.synthetic import draw_faces
from mimic.errors import UserError
from mimic.realtime.result import columns

FPS, SHOT = 30.0, 45  # frames a shot: 1.5 s each


def two_shot_clip(path: Path, size=(320, 180)) -> Path:
    """Two cartoon faces side by side; at frame 45 a cut to another scene where they stand where they stood, so
    only the cut, not the boxes, can tell the tracker that these are other shots."""
    vm = load_video_maker()
    w, h = size
    patches = vm.synthetic_patches(2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size)
    for shot in range(2):
        background = vm._background(w, h)
        if shot:
            background = 255 - cv2.flip(background, -1)
        for i in range(SHOT):
            frame = background.copy()
            for k, patch in enumerate(patches if shot == 0 else patches[::-1]):
                vm._paste(frame, patch, w * (0.27 + 0.46 * k) + 3 * np.sin(i / 5) + 4 * shot, h / 2, int(h * 0.55))
            writer.write(frame)
    writer.release()
    return path


def analyze(cwd: Path, *words: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), *words, "detector=haar", "hydra.run.dir=run"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyze")
    two_shot_clip(tmp / "clip.avi")
    (tmp / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)  # a header, no video
    photos = tmp / "photos"
    photos.mkdir()
    for i, face in enumerate(draw_faces(["happy", "surprise", "angry"], 160, np.random.default_rng(0), bgr=True)):
        cv2.imwrite(str(photos / f"p{i}.png"), face)
    (photos / "notes.png").write_bytes(b"not an image")
    mine = tmp / "analysis" / "clip"
    mine.mkdir(parents=True)
    (mine / "mine.txt").write_text("the user's own file")  # a folder of that name that is no analysis of the clip
    first = analyze(tmp, "clip.avi", "broken.mp4", "photos", "analyze.annotate=true")
    second = analyze(tmp, "clip.avi", "broken.mp4", "photos")
    return tmp, first, second


def test_a_broken_file_is_named_and_skipped_and_the_rest_analysed(batch):
    tmp, first, _ = batch
    assert first.returncode == 2 and "Traceback" not in first.stderr
    assert "broken.mp4" in first.stderr and "1 of 3 inputs were not analysed" in first.stderr
    assert "notes.png: not an image OpenCV can read (skipped)" in first.stderr
    assert "clip.avi: 90 frames" in first.stdout and "2 cuts" not in first.stdout and "1 cut" in first.stdout
    assert not (tmp / "analysis" / "broken").exists()  # nothing left of it


def test_the_video_folder_holds_every_file_and_no_track_crosses_the_cut(batch):
    tmp, _, _ = batch
    assert (tmp / "analysis" / "clip" / "mine.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in (tmp / "analysis" / "clip").iterdir()) == ["mine.txt"]  # untouched
    out = tmp / "analysis" / "clip-1"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"]["path"] == str((tmp / "clip.avi").absolute())
    assert summary["input"]["size"] == (tmp / "clip.avi").stat().st_size
    assert summary["frames"] == 2 * SHOT and summary["cuts_s"] == [pytest.approx(SHOT / FPS, abs=0.05)]
    faces = rows(out / "faces.csv")
    with (out / "faces.csv").open() as f:
        header = next(csv.reader(f))
    assert header == columns(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"])
    assert len(faces) == summary["faces"] >= 2 * SHOT * 2 * 0.9  # two faces a frame (Haar misses a few)
    before = {r["face_id"] for r in faces if int(r["frame"]) < SHOT}
    after = {r["face_id"] for r in faces if int(r["frame"]) >= SHOT}
    assert len(before) == len(after) == 2 and not before & after
    people = rows(out / "people.csv")
    assert sorted(p["person"] for p in people) == sorted(before | after)
    for p in people:
        assert 1.0 <= float(p["seconds"]) <= 1.6 and float(p["first_s"]) < float(p["last_s"])
        shares = [float(v) for k, v in p.items() if k.startswith("share_")]
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
        assert p["label"] == max(
            (k[len("share_") :] for k in p if k.startswith("share_")), key=lambda c: float(p[f"share_{c}"])
        )
        mine = [r for r in faces if r["face_id"] == p["person"]]
        best = max(mine, key=lambda r: float(r["p_happy"]))
        assert float(p["peak_happy"]) == pytest.approx(float(best["p_happy"]), abs=1e-4)
        assert float(p["peak_happy_s"]) == pytest.approx(float(best["media_s"]), abs=1e-3)
    assert {p["label"] for p in people} == {"happy", "angry"}  # the cartoons' own faces, both shots
    timeline = cv2.imread(str(out / "timeline.png"))
    assert timeline is not None and timeline.shape[0] > 4 * 100  # the legend and a panel per person
    assert summary["files"] == ["faces.csv", "people.csv", "timeline.png", "annotated.mp4", "summary.json"]
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 2 * SHOT and video.get(cv2.CAP_PROP_FPS) == FPS


def test_the_photo_folder_holds_a_row_per_face_and_a_contact_sheet(batch):
    tmp, _, _ = batch
    out = tmp / "analysis" / "photos"
    faces = rows(out / "faces.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(faces) == summary["faces"] >= 2 and summary["photos"] == 4
    assert {Path(r["file"]).name for r in faces} <= {"p0.png", "p1.png", "p2.png"}
    for r in faces:
        probs = [float(v) for k, v in r.items() if k.startswith("p_")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-3) and r["label"] == max(
            (k[2:] for k in r if k.startswith("p_")), key=lambda c: float(r[f"p_{c}"])
        )
        assert int(r["w"]) > 20 and r["landmarks"] == ""  # Haar gives boxes, no landmarks
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] >= 2 * 96
    assert summary["skipped"] == ["photos/notes.png: not an image OpenCV can read"]  # as the command line named it


def test_a_second_run_skips_the_finished_inputs(batch):
    tmp, _, second = batch
    assert second.returncode == 2 and "broken.mp4" in second.stderr  # still broken, still named
    assert second.stdout.count("already analysed") == 2
    assert sorted(p.name for p in (tmp / "analysis").iterdir()) == ["clip", "clip-1", "photos"]


def test_inputs_from_words_globs_and_folders(tmp_path):
    two_shot_clip(tmp_path / "a.avi")
    (tmp_path / "b.txt").write_text("x")
    for name in ("x.png", "y.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8), np.uint8))
    inputs, problems = collect_inputs([str(tmp_path / "*.png"), str(tmp_path / "a.avi"), str(tmp_path / "b.txt")])
    assert [(i.kind, i.name) for i in inputs] == [("video", "a"), ("photos", tmp_path.name)]
    assert [p.name for p in inputs[1].files] == ["x.png", "y.png"]
    assert problems == [
        f"{tmp_path / 'b.txt'}: not a video (.mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg .wmv) nor an image"
    ]
    assert collect_inputs([str(tmp_path / "nope*.mp4")])[1] == [
        f"{tmp_path / 'nope*.mp4'}: no such file or folder, and no file matches it"
    ]
    folder = output_folder(tmp_path / "out", inputs[0])
    assert folder == tmp_path / "out" / "a" and output_folder(tmp_path / "out", inputs[0]) == tmp_path / "out" / "a-1"


def test_a_word_naming_a_file_is_an_input_even_with_an_equals_sign(tmp_path, monkeypatch):
    """analyze.py's words: settings and Hydra's flags apart from the inputs, and a file whose name has a ``=`` (or a
    quoted ``~/...``) is still an input."""
    from mimic.cli import analyze_words

    monkeypatch.chdir(tmp_path)
    (tmp_path / "take=2.mp4").write_bytes(b"")
    (tmp_path / "take=3.mp4").write_bytes(b"")
    monkeypatch.setenv("HOME", str(tmp_path))
    args = ["take=2.mp4", "analyze.every=2", "-m", "~/take=3.mp4", "clip.mp4", "~analyze.out", "--cfg", "job"]
    args += ["+x=1", "take=*.mp4", "nope=*.mp4"]
    inputs, settings = analyze_words(args)
    assert inputs == ["take=2.mp4", "~/take=3.mp4", "clip.mp4", "take=*.mp4"]
    assert settings == ["analyze.every=2", "-m", "~analyze.out", "--cfg", "job", "+x=1", "nope=*.mp4"]
    assert collect_inputs(["~nobody-here/clip.mp4"])[1] == [
        "~nobody-here/clip.mp4: no such file or folder, and no file matches it"
    ]


def test_the_python_api(tmp_path):
    from mimic import EmotionRecognizer

    clip = two_shot_clip(tmp_path / "clip.avi")
    video = EmotionRecognizer(detector="haar").analyze_video(clip, every=3)
    assert video.frames == 2 * SHOT // 3 and len(video.cuts) == 1
    assert set(video.rows[0]) >= {"face_id", "media_s", "label", "p_happy"} and video.faces == len(video.rows)
    assert len(video.people) == 4 and all(p["frames"] >= 10 for p in video.people)
    try:
        table = video.to_pandas()
    except UserError as e:
        assert "pip install pandas" in str(e)
    else:
        assert len(table) == len(video.rows)
    with pytest.raises(UserError, match="every=0"):
        EmotionRecognizer(detector="haar").analyze_video(clip, every=0)
    with pytest.raises(UserError, match="nope.mp4"):
        EmotionRecognizer(detector="haar").analyze_video(tmp_path / "nope.mp4")


def test_the_benchmark_prints_its_figures(tmp_path, capsys):
    from hydra.core.global_hydra import GlobalHydra  # the benchmark composes its own config, as a fresh process

    GlobalHydra.instance().clear()
    clip = two_shot_clip(tmp_path / "clip.avi")
    load_script("bench/benchmark_analyze").main([f"video={clip}", "repeats=1", "detector=haar", "every=2"])
    out = capsys.readouterr().out
    assert f"analysed {SHOT} frames in" in out and re.search(r"x real time; (1\.[89]\d|2\.00) faces a frame", out)
    assert all(f"\n{stage} " in out for stage in ("decode", "detect", "crop", "classify"))
    assert re.search(rf"classified on the reader thread while the loop was behind: \d+ of {SHOT} frames", out)
    assert "faces found" not in out  # a video of the user's: no boxes to find


def test_the_benchmark_counts_the_made_clips_faces_a_logged_box_hits():
    """Recall on a made clip: every analysed frame's pasted faces, each found when a logged box of that analysed
    frame hits it (with ``every``, analysed frame i is the clip's frame i * every)."""
    recall = load_script("bench/benchmark_analyze").recall
    truth = [[(10, 10, 40, 40), (100, 10, 40, 40)], [(12, 10, 40, 40)], [(14, 10, 40, 40)], []]
    rows = [{"frame": 0, "x": 11, "y": 9, "w": 40, "h": 42}, {"frame": 1, "x": 300, "y": 10, "w": 40, "h": 40}]
    assert recall(rows, truth, 1) == pytest.approx(1 / 4)  # frame 0's first face; frame 1's box is elsewhere
    rows.append({"frame": 1, "x": "14", "y": "10", "w": "40", "h": "40"})  # as faces.csv gives them: text
    assert recall(rows, truth, 2) == pytest.approx(2 / 3)  # analysed frames 0 and 1 are the clip's 0 and 2
