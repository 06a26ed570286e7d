"""YuNet, OpenCV's CNN face detector and mimic's default: boxes scored in [0, 1], with five landmarks.

- `YuNetDetector` decides where to look: a full-resolution scan, a second, enlarged look at the faces it is unsure
  of, and in video (conf/detector/yunet.yaml's ``full_every``) a full scan every N-th frame and quick looks at the
  known faces between. Its ONNX file ships inside the package (`mimic.assets`, `YUNET_URL`), or is ``model_path``.
- An engine runs the net on one image (a frame, a look's crop) and returns what ``cv2.FaceDetectorYN.detect``
  returns: rows of (x, y, w, h, five landmarks' x and y, score) in the image's pixels, best first after non-maximum
  suppression, or None.
  - `OrtYuNet`: onnxruntime, with YuNet's decoding in numpy: the image padded to a multiple of 32 (zeros right and
    below), each stride's (8, 16, 32) grid cells scored sqrt(cls * obj), boxes and landmarks decoded from their cell,
    then OpenCV's NMS, as ``cv2.FaceDetectorYN`` does (the same rows to about 1e-4 px). One session takes any image
    size. About 2.5 times faster than OpenCV's DNN module on one thread (a 96 px look 0.34 vs 0.91 ms, a 640x384
    frame 6.4 vs 14 ms here), which is most of the live loop's detection time.
  - `OpenCVYuNet`: ``cv2.FaceDetectorYN``, where onnxruntime is not installed, or with ``engine: opencv``.

The model file is read as data (no code in it can run): onnxruntime and OpenCV load only their own operators.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mimic.assets import YUNET_MODEL
from mimic.errors import UserError, said
from mimic.faces import Detection, FullEvery, detector_config, downscale, to_bgr
from mimic.io import sha256_file

STRIDES = (8, 16, 32)
OUTPUTS = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES)
ENGINES = ("auto", "onnxruntime", "opencv")
# Where the bundled YUNET_MODEL came from, and its hash (checked by tests/test_faces.py).
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


def yunet_engine(engine: str, path: Path, nms_threshold: float, top_k: int, threads: int = 1) -> OrtYuNet | OpenCVYuNet:
    """The engine named by ``engine`` (``auto``: onnxruntime when it is installed, else OpenCV) for the YuNet model
    at ``path``. ``threads``: onnxruntime's threads (0: one per core); OpenCV's are ``cv2.setNumThreads``'."""
    if engine not in ENGINES:
        raise UserError(f"detector.engine: {engine!r} is not one of {', '.join(ENGINES)} (e.g. detector.engine=auto)")
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    if engine == "onnxruntime" and not has_ort:
        raise UserError("detector.engine=onnxruntime, but onnxruntime is not installed: pip install onnxruntime")
    if engine == "opencv" or not has_ort:
        return OpenCVYuNet(path, nms_threshold, top_k)
    return OrtYuNet(path, nms_threshold, top_k, threads)


def _not_yunet(path: Path, why: str) -> UserError:
    return UserError(
        f"detector.model_path: {path} is not a YuNet ONNX model ({why}). Use face_detection_yunet_2023mar.onnx "
        f"from OpenCV's model zoo, or leave detector.model_path empty (null) for the one bundled with mimic."
    )


class OrtYuNet:
    """YuNet on onnxruntime's CPU provider, decoded as ``cv2.FaceDetectorYN`` decodes it."""

    def __init__(self, path: str | os.PathLike, nms_threshold: float, top_k: int, threads: int = 1) -> None:
        # start-up time: onnx and onnxruntime take about a second to import, paid only by a detector that uses them
        import onnx
        import onnxruntime as ort

        self.path, self.nms_threshold, self.top_k = Path(path), float(nms_threshold), int(top_k)
        try:
            model = onnx.load_model_from_string(self.path.read_bytes())
        except Exception as e:  # protobuf's DecodeError and kin on a file that is not an ONNX model
            raise _not_yunet(self.path, f"onnx cannot parse it: {type(e).__name__}") from None
        graph = model.graph
        outputs = [o.name for o in graph.output]
        if len(graph.input) != 1 or set(OUTPUTS) - set(outputs):
            raise _not_yunet(self.path, f"its outputs are {outputs}, YuNet 2023mar's are {list(OUTPUTS)}")
        # The file fixes its input at 640x640 (OpenCV overrides that); make height and width free, and the outputs'
        # cell counts with them, so one session takes every image size.
        dims = graph.input[0].type.tensor_type.shape.dim
        if len(dims) != 4:
            raise _not_yunet(self.path, f"its input has {len(dims)} dimensions, not 4 (batch, channels, height, width)")
        dims[2].dim_param, dims[3].dim_param = "height", "width"
        for out in graph.output:
            for i, dim in enumerate(out.type.tensor_type.shape.dim):
                if i == 1:
                    dim.dim_param = "cells"
        del graph.value_info[:]  # intermediate shapes recorded for 640x640
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's Fail / InvalidGraph / NotImplemented on a graph it cannot run
            raise _not_yunet(self.path, f"onnxruntime cannot run it: {said(e)}") from None
        self.input = graph.input[0].name

    def detect(self, image: np.ndarray, threshold: float) -> np.ndarray | None:
        h, w = image.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        if (ph, pw) != (h, w):
            image = cv2.copyMakeBorder(image, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=0)
        out = dict(zip(OUTPUTS, self.session.run(OUTPUTS, {self.input: cv2.dnn.blobFromImage(image)})))
        rows = []
        for stride in STRIDES:
            cls, obj = out[f"cls_{stride}"].reshape(-1), out[f"obj_{stride}"].reshape(-1)
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            cells = np.flatnonzero(score >= threshold)
            if not cells.size:
                continue
            row, col = np.divmod(cells, pw // stride)
            cell = np.stack([col, row], axis=1).astype(np.float32)
            box = out[f"bbox_{stride}"].reshape(-1, 4)[cells]
            size = np.exp(box[:, 2:]) * stride
            corner = (cell + box[:, :2]) * stride - size / 2
            points = (out[f"kps_{stride}"].reshape(-1, 5, 2)[cells] + cell[:, None, :]) * stride
            rows.append(np.hstack([corner, size, points.reshape(-1, 10), score[cells, None]]))
        if not rows:
            return None
        faces = np.vstack(rows).astype(np.float32)
        if len(faces) > 1:
            boxes = np.trunc(faces[:, :4]).astype(int).tolist()  # OpenCV's NMS sees integer boxes
            keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), threshold, self.nms_threshold, 1.0, self.top_k)
            faces = faces[np.asarray(keep, dtype=int).reshape(-1)]
        return faces


class OpenCVYuNet:
    """YuNet through ``cv2.FaceDetectorYN``: one detector per threshold and input size (it fixes both), the last
    `KEEP` kept (a video's frame and look sizes repeat; a folder of photos of many sizes does not grow memory)."""

    KEEP = 8

    def __init__(self, path: str | os.PathLike, nms_threshold: float, top_k: int) -> None:
        self.path, self.nms_threshold, self.top_k = Path(path), float(nms_threshold), int(top_k)
        self._nets: OrderedDict[tuple[float, int, int], Any] = OrderedDict()
        try:  # a file OpenCV cannot load or run is reported now, not at the first frame
            self._net(0.5, 32, 32).detect(np.zeros((32, 32, 3), np.uint8))
        except cv2.error as e:
            raise _not_yunet(self.path, f"OpenCV cannot run it: {said(e, last=True)}") from None

    def _net(self, threshold: float, w: int, h: int) -> Any:
        key = (threshold, w, h)
        if key in self._nets:
            self._nets.move_to_end(key)
            return self._nets[key]
        try:
            net = cv2.FaceDetectorYN.create(str(self.path), "", (w, h), threshold, self.nms_threshold, self.top_k)
        except cv2.error as e:
            raise _not_yunet(self.path, f"OpenCV cannot load it: {said(e, last=True)}") from None
        self._nets[key] = net
        if len(self._nets) > self.KEEP:
            self._nets.popitem(last=False)
        return net

    def detect(self, image: np.ndarray, threshold: float) -> np.ndarray | None:
        h, w = image.shape[:2]
        return self._net(float(threshold), w, h).detect(image)[1]


class YuNetDetector(FullEvery):
    """OpenCV's YuNet face detector; boxes scored in [0, 1], with five landmarks. ``model_path``: its ONNX file;
    None: the one bundled with mimic (`mimic.assets`, no download).

    A scan runs YuNet on the frame shrunk to at most ``max_width`` pixels wide (None: full resolution) and at most
    ``max_side`` on its longer side, and keeps the faces scoring at least ``score_threshold``. YuNet misreads faces
    much over ~600 pixels (a portrait photo of 3000 pixels or more: parts of the face, a wrist, as faces of their
    own), so a larger photo is scanned shrunk (``scripts/bench/benchmark_large_photos.py`` measures where).

    ``second_look``: each box scoring at least this but under ``score_threshold`` is looked at again (at most
    `MAX_LOOKS` a scan, best first): YuNet runs on a crop of `LOOK_CONTEXT` times its size around it, scaled so the
    face is ``look_size`` pixels, and the face found there is kept, with its own box and landmarks, when it scores at
    least ``look_threshold`` (None: no second looks).
    YuNet scores a face much higher when it is big in its input (FER2013's faces, and small or blurred ones in
    general, from under 0.3 to over 0.8 at 200 px), and in that close-up it scores background texture that resembles
    a face lower, so second looks find more faces with fewer false ones than a lower threshold.

    ``full_every``: as `HaarDetector`'s, for video: the calls between full scans (the above) look again only at the
    faces found on the call before, each in a quick look (`NEAR_SIZE`) or, failing that, a close one: several times
    cheaper than a scan, while faces are in view. A frame with no face known, or that loses one, is scanned in full.
    In video a scan's second looks are spread: `LOOKS_PER_FRAME` on its frame, the rest on the frames after it, so
    that no frame (a scene cut's, a crowd's) pays for all of them.

    ``engine``: what runs the net (`yunet_engine`): ``auto`` (onnxruntime when installed, else OpenCV),
    ``onnxruntime`` or ``opencv``; the faces found are the same. ``threads``: onnxruntime's threads (1: the live loop
    classifies on the other core; 0: one per core)."""

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 50,
        max_width: int | None = None,
        max_side: int | None = 2048,
        second_look: float | None = 0.1,
        look_size: int = 200,
        look_threshold: float = 0.5,
        full_every: int = 15,
        engine: str = "auto",
        threads: int = 1,
    ) -> None:
        path = Path(model_path).expanduser() if model_path else YUNET_MODEL
        if model_path and not path.is_file():
            raise UserError(
                f"detector.model_path: model file not found: {path}. Download a YuNet ONNX file ({YUNET_URL}) there, "
                f"or leave detector.model_path empty (null) for the one bundled with mimic."
            )
        if not path.is_file():
            raise UserError(
                f"the YuNet model file bundled with mimic is missing ({path}): reinstall mimic, or pass "
                f"detector.model_path=<file>, or use detector=haar."
            )
        self.model_path, self.model_sha256 = path, sha256_file(path)
        self.score_threshold, self.nms_threshold, self.top_k = float(score_threshold), float(nms_threshold), int(top_k)
        self.max_width, self.max_side, self.full_every = max_width, max_side, int(full_every)
        self.second_look = None if second_look is None else float(second_look)
        self.look_size, self.look_threshold = int(look_size), float(look_threshold)
        self._low = min(self.score_threshold, self.second_look if self.second_look is not None else 1.0)
        self.net = yunet_engine(engine, path, self.nms_threshold, self.top_k, threads)
        self.forget()

    @property
    def config(self) -> dict[str, Any]:
        settings = "score_threshold nms_threshold top_k max_width max_side second_look look_size look_threshold"
        settings += " full_every"
        return detector_config(self, f"model_sha256 {settings}")

    def forget(self) -> None:
        super().forget()
        self._queued: list[Detection] = []  # a scan's unsure boxes still to get a second look
        self._scanned = False  # this call scanned in full

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """As `FullEvery.detect`; in video, a call between full scans also takes the second looks the last scan had
        no budget for (`LOOKS_PER_FRAME`), and the faces they find are followed from then on."""
        self._scanned = False
        found = super().detect(frame)
        if self._queued and not self._scanned:
            more = self._second_looks(to_bgr(frame), found, LOOKS_PER_FRAME)
            if more:
                self._last = found = sorted(found + more, key=lambda d: -d.score)
        return found

    def _full(self, frame: np.ndarray) -> list[Detection]:
        frame = to_bgr(frame)
        small, back = downscale(frame, self.max_width, self.max_side)
        found = _detections(self.net.detect(small, self._low), back, (0.0, 0.0), frame.shape)
        sure = [d for d in found if d.score >= self.score_threshold]
        self._scanned = True
        if self.second_look is None:
            return sure
        unsure = [d for d in found if self.second_look <= d.score < self.score_threshold][:MAX_LOOKS]
        self._queued = [d for d in unsure if not any(_overlap(d.box, s.box) >= 0.5 for s in sure)]
        budget = MAX_LOOKS if self.full_every <= 1 else LOOKS_PER_FRAME  # a photo gets them all at once
        return sorted(sure + self._second_looks(frame, sure, budget), key=lambda d: -d.score)

    def _second_looks(self, frame: np.ndarray, known: list[Detection], budget: int) -> list[Detection]:
        """The faces that second looks at up to ``budget`` of the queued unsure boxes (best first) find, each
        neither a part of a ``known`` face nor of one found before it."""
        todo, self._queued = self._queued[:budget], self._queued[budget:]
        new: list[Detection] = []
        for d in todo:
            if not any(_overlap(d.box, s.box) >= 0.5 for s in known + new):  # not a part of a face already kept
                look = self._look(frame, d.box)
                if look is not None and not any(_overlap(look.box, s.box) >= 0.5 for s in known + new):
                    new.append(look)
        return new

    def _near(self, frame: np.ndarray, known: list[Detection]) -> list[Detection]:
        """Each known face looked for again: first in a quick look (`NEAR_SIZE`), then in a close one. A face lost
        to both ends the looks: a full scan follows (`FullEvery.detect`), and after a scene cut, where every face is
        lost, the close looks at the others would cost more than the scan (six faces: ~25 ms against ~7)."""
        frame = to_bgr(frame)
        found = []
        for d in known:
            look = self._look(frame, d.box, min(NEAR_SIZE, self.look_size)) or self._look(frame, d.box)
            if look is None:
                break
            found.append(look)
        return sorted(found, key=lambda d: -d.score)

    def _look(self, frame: np.ndarray, box: tuple[int, int, int, int], size: int | None = None) -> Detection | None:
        """The best face over ``box`` that YuNet finds in a crop `LOOK_CONTEXT` times ``box``'s size around its
        centre, scaled so that ``box`` is ``size`` (video's quick look, shrunk by `_shrink`; default ``look_size``:
        a second or close look) pixels, scoring at least ``look_threshold``, with its eyes, nose and mouth in the
        frame and `_eyes_apart`; None if there is none."""
        x, y, w, h = box
        quick, size = size is not None, size or self.look_size
        side = round(LOOK_CONTEXT * size)
        span = math.ceil(LOOK_CONTEXT * max(w, h, 1))  # the crop's side in frame pixels
        if quick:  # each of `_shrink`'s halvings exact: the span a multiple of 2 ** halvings
            halves = 1
            while span >= 2 * side * halves:
                halves *= 2
            span = -(-span // halves) * halves
        x0, y0 = int(round(x + w / 2 - span / 2)), int(round(y + h / 2 - span / 2))
        fh, fw = frame.shape[:2]
        region = frame[max(0, y0) : min(fh, y0 + span), max(0, x0) : min(fw, x0 + span)]
        if region.size == 0:
            return None
        pads = (max(0, -y0), max(0, y0 + span - fh), max(0, -x0), max(0, x0 + span - fw))
        if any(pads):
            region = cv2.copyMakeBorder(region, *pads, cv2.BORDER_CONSTANT, value=cv2.mean(region))  # no streaks
        if quick:
            crop = _shrink(region, side)
        else:  # a second or close look: rare, and at their most exact
            crop = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA if span > side else cv2.INTER_LINEAR)
        faces = self.net.detect(crop, self.look_threshold)
        near = [
            d
            for d in _detections(faces, span / side, (x0, y0), frame.shape)
            if _overlap(d.box, box) >= 0.5
            and 0.5 <= d.box[3] / max(h, 1) <= 2
            and all(0 <= px < fw and 0 <= py < fh for px, py in d.landmarks)  # not a "face" bigger than the frame
            and _eyes_apart(d.landmarks)
        ]
        return max(near, key=lambda d: d.score, default=None)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    """A square ``image`` as ``side`` x ``side``: halved by 2x2 means (OpenCV's fast area resize) while at least twice
    ``side``, then linearly. Nothing aliases, at a tenth of the time a general area resize takes (0.03 vs 0.3 ms)."""
    while image.shape[0] >= 2 * side:
        half = image.shape[0] // 2
        image = cv2.resize(image[: 2 * half, : 2 * half], (half, half), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)


LOOK_CONTEXT = 2.0  # a look's crop spans this many face sizes: YuNet needs the head's surroundings
NEAR_SIZE = 48  # px: video's quick look again at a known face (a 96 px crop; a face it misses gets a close look).
# 48 rather than 64: a third less detection time on the two-three test clip, the same faces found and the same
# accuracy through the live path (scripts/bench/benchmark_faces.py clips; README, Faces)
MAX_LOOKS = 8  # second looks per scan at most: bounds a scan's time on frames full of face-like clutter
LOOKS_PER_FRAME = 2  # video: second looks per frame at most; a scan's others are taken on the frames after it


def _eyes_apart(landmarks: Sequence[tuple[float, float]]) -> bool:
    """The eyes at least 0.4 times as far apart as the mouth is from them: a face seen from the front or half turned
    (frontal: about 1; FER2013's turned faces that second looks find: up to 0.44), not a fist or a profile."""
    p = np.asarray(landmarks)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    return bool(np.hypot(*(p[1] - p[0])) >= 0.4 * np.hypot(*(mouth - eyes)))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The area two (x, y, w, h) boxes share, as a fraction of the smaller box's."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h) / max(1, min(a[2] * a[3], b[2] * b[3]))


def _detections(
    faces: np.ndarray | None, scale: float, offset: tuple[float, float], shape: tuple[int, ...]
) -> list[Detection]:
    """YuNet's rows (box, five landmarks, score) in an image whose edges map to the frame's as ``frame = image *
    scale + offset``, as Detections in frame pixels, boxes clipped to the frame (of ``shape``), best score first."""
    if faces is None:
        return []
    h, w = shape[:2]
    ox, oy = offset
    out = []
    for f in faces:
        x0, y0 = max(0.0, f[0] * scale + ox), max(0.0, f[1] * scale + oy)
        x1, y1 = min(float(w), (f[0] + f[2]) * scale + ox), min(float(h), (f[1] + f[3]) * scale + oy)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            box = (int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)))
            points = tuple(
                (float((f[i] + 0.5) * scale - 0.5 + ox), float((f[i + 1] + 0.5) * scale - 0.5 + oy))
                for i in range(4, 14, 2)
            )
            out.append(Detection(box, float(f[-1]), points))
    return sorted(out, key=lambda d: -d.score)
