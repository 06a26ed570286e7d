"""The realtime app's parts one by one: detectors, tracker, smoothing, predictor, sources, CSV log, assets, reactions,
sound and overlay. End-to-end runs are in test_realtime_app.py, windows in test_realtime_gui.py."""

from __future__ import annotations

import csv
import importlib.util
import logging
import threading
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import Detection, largest_face
from mimic.haar import HaarDetector
from mimic.labels import FER2013_CLASSES
from mimic.realtime.assets import default_assets
from mimic.realtime.csvlog import CsvLog
from mimic.realtime.overlay import _names_panel, _overlaps, draw, place_panels
from mimic.realtime.reactions import Reactions, SoundPlayer
from mimic.realtime.result import Face, FrameResult, columns
from mimic.realtime.smoothing import LabelSmoother
from mimic.realtime.sources import (
    FILE_READ_AHEAD,
    FrameSource,
    ImageFolderSource,
    VideoSource,
    open_source,
    read_ahead,
)
from mimic.realtime.tracker import IoUTracker, SceneCuts, iou
from mimic.yunet import YuNetDetector

REPO = Path(__file__).resolve().parents[1]
YUNET = "models/face_detection_yunet_2023mar.onnx"  # the same file in the shared data


def load_video_maker():
    spec = importlib.util.spec_from_file_location("make_test_video", REPO / "scripts" / "bench" / "make_test_video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo_frames(shared_data) -> list[tuple[np.ndarray, list]]:
    """A few 640x360 frames with the real portraits pasted in: (frame, true face boxes)."""
    vm = load_video_maker()
    patches = vm.photo_patches(shared_data / "faces", vm.PORTRAITS)
    assert len(patches) == 2, "both portraits should have a Haar-detectable face"
    frames = []
    for layout in ("one", "two"):
        frame = vm._background(640, 360)
        if layout == "one":
            boxes = [vm._paste(frame, patches[0], 320, 180, 230)]
        else:
            boxes = [vm._paste(frame, p, 170 + 300 * k, 180, 190) for k, p in enumerate(patches)]
        frames.append((frame, boxes))
    return frames


def _matches(found: list[Detection], truth: list, min_iou: float = 0.3) -> bool:
    return all(any(iou(d.box, t) >= min_iou for d in found) for t in truth)


# ---------------------------------------------------------------------------------------------------------- detectors
def test_haar_finds_the_real_faces(photo_frames):
    detector = load_detector("haar")
    for frame, truth in photo_frames:
        found = detector.detect(frame)
        assert len(found) == len(truth) and _matches(found, truth)
        assert all(isinstance(v, int) for d in found for v in d.box)


def test_yunet_finds_the_real_faces(photo_frames):
    detector = load_detector("yunet")
    for frame, truth in photo_frames:
        found = detector.detect(frame)
        assert len(found) == len(truth) and _matches(found, truth)
        assert all(0 <= d.score <= 1 for d in found)
    assert detector.detect(np.zeros((360, 640, 3), np.uint8)) == []


def test_detectors_take_gray_frames_and_find_nothing_in_noise(photo_frames):
    frame, truth = photo_frames[0]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert _matches(HaarDetector().detect(gray), truth)
    assert HaarDetector().detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_largest_face_and_a_missing_cascade():
    small, big = Detection((0, 0, 10, 10), 0.9), Detection((5, 5, 40, 40), 0.5)
    assert largest_face([small, big]) is big and largest_face([]) is None
    with pytest.raises(UserError, match="cascade"):
        HaarDetector(cascade="missing_cascade.xml")


def test_missing_yunet_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"detector.model_path: model file not found: .*nope.onnx"):
        YuNetDetector(model_path=str(tmp_path / "nope.onnx"))


# ---------------------------------------------------------------------------------------------------------- tracker
def test_tracker_keeps_ids_while_faces_move_and_drops_lost_ones():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=2)
    ids = []
    for step in range(10):
        dets = [Detection((50 + 4 * step, 50, 80, 80), 1.0), Detection((400 - 3 * step, 60, 90, 90), 1.0)]
        seen, ended = tracker.update(dets if step % 2 == 0 else dets[::-1])
        ids.append(sorted((t.box[0] < 250, t.id) for t in seen))
        assert ended == []
    assert all(i == ids[0] for i in ids) and {i for _, i in ids[0]} == {0, 1}
    for _ in range(2):
        seen, ended = tracker.update([Detection((400, 60, 90, 90), 1.0)])
        assert ended == []
    seen, ended = tracker.update([Detection((400, 60, 90, 90), 1.0)])
    assert len(ended) == 1 and len(tracker.tracks) == 1
    seen, _ = tracker.update([Detection((400, 60, 90, 90), 1.0), Detection((10, 200, 60, 60), 1.0)])
    assert seen[1].id == 2, "a new face gets a new id"


def _shot(seed: int, frames: int) -> list[np.ndarray]:
    """``frames`` frames of one shot: a seeded scene of soft blobs, the camera panning 2 px a frame."""
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.random((400, 760)).astype(np.float32), (0, 0), 10)
    scene = cv2.normalize(scene, None, 20, 235, cv2.NORM_MINMAX).astype(np.uint8)
    return [cv2.cvtColor(scene[20:380, 2 * i : 2 * i + 640], cv2.COLOR_GRAY2BGR) for i in range(frames)]


def _blend(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return cv2.addWeighted(a, 1 - w, b, w, 0)


def test_scene_cuts_are_found_and_fades_are_not():
    a, b, c, d = _shot(1, 20), _shot(2, 30), _shot(3, 20), _shot(4, 12)
    black = np.zeros_like(a[0])
    clip = [*a, *b[:15]]  # 20: a cut
    clip += [_blend(b[15 + i], c[i], (i + 1) / 15) for i in range(15)]  # 35-49: a dissolve
    clip += c[15:] + [_blend(c[-1], black, (i + 1) / 10) for i in range(10)] + [black] * 3  # a fade out
    clip += [_blend(black, d[i], (i + 1) / 12) for i in range(12)]  # and in, to another shot: a fade, not a cut
    clip += [np.clip(d[-1].astype(np.float32) * 1.6 + 10, 0, 255).astype(np.uint8)]  # a light switched on
    clip += _shot(1, 5)  # back to the first shot: a cut
    cuts = SceneCuts(threshold=0.5)
    found = [i for i, frame in enumerate(clip) if cuts.update(frame)]
    assert found == [20, len(clip) - 5]
    gray = SceneCuts(threshold=0.5)
    assert [i for i, f in enumerate(clip) if gray.update(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))] == found


def test_a_close_fast_face_is_not_a_cut(tmp_path):
    """A face filling half the frame, swinging a third of its width and zooming within 40 frames (make_test_video's
    ``one``), and a camera panning 12 px a frame: no cut; the same clip's jump to another layout is one."""
    vm = load_video_maker()
    patches = vm.synthetic_patches(2)
    for layout, frames, expected in (("one", 40, []), ("one-two", 60, [30])):
        vm.make_video(tmp_path / f"{layout}.avi", patches, frames=frames, layout=layout)
        video, cuts = cv2.VideoCapture(str(tmp_path / f"{layout}.avi")), SceneCuts()
        found = [i for i in range(frames) if cuts.update(video.read()[1])]
        assert found == expected, layout
    scene = _shot(5, 1)[0]
    wide = cv2.resize(scene, (1000, 360))
    cuts = SceneCuts()
    assert not any(cuts.update(wide[:, 12 * i : 12 * i + 640]) for i in range(30))


def test_no_track_crosses_a_cut():
    """Two faces stay where they were across a cut (an interview's reverse shot): after it they are new ids."""
    clip = _shot(1, 10) + _shot(2, 10)
    boxes = [Detection((100, 100, 80, 80), 1.0), Detection((400, 120, 80, 80), 1.0)]
    tracker, ids = IoUTracker(), []
    for i, frame in enumerate(clip):
        seen, ended = tracker.update(boxes, frame)
        ids.append([t.id for t in seen])
        assert (sorted(ended) == [0, 1]) == (i == 10)
    assert ids[:10] == [[0, 1]] * 10 and ids[10:] == [[2, 3]] * 10
    never = IoUTracker(cut_correlation=None)
    assert {tuple(t.id for t in never.update(boxes, f)[0]) for f in clip} == {(0, 1)}


# ---------------------------------------------------------------------------------------------------------- smoothing
def test_smoothing_stops_flicker_at_a_class_boundary():
    rng = np.random.default_rng(0)
    on, off = LabelSmoother(half_life=0.1, margin=0.1), LabelSmoother(enabled=False)
    switches = {"on": 0, "off": 0}
    last = {"on": None, "off": None}
    for i in range(200):
        a = 0.45 + rng.uniform(-0.06, 0.06)
        p = np.array([a, 0.9 - a, 0.1])
        for name, s in (("on", on), ("off", off)):
            label, probs = s.update(p, i / 30)
            switches[name] += last[name] is not None and label != last[name]
            last[name] = label
    assert switches["off"] > 40 and switches["on"] <= 2
    for i in range(200, 215):  # a real change still comes through, within half a second
        label, probs = on.update(np.array([0.05, 0.05, 0.9]), i / 30)
    assert label == 2 and abs(probs.sum() - 1) < 1e-6
    with pytest.raises(UserError, match="smoothing.half_life"):
        LabelSmoother(half_life=-1)
    with pytest.raises(UserError, match="smoothing.margin"):
        LabelSmoother(margin=2)


def test_smoothing_follows_media_time_not_frames():
    """A change of expression shows after the same media time at 10 and at 60 frames/s (within a frame), and a
    frame whose time does not advance counts as the last step, so the average never freezes."""
    before, after = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1])

    def shown_after(fps: float) -> float:
        s = LabelSmoother(half_life=0.2, margin=0.1)
        for i in range(int(fps)):
            s.update(before, i / fps)
        t0 = 1.0
        for i in range(int(5 * fps)):
            if s.update(after, t0 + i / fps)[0] == 1:
                return i / fps
        raise AssertionError("the change never showed")

    slow, fast = shown_after(10.0), shown_after(60.0)
    assert 0.1 <= fast <= 0.4 and abs(slow - fast) <= 0.1 + 1e-9, (slow, fast)
    assert LabelSmoother(half_life=0).update(after, 0.0)[0] == 1  # no averaging
    stuck = LabelSmoother(half_life=0.2, margin=0.1)
    stuck.update(before, 5.0)
    labels = [stuck.update(after, 5.0)[0] for _ in range(10)]  # a source whose clock is stuck
    assert labels[-1] == 1


# ---------------------------------------------------------------------------------------------------------- predictor
def test_predictor_matches_the_lightning_module(tiny_checkpoint):
    from mimic.models.classifier import EmotionClassifier
    from mimic.models.predictor import Predictor
    from mimic.preprocessing import crop_face, preprocess

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    boxes = [(100, 80, 120, 120), (400, 100, 90, 90), (0, 0, 60, 60)]
    for tta in (False, True):
        predictor = Predictor(tiny_checkpoint, tta_flip=tta)
        model = EmotionClassifier.load(tiny_checkpoint, tta_flip=tta)
        x = preprocess([crop_face(frame, b, model.spec) for b in boxes], model.spec)
        expected = model.predict_proba(x).numpy()
        got = predictor.predict(frame, boxes)
        assert got.shape == (3, 7) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert predictor.class_names == model.class_names
    assert predictor.predict(frame, []).shape == (0, 7)


def test_predictor_bad_checkpoint(tmp_path):
    from mimic.models.card import CheckpointError
    from mimic.models.predictor import Predictor

    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a mimic checkpoint"):
        Predictor(bad)
    with pytest.raises(CheckpointError, match="not found"):
        Predictor(tmp_path / "missing.ckpt")


def test_predictor_follows_the_checkpoints_flip_tta_unless_told(tiny_checkpoint, tmp_path, caplog):
    """Live numbers are tested numbers: by default the predictor uses the checkpoint's tta_flip and temperature, as
    evaluation does; an explicit setting overrides it and says so."""
    import torch

    from mimic.models.classifier import EmotionClassifier
    from mimic.models.predictor import Predictor
    from mimic.preprocessing import preprocess

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["tta_flip"] = True
    ckpt["state_dict"]["temperature"] = torch.tensor(2.5)
    flipped = tmp_path / "flip.ckpt"
    torch.save(ckpt, flipped)
    faces = [np.random.default_rng(i).integers(0, 256, (70, 60, 3), dtype=np.uint8) for i in range(3)]
    model = EmotionClassifier.load(flipped)
    want = model.predict_proba(preprocess(faces, model.spec)).numpy()
    with caplog.at_level(logging.INFO, logger="mimic.models.predictor"):
        default = Predictor(flipped)
    assert default.tta_flip and "flip TTA" not in caplog.text
    np.testing.assert_allclose(default.predict_crops(faces), want, atol=1e-6)
    with caplog.at_level(logging.INFO, logger="mimic.models.predictor"):
        off = Predictor(flipped, tta_flip=False, backend="torch")
    assert not off.tta_flip and "flip TTA False by predictor.tta_flip (the checkpoint says True)" in caplog.text
    assert np.abs(off.predict_crops(faces) - want).max() > 1e-4


def test_the_app_loads_a_checkpoint_without_importing_lightning(tiny_checkpoint):
    """Startup time (issue 5: under 3 s): the app and its predictor must not pull in Lightning or torchmetrics, which
    cost about 1.5 s to import here. A fresh interpreter, so that this test session's imports do not count."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mimic.realtime.window import run\n"
        "from mimic.models.predictor import Predictor\n"
        f"p = Predictor({str(tiny_checkpoint)!r})\n"
        "heavy = [m for m in ('lightning', 'pytorch_lightning', 'torchmetrics') if m in sys.modules]\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "none"


# ---------------------------------------------------------------------------------------------------------- sources
def test_video_and_folder_sources(tmp_path):
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(7):
        writer.write(np.full((48, 64, 3), i * 30, np.uint8))
    writer.release()
    src = open_source(str(video))
    assert isinstance(src, VideoSource) and src.fps == 25
    frames = [src.read() for _ in range(8)]
    assert all(f is not None for f in frames[:7]) and frames[7] is None and src.index == 6
    assert src.time == pytest.approx(6 / 25)

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((20, 30, 3), i, np.uint8))
    (folder / "broken.jpg").write_text("nope")
    src = open_source(folder)
    assert isinstance(src, ImageFolderSource)
    assert [src.read() is not None for _ in range(4)] == [True, True, True, False]

    with pytest.raises(UserError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        open_source(tmp_path / "empty")


class CountingSource(FrameSource):
    """``n`` frames whose pixels hold their index; counts the reads, and the threads that read."""

    def __init__(self, n: int, live: bool = False) -> None:
        self.n, self.live, self.reads, self.threads = n, live, 0, set()

    def read(self) -> np.ndarray | None:
        self.reads += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(0.002)
        if self.index + 1 >= self.n:
            return None
        self.index += 1
        self.time = self.index / 10
        return np.full((4, 4, 3), self.index, np.uint8)


@pytest.mark.parametrize(("live", "ahead"), [(False, True), (True, True), (False, False)])
def test_read_ahead_hands_every_frame_over_in_order_with_its_own_faces(live, ahead):
    """Frames read and detected ahead on a worker thread reach the caller in order, each with its own media time and
    its own faces, detected in order on one thread; the source is read past its end at most `FILE_READ_AHEAD` times,
    and closing early waits for the reads under way."""
    source, seen, detected_on, cropped_on = CountingSource(30, live), [], set(), set()

    def detect(frame: np.ndarray) -> list[Detection]:
        detected_on.add(threading.current_thread().name)
        seen.append(int(frame[0, 0, 0]))
        return [Detection((int(frame[0, 0, 0]), 0, 1, 1), 1.0)]

    def crop(frame: np.ndarray, detections: list[Detection]) -> np.ndarray:  # as Predictor.inputs: the net's input
        cropped_on.add(threading.current_thread().name)
        return np.array([[int(frame[0, 0, 0]) + 100 * d.box[0]] for d in detections], np.float32)

    got = list(read_ahead(source, detect, ahead, crop))
    assert [int(c.frame[0, 0, 0]) for c in got] == list(range(30)) == seen
    assert [c.time for c in got] == pytest.approx([i / 10 for i in range(30)])
    assert [c.detections[0].box[0] for c in got] == list(range(30))
    assert [c.inputs.tolist() for c in got] == [[[101 * i]] for i in range(30)]  # each frame's own faces' input
    assert all(c.decode_s > 0 and c.detect_s >= 0 and c.crop_s >= 0 for c in got)
    assert 31 <= source.reads <= 30 + FILE_READ_AHEAD
    main = threading.current_thread().name
    assert source.threads == detected_on == cropped_on == ({main} if not ahead else source.threads - {main})
    assert len(detected_on) == 1  # one thread detects, in order: the detector keeps state between frames
    assert all(c.inputs is None and c.crop_s is None for c in read_ahead(CountingSource(3), detect, ahead))

    source = CountingSource(1000)
    frames = read_ahead(source, detect, ahead)
    next(frames)
    frames.close()
    reads = source.reads
    time.sleep(0.05)
    assert source.reads == reads <= 1 + FILE_READ_AHEAD  # nothing reads the source once closed


@pytest.mark.parametrize(("live", "ahead"), [(False, True), (True, True), (False, False)])
def test_read_ahead_classifies_on_the_reader_thread_only_while_the_caller_is_behind(live, ahead):
    """With ``classify``, a file's frames that earlier frames are waiting for the caller (the caller is slower than
    the reader) are classified on the reader thread too, each frame's probabilities its own, in order; the caller
    classifies the rest. A camera (one frame ahead) and a run without a reader thread leave every frame to the
    caller."""
    classified_on = []

    def detect(frame: np.ndarray) -> list[Detection]:
        return [Detection((int(frame[0, 0, 0]), 0, 1, 1), 1.0)]

    def crop(frame: np.ndarray, detections: list[Detection]) -> np.ndarray:
        return np.array([[float(frame[0, 0, 0])]], np.float32)

    def classify(inputs: np.ndarray) -> np.ndarray:
        classified_on.append(threading.current_thread().name)
        return inputs * 2

    got = []
    for c in read_ahead(CountingSource(30, live), detect, ahead, crop, classify):
        got.append(c)
        if c.probs is None:  # the caller classifies this one, slowly: the reader gets ahead
            classify(c.inputs)
            time.sleep(0.01)
    main = threading.current_thread().name
    stolen = [c for c in got if c.probs is not None]
    assert [int(c.frame[0, 0, 0]) for c in got] == list(range(30))
    assert all(c.probs.tolist() == [[2.0 * c.frame[0, 0, 0]]] and c.classify_s >= 0 for c in stolen)
    assert all(c.classify_s is None for c in got if c.probs is None)
    assert len(classified_on) == 30  # each frame classified once, by one thread or the other
    if live or not ahead:
        assert not stolen and set(classified_on) == {main}
    else:
        assert 5 <= len(stolen) <= 25  # the work shared, not all moved
        (reader,) = set(classified_on) - {main}  # the one reader thread
        assert reader.startswith("mimic-reader")


def test_haar_between_full_scans_follows_the_faces(photo_frames):
    """full_every: the calls between full scans look only near the last faces, and find the same faces."""
    frame, truth = photo_frames[1]
    tracking, full = HaarDetector(full_every=4), HaarDetector()
    for dx in range(0, 24, 3):  # the faces drift right a few pixels per frame
        shifted = np.roll(frame, dx, axis=1)
        moved = [(x + dx, y, w, h) for x, y, w, h in truth]
        found = tracking.detect(shifted)
        assert len(found) == 2 and _matches(found, moved, 0.5) and _matches(full.detect(shifted), moved, 0.5)


class FakeCapture:
    """Stands in for cv2.VideoCapture: a camera that gives ``frames`` frames, then nothing."""

    def __init__(self, frames: int) -> None:
        self.left, self.reads = frames, 0

    def isOpened(self) -> bool:  # noqa: N802  (OpenCV's name)
        return True

    def set(self, *_) -> bool:
        return True

    def get(self, _) -> float:
        return 30.0

    def read(self):
        self.reads += 1
        self.left -= 1
        return (True, np.zeros((48, 64, 3), np.uint8)) if self.left >= 0 else (False, None)

    def release(self) -> None:
        pass


def test_a_camera_that_stops_is_retried_then_ends(monkeypatch, caplog):
    from mimic.realtime import sources

    fake = FakeCapture(4)
    monkeypatch.setattr(sources.cv2, "VideoCapture", lambda *_: fake)
    camera = open_source(0, {"retries": 3, "retry_wait": 0.0})
    assert isinstance(camera, sources.CameraSource) and camera.fps == 30.0
    with caplog.at_level(logging.WARNING):
        frames = [camera.read() for _ in range(5)]
    assert [f is not None for f in frames] == [True, True, True, True, False]
    assert fake.reads == 4 + 4 and "stopped delivering frames" in caplog.text  # 1 failed read + 3 retries


def test_missing_camera_lists_the_indices_tried():
    with pytest.raises(UserError, match=r"could not open camera 9 \(indices tried: 9, then 0-2"):
        open_source(9, {"probe": 3})
    with pytest.raises(UserError, match="could not open camera 7"):
        open_source("7", {"probe": 0})


# ---------------------------------------------------------------------------------------------------------- csv log
def _face(face_id: int, box, probs, label: str, reaction: str | None = None) -> Face:
    probs = np.asarray(probs)
    return Face(face_id, box, 0.9, None, probs, label, float(probs.max()), probs, label, float(probs.max()), reaction)


def test_csv_log_writes_whole_rows_and_flushes_each_frame(tmp_path):
    names = ["happy", "sad"]
    path = tmp_path / "run" / "faces.csv"
    log = CsvLog(path, names, model="tiny.ckpt")
    faces = [_face(3, (1, 2, 3, 4), [0.8, 0.2], "happy", "happy"), _face(4, (9, 9, 5, 5), [0.3, 0.7], "sad")]
    log.write(FrameResult(7, 0.25, "2024-01-01T00:00:00.000+00:00", 0.1, faces))
    rows = list(csv.DictReader(path.open()))  # readable before close: nothing waits in a buffer
    assert list(rows[0]) == columns(names) and len(rows) == 2
    assert rows[0] == {
        "timestamp": "2024-01-01T00:00:00.000+00:00", "mono_s": "0.1", "media_s": "0.25", "frame": "7",
        "face_id": "3", "x": "1", "y": "2", "w": "3", "h": "4", "det_score": "0.9", "raw_label": "happy",
        "raw_conf": "0.8", "label": "happy", "conf": "0.8", "reaction": "happy", "model": "tiny.ckpt",
        "p_happy": "0.8", "p_sad": "0.2",
    }  # fmt: skip
    assert rows[1]["reaction"] == "" and rows[1]["p_sad"] == "0.7"
    log.write(FrameResult(8, 0.5, "2024-01-01T00:00:00.250+00:00", 0.2, []))
    assert log.rows == 2
    log.close()
    assert path.read_text().count("\n") == 3, "a frame without faces writes nothing"


def test_csv_log_never_opens_an_existing_file(tmp_path):
    path = tmp_path / "faces.csv"
    path.write_text("mine\n")
    with pytest.raises(FileExistsError):
        CsvLog(path, ["happy"])
    assert path.read_text() == "mine\n"


# ---------------------------------------------------------------------------------------------------------- assets
def test_default_assets_are_generated_once(tmp_path):
    names = ["angry", "happy", "my class"]
    first = default_assets(names, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for pair in first.values() for p in pair}
    time.sleep(0.01)
    assert default_assets(names, tmp_path) == first
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    for image, sound in first.values():
        img = cv2.imread(str(image))
        assert img is not None and img.shape == (240, 240, 3) and img.std() > 20
        with wave.open(str(sound)) as w:
            assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getnframes() > 0.1 * w.getframerate()
    assert len({p.read_bytes() for _, p in first.values()}) == 3, "every class has its own sound"


# ---------------------------------------------------------------------------------------------------------- reactions
def _reactions(tmp_path, **kw) -> Reactions:
    kw = {"popups": False, "sound": False, "hold_s": 1.0, "cooldown_s": 5.0, "assets_dir": tmp_path, **kw}
    return Reactions(["angry", "happy", "neutral"], **kw)


def test_reactions_fire_after_hold_and_respect_cooldown(tmp_path):
    r = _reactions(tmp_path, popups=True)  # update only decides: no picture opens here
    fired = [
        (t, r.update(0, label, t))
        for t, label in [
            (0.0, "happy"),
            (0.5, "happy"),
            (1.0, "happy"),
            (1.5, "happy"),  # fires at 1.0, once
            (2.0, "angry"),
            (3.5, "angry"),  # held, but inside the cooldown
            (6.0, "angry"),  # cooldown over: fires
            (6.5, "neutral"),
            (9.0, "neutral"),
            (12.0, "neutral"),
        ]
    ]  # skipped class: never
    assert [(t, f) for t, f in fired if f] == [(1.0, "happy"), (6.0, "angry")]
    assert r.update(1, "happy", 20.0) is None and r.update(1, "happy", 21.0) == "happy", "faces are separate"
    r.close()


def test_reactions_config_errors(tmp_path):
    with pytest.raises(UserError, match="per_class names"):
        _reactions(tmp_path, per_class={"joy": {"image": None}})
    with pytest.raises(UserError, match="sound: no such file"):
        _reactions(tmp_path, sound=True, per_class={"happy": {"sound": str(tmp_path / "none.wav")}})
    r = _reactions(tmp_path, popups=True, per_class={"happy": {"image": None}})
    assert set(r.images) == {"angry"}, "null switches a class's picture off; neutral is skipped"
    r.close()


# ---------------------------------------------------------------------------------------------------------- sound
def _play(tmp_path, monkeypatch, driver: str) -> SoundPlayer:
    monkeypatch.setenv("SDL_AUDIODRIVER", driver)
    monkeypatch.setenv("SDL_DISKAUDIOFILE", str(tmp_path / "sdl.raw"))
    monkeypatch.setenv("SDL_DISKAUDIODELAY", "1")
    pytest.importorskip("pygame")
    sound = default_assets(["happy"], tmp_path)["happy"][1]
    player = SoundPlayer()
    start = time.perf_counter()
    player.play(sound)
    assert time.perf_counter() - start < 0.05, "play() must not block"
    player.close()
    return player


def test_sound_plays_through_sdl_disk_driver(tmp_path, monkeypatch):
    player = _play(tmp_path, monkeypatch, "disk")
    assert player.available and player.played == 1
    assert (tmp_path / "sdl.raw").stat().st_size > 1000


def test_sound_plays_through_sdl_dummy_driver(tmp_path, monkeypatch):
    player = _play(tmp_path, monkeypatch, "dummy")
    assert player.available and player.played == 1


def test_no_audio_device_warns_once_and_carries_on(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        player = _play(tmp_path, monkeypatch, "no_such_sdl_driver")
    assert player.available is False and player.played == 0
    assert len([r for r in caplog.records if "no sound" in r.getMessage()]) == 1


# ---------------------------------------------------------------------------------------------------------- overlay
def test_overlay_draws_boxes_bars_and_fps():
    img = np.zeros((360, 640, 3), np.uint8)
    names = ["angry", "happy", "neutral"]
    faces = [
        _face(0, (100, 100, 120, 120), [0.1, 0.8, 0.1], "happy"),
        _face(1, (560, 250, 70, 70), [0.6, 0.3, 0.1], "angry"),
    ]  # bars must go left of it
    out = draw(img, faces, names, fps=31.0)
    assert out is img and (img.sum(axis=2) > 0).mean() > 0.02
    assert img[100:220, 100].any() and img[5:25, 5:120].any()


def test_bars_never_cover_another_face():
    """A crowd of faces: every face keeps its box and label, and every bar panel drawn covers no other face's box and
    no other panel; the largest face always gets its bars."""
    names = list(FER2013_CLASSES)
    rng = np.random.default_rng(3)
    for trial in range(20):
        boxes = []
        while len(boxes) < 7:  # seven faces that do not overlap one another
            side = int(rng.integers(40, 110))
            box = (int(rng.integers(0, 640 - side)), int(rng.integers(20, 360 - side)), side, side)
            if not any(_overlaps(box, b) for b in boxes):
                boxes.append(box)
        faces = [_face(i, b, [1 / 7] * 7, "happy") for i, b in enumerate(boxes)]
        spots = place_panels(boxes, _names_panel(tuple(names)).shape[:2], (360, 640))
        ph, pw = _names_panel(tuple(names)).shape[:2]
        panels = [(*s, pw, ph) for s in spots if s is not None]
        for i, s in enumerate(spots):
            if s is not None:
                assert not any(_overlaps((*s, pw, ph), b) for j, b in enumerate(boxes) if j != i), trial
                assert 0 <= s[0] <= 640 - pw and 0 <= s[1] <= 360 - ph
        assert all(not _overlaps(a, b) for k, a in enumerate(panels) for b in panels[k + 1 :])
        x, y, w, h = boxes[largest := max(range(7), key=lambda i: boxes[i][2] * boxes[i][3])]
        top = min(y, 360 - ph)
        beside = [(x + w + 6, top), (x - pw - 6, top), (x, y + h + 6), (x, y - ph - 6)]
        room = [
            (cx, cy)
            for cx, cy in beside
            if 0 <= cx <= 640 - pw and 0 <= cy <= 360 - ph and not any(_overlaps((cx, cy, pw, ph), b) for b in boxes)
        ]
        assert spots[largest] == (room[0] if room else None)  # the largest face chooses first
        img = draw(np.zeros((360, 640, 3), np.uint8), faces, names)
        for x, y, w, _ in boxes:  # every face's box is drawn, bars or not
            assert img[y, x : x + w].any()
    lone = place_panels([(560, 250, 70, 70)], (ph, pw), (360, 640))
    assert lone == [(560 - pw - 6, 250)]  # no room on the right: on the left, as before
