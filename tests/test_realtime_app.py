"""The realtime app end to end, headless: videos of the real portraits (synthetic faces when the shared data is
absent) through `mimic.realtime.window.run`, the CSV it writes, recording, and `realtime.py` itself in a subprocess:
clear errors, ``--list-cameras``, and a kill in the middle of a run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from test_realtime_parts import REPO, YUNET, load_video_maker

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def patches(request) -> list[np.ndarray]:
    """Head patches of the real portraits, or synthetic faces when the shared data is absent."""
    vm = load_video_maker()
    try:
        root = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return vm.synthetic_patches()
    return vm.photo_patches(root / "faces", vm.PORTRAITS)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, patches) -> dict[str, tuple[Path, list]]:
    """name -> (video path, true boxes per frame): ``one`` face, ``two`` faces, ``one-two`` (then two)."""
    vm = load_video_maker()
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for layout, frames in (("one", 40), ("two", 40), ("one-two", 60)):
        path = root / f"{layout}.mp4"
        out[layout] = (path, vm.make_video(path, patches, frames=frames, layout=layout))
    return out


def compose_cfg(ckpt: Path, source, tmp_path: Path, *overrides: str):
    with initialize_config_dir(str(REPO / "src" / "mimic" / "conf"), version_base="1.3"):
        return compose(
            "realtime",
            overrides=[
                f"ckpt={ckpt}",
                f"source={source}",
                "display=false",
                "reactions.sound=false",
                f"log.path={tmp_path / 'faces.csv'}",
                *overrides,
            ],
        )


def run_app(ckpt: Path, source, tmp_path: Path, *overrides: str):
    from mimic.realtime.window import run

    stats = run(compose_cfg(ckpt, source, tmp_path, *overrides))
    with open(stats.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    return stats, rows


def by_frame(rows: list[dict]) -> dict[int, list[dict]]:
    frames = defaultdict(list)
    for r in rows:
        frames[int(r["frame"])].append(r)
    return frames


def check_row(r: dict) -> None:
    datetime.fromisoformat(r["timestamp"])
    assert float(r["mono_s"]) >= 0 and float(r["media_s"]) >= 0
    assert r["raw_label"] in CLASSES and r["label"] in CLASSES and r["reaction"] in ("", *CLASSES)
    probs = [float(r[f"p_{c}"]) for c in CLASSES]
    assert abs(sum(probs) - 1) < 1e-3 and float(r["raw_conf"]) == pytest.approx(max(probs), abs=1e-4)
    assert all(int(r[k]) >= 0 for k in ("x", "y", "w", "h")) and 0 < float(r["conf"]) <= 1


# ---------------------------------------------------------------------------------------------------------- in process
def test_one_face_keeps_one_id(tiny_checkpoint, videos, tmp_path):
    path, truth = videos["one"]
    stats, rows = run_app(tiny_checkpoint, path, tmp_path)
    frames = by_frame(rows)
    assert stats.frames == len(truth) == 40 and stats.rows == len(rows)
    assert len(frames) >= 0.9 * len(truth) and all(len(v) == 1 for v in frames.values())
    assert {r["face_id"] for r in rows} == {"0"}
    for r in rows:
        check_row(r)
    assert [int(r["frame"]) for r in rows] == sorted(int(r["frame"]) for r in rows)


def test_two_faces_each_keep_their_id_and_side(tiny_checkpoint, videos, tmp_path):
    path, truth = videos["two"]
    stats, rows = run_app(tiny_checkpoint, path, tmp_path)
    frames = by_frame(rows)
    assert sum(len(v) == 2 for v in frames.values()) >= 0.75 * len(truth)
    ids = Counter(r["face_id"] for r in rows)
    (left, n_left), (right, n_right) = ids.most_common(2)
    assert n_left + n_right >= 0.95 * len(rows)
    sides = {fid: {int(r["x"]) + int(r["w"]) / 2 < 320 for r in rows if r["face_id"] == fid} for fid in (left, right)}
    assert sides[left] != sides[right] and all(len(s) == 1 for s in sides.values()), "a face id never changes side"


def test_one_then_two_faces_and_largest_mode(tiny_checkpoint, videos, tmp_path):
    path, truth = videos["one-two"]
    _, rows = run_app(tiny_checkpoint, path, tmp_path)
    first = {r["face_id"] for r in rows if int(r["frame"]) < 30}
    second = Counter(r["face_id"] for r in rows if int(r["frame"]) >= 30)
    assert len(first) == 1 and len([i for i, n in second.items() if n >= 10]) == 2

    _, rows = run_app(tiny_checkpoint, path, tmp_path, "faces=largest")
    assert all(len(v) == 1 for v in by_frame(rows).values()) and len(by_frame(rows)) >= 0.9 * len(truth)


def test_synthetic_faces_stand_in_for_the_photos(tiny_checkpoint, tmp_path):
    """Without the shared data the tests above run on synthetic faces: each must be found in every frame."""
    vm = load_video_maker()
    vm.make_video(tmp_path / "synthetic.mp4", vm.synthetic_patches(), frames=60, layout="one-two")
    stats, rows = run_app(tiny_checkpoint, tmp_path / "synthetic.mp4", tmp_path)
    frames = by_frame(rows)
    assert [len(frames[i]) for i in range(60)] == [1] * 30 + [2] * 30
    assert {r["face_id"] for r in rows if int(r["frame"]) < 30} == {"0"} and len({r["face_id"] for r in rows}) <= 3


def test_a_pipeline_per_stream_takes_frames_from_elsewhere(tiny_checkpoint, videos, tmp_path):
    """How a web front-end uses it: one pipeline per stream, built from the config and a predictor, fed frames with
    their media time; it finds the faces itself, or takes the ones given."""
    from mimic.faces import Detection
    from mimic.models.predictor import Predictor
    from mimic.realtime.pipeline import Pipeline

    cfg, predictor = compose_cfg(tiny_checkpoint, 0, tmp_path), Predictor(tiny_checkpoint)
    first, second = Pipeline.from_config(cfg, predictor), Pipeline.from_config(cfg, predictor)
    cap = cv2.VideoCapture(str(videos["two"][0]))
    results = [first.step(cap.read()[1], i / 30) for i in range(20)]
    assert [r.index for r in results] == list(range(20)) and results[-1].time == pytest.approx(19 / 30)
    assert sum(len(r.faces) == 2 for r in results) >= 15 and {f.id for r in results for f in r.faces} == {0, 1}
    for face in results[-1].faces:
        assert face.probs.shape == (7,) and face.probs.sum() == pytest.approx(1, abs=1e-4)
        assert face.raw_label == CLASSES[int(face.probs.argmax())] and face.label in CLASSES and 0 < face.conf <= 1
    frame = cap.read()[1]
    alone = second.step(frame, 0.0, [Detection((40, 40, 120, 120), 1.0)])
    assert [(f.id, f.box) for f in alone.faces] == [(0, (40, 40, 120, 120))], "its own ids, its own faces"


def test_yunet_run(tiny_checkpoint, videos, shared_data, tmp_path):
    path, truth = videos["two"]
    stats, rows = run_app(
        tiny_checkpoint, path, tmp_path, "detector=yunet", f"detector.model_path={shared_data / YUNET}"
    )
    assert sum(len(v) == 2 for v in by_frame(rows).values()) >= 0.9 * len(truth)
    assert all(0 < float(r["det_score"]) <= 1 for r in rows)


def test_record_writes_the_annotated_video(tiny_checkpoint, videos, tmp_path):
    path, truth = videos["one"]
    out = tmp_path / "annotated.mp4"
    run_app(tiny_checkpoint, path, tmp_path, f"record={out}", "max_frames=10", "smoothing.enabled=false")
    cap, src = cv2.VideoCapture(str(out)), cv2.VideoCapture(str(path))
    n, differs = 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        _, original = src.read()
        differs += np.abs(frame.astype(int) - original).mean() > 2
        n += 1
    assert n == 10 and differs == 10, "every recorded frame carries the overlay"


def test_image_folder_source(tiny_checkpoint, videos, tmp_path):
    path, _ = videos["one"]
    folder = tmp_path / "frames"
    folder.mkdir()
    cap = cv2.VideoCapture(str(path))
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), cap.read()[1])
    stats, rows = run_app(tiny_checkpoint, folder, tmp_path)
    assert stats.frames == 5 and len(rows) >= 4 and float(rows[-1]["media_s"]) == pytest.approx(int(rows[-1]["frame"]))


def test_a_camera_that_stops_mid_run_ends_cleanly_with_its_rows(tiny_checkpoint, videos, tmp_path, monkeypatch):
    from mimic.realtime import sources

    path, _ = videos["one"]
    real_capture = cv2.VideoCapture

    class StoppingCamera:  # a camera giving the video's first 12 frames, then nothing
        def __init__(self, *_):
            self.video, self.count = real_capture(str(path)), 0

        def isOpened(self):  # noqa: N802  (OpenCV's name)
            return True

        def set(self, *_):
            return True

        def get(self, _):
            return 30.0

        def read(self):
            self.count += 1
            return self.video.read() if self.count <= 12 else (False, None)

        def release(self):
            self.video.release()

    monkeypatch.setattr(sources.cv2, "VideoCapture", StoppingCamera)
    stats, rows = run_app(tiny_checkpoint, 0, tmp_path, "camera.retries=2", "camera.retry_wait=0.01")
    assert stats.frames == 12 and len(rows) >= 10 and {r["face_id"] for r in rows} == {"0"}


# ---------------------------------------------------------------------------------------------------------- realtime.py
def realtime(*args: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDL_AUDIODRIVER": "dummy"}
    return subprocess.run(
        [sys.executable, "realtime.py", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "error: " in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.mark.slow  # realtime.py in a process of its own, per case
@pytest.mark.parametrize(
    "case, message",
    [("junk", "is not a mimic checkpoint"), ("missing", "checkpoint not found")],
)
def test_bad_checkpoint_is_a_clear_error(tmp_path, case, message):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"definitely not a checkpoint")
    ckpt = {"junk": [f"ckpt={bad}"], "missing": [f"ckpt={tmp_path / 'nope.ckpt'}"]}[case]
    assert_user_error(realtime(*ckpt, "display=false", tmp_path=tmp_path), message)


@pytest.mark.slow  # realtime.py in a process of its own
def test_missing_camera_is_a_clear_error(tiny_checkpoint, tmp_path):
    proc = realtime(f"ckpt={tiny_checkpoint}", "source=9", "camera.probe=4", "display=false", tmp_path=tmp_path)
    assert_user_error(proc, "could not open camera 9", "indices tried: 9, then 0-3", "--list-cameras")


@pytest.mark.slow  # realtime.py in a process of its own
def test_missing_yunet_model_is_a_clear_error(tiny_checkpoint, tmp_path):
    proc = realtime(
        f"ckpt={tiny_checkpoint}",
        "detector=yunet",
        f"detector.model_path={tmp_path / 'yunet.onnx'}",
        "display=false",
        tmp_path=tmp_path,
    )
    assert_user_error(proc, "model file not found", "yunet.onnx", "Download")


def test_list_cameras(tmp_path):
    proc = realtime("--list-cameras", "display=false", "camera.probe=3", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no camera opened at indices 0-2" in proc.stdout or "index  size" in proc.stdout


@pytest.mark.slow  # a 300-frame clip played in real time, then killed
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_kill_mid_run_leaves_a_csv_whose_every_row_parses(tiny_checkpoint, patches, tmp_path, sig):
    vm = load_video_maker()
    video = tmp_path / "long.mp4"
    vm.make_video(video, patches, frames=300, layout="one-two")
    log = tmp_path / "faces.csv"
    env = {**os.environ, "SDL_AUDIODRIVER": "dummy"}
    cmd = [
        sys.executable,
        "realtime.py",
        f"ckpt={tiny_checkpoint}",
        f"source={video}",
        "display=false",
        "pace=true",
        f"log.path={log}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "reactions.sound=false",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file() and log.read_text().count("\n") > 20:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[0]}"
        proc.send_signal(sig)
        out = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 0 and "frames in" in out, out
    else:
        assert proc.returncode == -signal.SIGKILL
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert 20 <= len(rows) < 400
    for r in rows:
        assert None not in r and None not in r.values(), f"a partial row: {r}"
        check_row(r)
