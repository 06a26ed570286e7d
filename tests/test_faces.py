"""The bundled YuNet detector: shipped, offline, the default everywhere, with landmarks; and the benchmark's frames."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import subprocess
import sys
import urllib.request
from fnmatch import fnmatch

import cv2
import numpy as np
import pytest
from conftest import REPO, compose, load_script

from mimic import yunet
from mimic.assets import ASSETS, YUNET_MODEL
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import Detection, for_photos, for_stream
from mimic.haar import HaarDetector
from mimic.models.bundled import bundled_path
from mimic.yunet import OpenCVYuNet, OrtYuNet, YuNetDetector


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no network: the detector must not download anything")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _check_face(found: list[Detection], truth: tuple[int, int, int, int]) -> None:
    """One face, over ``truth``, with five landmarks inside its box: eyes above the mouth, the person's right eye (and
    mouth corner) on the image's left."""
    (face,) = found
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    assert truth[0] < cx < truth[0] + truth[2] and truth[1] < cy < truth[1] + truth[3]
    right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    assert right_eye[0] < nose[0] < left_eye[0] and right_mouth[0] < left_mouth[0]


def test_the_bundled_model_is_the_published_file_with_its_licence():
    assert YUNET_MODEL.is_file() and YUNET_MODEL.parent == ASSETS
    assert hashlib.sha256(YUNET_MODEL.read_bytes()).hexdigest() == yunet.YUNET_SHA256
    assert YUNET_MODEL.name == yunet.YUNET_URL.rsplit("/", 1)[-1]
    assert "MIT License" in (ASSETS / "LICENSE.opencv_zoo.face_detection_yunet.txt").read_text()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = [p.name for p in ASSETS.iterdir() if any(fnmatch(p.name, g) for g in package_data["mimic.assets"])]
    assert {YUNET_MODEL.name, "LICENSE.opencv_zoo.face_detection_yunet.txt"} <= set(shipped)


def test_yunet_works_offline_and_finds_a_face_with_landmarks(offline):
    patch = load_script("bench/make_test_video").synthetic_patches(1)[0]
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[100:356, 300:556] = patch
    detector = load_detector("yunet")
    assert detector.model_path == YUNET_MODEL and detector.config["model_sha256"] == yunet.YUNET_SHA256
    _check_face(detector.detect(frame), (300, 100, 256, 256))
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert HaarDetector().detect(frame)[0].landmarks is None


def test_yunet_on_a_real_photo_names_the_landmarks_in_order(offline, shared_data):
    img = cv2.imread(str(shared_data / "faces" / "obama.jpg"))
    _check_face(load_detector("yunet").detect(img), (0, 0, img.shape[1], img.shape[0]))


def test_landmarks_are_in_frame_pixels_when_the_frame_is_downscaled():
    patch = load_script("bench/make_test_video").synthetic_patches(1)[0]
    frame = np.full((960, 1280, 3), 90, np.uint8)
    frame[300:812, 500:1012] = cv2.resize(patch, (512, 512))
    (small,) = YuNetDetector(max_width=320).detect(frame)
    (full,) = YuNetDetector(max_width=None).detect(frame)
    assert np.abs(np.subtract(small.landmarks, full.landmarks)).max() < 30  # 4x downscaled: a few pixels apart
    _check_face([small], (500, 300, 512, 512))


def test_a_missing_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(yunet, "YUNET_MODEL", tmp_path / "gone.onnx")
    with pytest.raises(UserError, match=r"bundled with mimic is missing .*gone.onnx.*detector=haar"):
        YuNetDetector()


def _same_rows_on_both_engines(images: list[np.ndarray]) -> int:
    """onnxruntime's YuNet rows equal cv2.FaceDetectorYN's on every image and threshold; the rows compared."""
    on_ort, on_cv = OrtYuNet(YUNET_MODEL, 0.3, 50), OpenCVYuNet(YUNET_MODEL, 0.3, 50)
    rows = 0
    for image in images:
        for threshold in (0.05, 0.5, 0.9):
            a, b = on_ort.detect(image, threshold), on_cv.detect(image, threshold)
            assert (a is None) == (b is None), (image.shape, threshold)
            if a is not None:
                assert a.shape == b.shape and np.abs(a - b).max() < 0.01, (image.shape, threshold)
                rows += len(a)
    return rows


def test_yunet_on_onnxruntime_gives_the_rows_opencv_gives():
    """The default engine decodes YuNet itself: the same boxes, landmarks and scores as OpenCV, at sizes that are and
    are not multiples of 32 (padded), and on clutter at a low threshold, where NMS has boxes to merge."""
    patches = load_script("bench/make_test_video").synthetic_patches(3)
    frame = np.full((480, 640, 3), 90, np.uint8)
    for (x, y), side, patch in zip([(20, 40), (300, 60), (450, 300)], (220, 160, 120), patches, strict=True):
        frame[y : y + side, x : x + side] = cv2.resize(patch, (side, side))
    noise = np.random.default_rng(0).integers(0, 256, (100, 130, 3), dtype=np.uint8)
    images = [frame, frame[:301, :417], cv2.resize(frame[40:260, 20:240], (96, 96)), frame[300:337, 450:501], noise]
    assert _same_rows_on_both_engines(images) >= 10


def test_yunet_on_onnxruntime_gives_the_rows_opencv_gives_on_real_photos(shared_data):
    photos = [cv2.imread(str(p)) for p in sorted((shared_data / "faces").glob("*.jpg"))]
    assert photos and _same_rows_on_both_engines(photos) >= len(photos)


def test_the_engine_is_onnxruntime_when_installed_else_opencv(monkeypatch, tmp_path):
    assert isinstance(load_detector("yunet").net, OrtYuNet)  # conf/detector/yunet.yaml: engine auto
    assert isinstance(load_detector("yunet", engine="opencv").net, OpenCVYuNet)
    with pytest.raises(UserError, match=r"detector.engine: 'gpu' is not one of auto, onnxruntime, opencv"):
        YuNetDetector(engine="gpu")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else find_spec(n, *a))
    assert isinstance(YuNetDetector().net, OpenCVYuNet)
    with pytest.raises(UserError, match=r"engine=onnxruntime, but onnxruntime is not installed: pip install"):
        YuNetDetector(engine="onnxruntime")


@pytest.mark.parametrize("engine", ["onnxruntime", "opencv"])
def test_a_model_that_is_not_yunet_is_a_clear_error(tmp_path, engine):
    import onnx
    from onnx import TensorProto, helper

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all" * 10)
    with pytest.raises(UserError, match=r"detector.model_path: .*junk.onnx is not a YuNet ONNX model .*bundled"):
        YuNetDetector(model_path=str(junk), engine=engine)
    other = tmp_path / "other.onnx"  # a valid ONNX model with other outputs
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "other", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), other)
    with pytest.raises(UserError, match=r"other.onnx is not a YuNet ONNX model"):
        YuNetDetector(model_path=str(other), engine=engine).detect(np.zeros((64, 64, 3), np.uint8))


def test_importing_the_detectors_leaves_onnx_to_the_detector_that_runs_on_it():
    """onnx and onnxruntime take about a second to import: `OrtYuNet` imports them when it is made, so the capture
    script, Haar and ``engine=opencv`` do not pay it."""
    code = "import sys, mimic.detectors; print(sorted({'onnx', 'onnxruntime'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_quick_looks_shrink_fast_without_aliasing():
    """Video's quick looks shrink their crop by exact halvings, then linearly: fine detail averages out as in an area
    resize (a linear resize alone would sample a 1-px checkerboard into stripes), and a face looks the same."""
    board = np.dstack([(np.indices((250, 250)).sum(0) % 2 * 255).astype(np.uint8)] * 3)
    shrunk = yunet._shrink(board, 96)
    assert shrunk.shape == (96, 96, 3) and shrunk.std() < 2 and abs(shrunk.mean() - 127.5) < 2
    assert cv2.resize(board, (96, 96), interpolation=cv2.INTER_LINEAR).std() > 30
    patch = cv2.resize(load_script("bench/make_test_video").synthetic_patches(1)[0], (250, 250))
    area = cv2.resize(patch, (96, 96), interpolation=cv2.INTER_AREA)
    assert np.abs(yunet._shrink(patch, 96).astype(int) - area).mean() < 2


def test_yunet_is_the_default_detector_everywhere(tmp_path):
    target = "mimic.yunet.YuNetDetector"
    assert compose("realtime", output_dir=tmp_path).detector._target_ == target
    assert compose("train", ["+finetune=webcam"], output_dir=tmp_path).data.sources.webcam.detector._target_ == target
    folder = compose("evaluate", ["data=folder", "data.path=x"], output_dir=tmp_path).data.sources.folder.detector
    assert folder == "yunet" and isinstance(load_detector(folder), YuNetDetector)
    from mimic.data.folders import FolderSource

    assert inspect.signature(FolderSource).parameters["detector"].default == "yunet"
    assert load_script("capture_dataset").parse_args(["label=happy"]).detector == "yunet"
    assert isinstance(load_detector("haar"), HaarDetector)  # still there by name


def test_benchmark_frames_put_the_face_where_they_say():
    bench = load_script("bench/benchmark_faces")
    rng = np.random.default_rng(0)
    face = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (0, 0), 1.5)
    tiles = rng.integers(0, 256, (20, 48, 48), dtype=np.uint8)
    for seed, tilt in [(1, 0.0), (2, 0.0), (3, 20.0)]:
        frame, (x, y, w, h) = bench.face_frame(face, tiles, np.random.default_rng(seed), (0.15, 0.6), tilt)
        assert frame.shape == (480, 640, 3) and w == h and 0.15 * 480 - 1 <= h <= 0.6 * 480 + 1
        assert min(x, y) >= 0 and x + w <= 640 and y + h <= 480
        pasted = cv2.resize(cv2.cvtColor(frame[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY), (48, 48))
        if tilt:  # turned about its middle: a bright spot put there stays at the middle of the square
            spot = cv2.circle(np.zeros((48, 48), np.uint8), (24, 24), 4, 255, -1)
            frame, (x, y, w, h) = bench.face_frame(spot, tiles * 0, np.random.default_rng(seed), (0.4, 0.4), tilt)
            ys, xs = np.nonzero(frame[:, :, 0] > 128)
            assert abs(xs.mean() - (x + w / 2)) < 3 and abs(ys.mean() - (y + h / 2)) < 3
        else:
            off = (
                frame[y : y + h, x + w // 4 : x + w // 4 + w]
                if x + w + w // 4 <= 640
                else frame[y : y + h, x - w // 4 :]
            )
            shifted = cv2.resize(cv2.cvtColor(off[:, :w], cv2.COLOR_BGR2GRAY), (48, 48))
            assert np.corrcoef(pasted.ravel(), face.ravel())[0, 1] > 0.8  # the soft edge and the noise: not 1
            assert np.corrcoef(shifted.ravel(), face.ravel())[0, 1] < 0.5  # a quarter of a face off: not the face
        assert bench.hit((x, y, w, h), (x, y, w, h)) and not bench.hit((x + w, y, w, h), (x, y, w, h))
    assert bench.dark_frame(np.random.default_rng(0)).mean() < 80


def _drifting_face(frames: int, step: int = 4, side: int = 150) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """A synthetic face moving ``step`` pixels right per frame over a gray, noisy 640x480 frame; each with its box."""
    patch = cv2.resize(load_script("bench/make_test_video").synthetic_patches(1)[0], (side, side))
    rng, out = np.random.default_rng(0), []
    for k in range(frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = 100 + step * k, 160
        frame[y : y + side, x : x + side] = patch
        noisy = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
        out.append((noisy, (x, y, side, side)))
    return out


def test_a_second_look_gives_the_face_in_frame_pixels():
    """A face the scan scores under score_threshold is looked at again, enlarged, and comes back with its box and
    landmarks in frame pixels, even in a corner where the look's crop runs past the frame's edge."""
    patch = cv2.resize(load_script("bench/make_test_video").synthetic_patches(1)[0], (120, 120))
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[352:472, 6:126] = patch
    (scanned,) = YuNetDetector(second_look=None, score_threshold=0.5).detect(frame)
    assert scanned.score < 0.999
    (looked,) = YuNetDetector(score_threshold=0.999, second_look=0.1, look_size=240).detect(frame)
    assert looked.score >= 0.5 and looked.score != scanned.score  # found by the look, not the scan
    _check_face([looked], (6, 352, 120, 120))
    assert np.abs(np.subtract(looked.landmarks, scanned.landmarks)).max() < 6  # 2x enlarged: a few pixels apart
    assert YuNetDetector(score_threshold=0.999, second_look=None).detect(frame) == []


def test_yunet_in_video_scans_every_nth_frame_and_follows_the_face_between(monkeypatch):
    detector = YuNetDetector(full_every=4)
    scans, scan = [], detector._full
    monkeypatch.setattr(detector, "_full", lambda frame: scans.append(detector._calls) or scan(frame))
    clip = _drifting_face(9)
    for frame, truth in clip:
        _check_face(detector.detect(frame), truth)
    assert scans == [1, 4, 8]  # between them, only looks near the face found on the call before
    empty = np.full((480, 640, 3), 90, np.uint8)
    assert detector.detect(empty) == [] and scans[-1] == 10  # the face was lost: a full scan at once
    assert detector.detect(empty) == [] and scans[-1] == 11  # no face known: every frame a full scan
    _check_face(detector.detect(clip[0][0]), clip[0][1])  # so a face coming into view is found at once
    still = for_photos(YuNetDetector())  # full_every=1: every call a full scan, as photos need
    assert YuNetDetector().full_every == 15 and still.full_every == 1  # the YAML's video default; photos: 1
    assert all(len(still.detect(f)) == 1 for f, _ in clip[:2])


class ScriptedYuNet:
    """A YuNet engine that scores six boxes 0.3 in a full scan of a 360x640 frame (unsure: each gets a second look)
    and finds a face in the middle of every look's square crop (none when ``faces`` is off), counting both."""

    def __init__(self) -> None:
        self.scans, self.looks, self.faces = 0, 0, True

    def detect(self, image: np.ndarray, threshold: float) -> np.ndarray | None:
        if image.shape[:2] == (360, 640):
            self.scans += 1
            return np.array([[20 + 100 * k, 100, 40, 40, *[0.0] * 10, 0.3] for k in range(6)], np.float32)
        self.looks += 1
        side = image.shape[0]
        marks = np.array([0.35, 0.4, 0.65, 0.4, 0.5, 0.5, 0.4, 0.65, 0.6, 0.65]) * side
        return np.array([[side / 4, side / 4, side / 2, side / 2, *marks, 0.9]], np.float32) if self.faces else None


def test_yunet_in_video_spreads_a_scans_second_looks_and_stops_looking_at_a_lost_crowd():
    """Video: a full scan takes at most `LOOKS_PER_FRAME` second looks and the frames after it take the rest, so
    no frame pays for all of them; the faces they find are followed from then on. Photos take them all at once.
    When a known face is lost to its quick and close looks (a scene cut), the looks stop and a full scan follows
    at once, rather than two more looks at each face the cut took away."""
    from mimic.yunet import LOOKS_PER_FRAME

    frame = np.full((360, 640, 3), 60, np.uint8)
    video = YuNetDetector(full_every=15)
    video.net = net = ScriptedYuNet()
    counts = []
    for _ in range(4):
        looks = net.looks
        counts.append(len(video.detect(frame)))
        assert net.looks - looks <= LOOKS_PER_FRAME + counts[-1]  # the known faces' quick looks, two second looks
    assert counts == [2, 4, 6, 6] and net.scans == 1
    photo = for_photos(YuNetDetector())
    photo.net = ScriptedYuNet()
    assert len(photo.detect(frame)) == 6 and photo.net.looks == 6

    net.faces, looks = False, net.looks  # a cut: no face where the six were
    assert video.detect(frame) == [] and net.scans == 2
    assert net.looks - looks == 2 + LOOKS_PER_FRAME  # the first face's quick and close looks, then second looks
    assert for_stream(video)._queued == [] and for_stream(video)._last == []


def test_image_users_scan_every_photo_in_full_and_cache_on_every_setting(tmp_path):
    from mimic.data.folders import FolderSource
    from mimic.data.synthetic import write_class_folders

    video = load_detector("yunet")
    assert video.full_every > 1  # conf/detector/yunet.yaml: the live loop's shortcut
    write_class_folders(tmp_path / "w", ["happy", "sad"], per_class=1, size=64)
    source = FolderSource(tmp_path / "w", detector=load_detector("yunet"), cache_dir=False)
    assert source.detector.full_every == 1
    configs = [load_detector("yunet", **{k: v}).config for k, v in LOOK_SETTINGS.items()]
    assert len({str(sorted(c.items())) for c in [video.config, *configs]}) == 1 + len(LOOK_SETTINGS)


LOOK_SETTINGS = {"second_look": None, "look_size": 160, "look_threshold": 0.7, "max_width": 320}


@pytest.fixture(scope="module")
def fer_frames(shared_data):
    """The benchmark's frames of 200 PrivateTest faces (15-60% of the height, upright), and 30 face-free frames of
    each kind, seeded."""
    from mimic.data.fer2013 import FER2013Source

    bench = load_script("bench/benchmark_faces")
    splits = FER2013Source(shared_data / "fer2013" / "fer2013.csv.gz").load()
    faces, tiles = np.asarray(splits["test"].images)[:200], np.asarray(splits["train"].images)[:3000]
    with_faces = [bench.face_frame(f, tiles, np.random.default_rng([1, i])) for i, f in enumerate(faces)]
    rngs = [np.random.default_rng([2, i]) for i in range(30)]
    empty = [bench._finish(bench.background(tiles, r), r) for r in rngs] + [bench.dark_frame(r) for r in rngs]
    return bench, with_faces, empty


@pytest.mark.slow  # hundreds of full scans
def test_second_looks_find_faces_the_scan_scores_low_and_no_false_ones(fer_frames):
    """FER2013's faces, enlarged (so blurred), often score under score_threshold in a scan; looked at again, enlarged
    to 200 px, most score above it. The face-free frames' weak boxes do not."""
    bench, with_faces, empty = fer_frames
    default = YuNetDetector()
    low = YuNetDetector(second_look=None, score_threshold=default.second_look)

    def score(found: list[Detection], box: tuple) -> float:
        return max((d.score for d in found if bench.hit(d.box, box)), default=0.0)

    unsure = [(f, box) for f, box in with_faces if default.second_look <= score(low.detect(f), box) < 0.6]
    found = [default.detect(f) for f, _ in unsure]
    assert len(unsure) >= 10
    assert sum(score(d, box) >= 0.5 for d, (_, box) in zip(found, unsure, strict=True)) >= 0.6 * len(unsure)
    assert all(len(d) <= 1 for d in found)  # never two boxes on one face
    assert sum(len(default.detect(frame)) for frame in empty) == 0
    assert sum(len(low.detect(frame)) for frame in empty) > 0  # what the looks were spared: the scan's weak boxes


@pytest.mark.slow  # the whole benchmark on real faces
def test_the_face_benchmark_prints_the_full_path_against_direct_crops(shared_data, capsys):
    """benchmark_faces.py end to end on a few real PrivateTest faces with the bundled model (``ckpt=bundled``, as
    robustness.py and benchmark_classify.py take it): the accuracy table has
    Haar, YuNet, YuNet's framing at the pasted face's scale and the pasted square for every kind of frame, each
    against the direct crops, and the faces YuNet found by how far their crop reaches past the pasted face."""
    bench = load_script("bench/benchmark_faces")
    data = shared_data / "fer2013" / "fer2013.csv.gz"
    bench.main([f"data={data}", "faces=6", "webcam=3", "empty=2", "clips=0", "ckpt=bundled"])
    out = capsys.readouterr().out
    assert f"accuracy of {bundled_path()}\n" in out
    rows = re.findall(
        r"^(haar|yunet|scaled|square) +(upright|tilted|webcam) +([\d.]+) +([\d.]+) +([+-][\d.]+)", out, re.M
    )
    assert sorted((d, k) for d, k, *_ in rows) == sorted(
        (d, k) for d in ("haar", "yunet", "scaled", "square") for k in ("upright", "tilted", "webcam")
    )
    for *_, direct, full, diff in rows:
        assert float(diff) == pytest.approx(float(full) - float(direct), abs=0.11)
    kinds = {k for d, k, *_ in rows if d == "yunet"}
    row = r"^(upright|tilted|webcam) +(\d\.\d)-(\d\.\d) +(\d+) +([\d.]+) +([\d.]+) +([+-][\d.]+)"
    reach = re.findall(row, out, re.M)
    assert {k for k, *_ in reach} == kinds  # the framing's reach past the pasted face, per kind of frame
    for kind in kinds:
        counts = [int(n) for k, _, _, n, *_ in reach if k == kind]
        assert 1 <= sum(counts) <= (3 if kind == "webcam" else 6)  # YuNet's found faces, each in one bin
    for *_, direct, full, diff in reach:
        assert float(diff) == pytest.approx(float(full) - float(direct), abs=0.11)


def test_at_side_frames_a_face_with_its_landmarks_at_another_scale():
    """The benchmark's ``scaled`` rows: the eye framing's matrix rescaled so the crop covers the pasted face's side,
    the eyes still landing where the framing puts them and the face turned as much."""
    from mimic.preprocessing import PreprocessSpec, framing_matrix

    bench = load_script("bench/benchmark_faces")
    spec = PreprocessSpec(framing="eyes")
    face = Detection((100, 100, 80, 90), 0.9, ((120.0, 130.0), (160.0, 124.0), (141.0, 150.0), (124, 170), (156, 166)))
    matrix = framing_matrix(face, spec, spec.size)
    scaled = bench.at_side(matrix, 123.0, spec)
    assert spec.size / np.sqrt(np.linalg.det(scaled[:, :2])) == pytest.approx(123.0)
    eyes = np.array([140.0, 127.0, 1.0])  # the midpoint of the two eyes, in frame pixels
    assert scaled @ eyes == pytest.approx(matrix @ eyes)
    turn = np.arctan2(matrix[0, 1], matrix[0, 0])
    assert np.arctan2(scaled[0, 1], scaled[0, 0]) == pytest.approx(turn) and abs(turn) > 0.1
