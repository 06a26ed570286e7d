"""YuNet's network, run by onnxruntime or by OpenCV's DNN module: an image in, YuNet's face rows out.

`mimic.faces.YuNetDetector` decides where to look; an engine here runs the net on one image (a frame, a look's
crop) and returns what ``cv2.FaceDetectorYN.detect`` returns: rows of (x, y, w, h, five landmarks' x and y, score)
in the image's pixels, best first after non-maximum suppression, or None.

- `OrtYuNet`: onnxruntime, with YuNet's decoding in numpy: the image padded to a multiple of 32 (zeros right and
  below), each stride's (8, 16, 32) grid cells scored sqrt(cls * obj), boxes and landmarks decoded from their cell,
  then OpenCV's NMS, as ``cv2.FaceDetectorYN`` does (the same rows to about 1e-4 px). One session takes any image size.
  About 2.5 times faster than OpenCV's DNN module on one thread (a 96 px look 0.34 vs 0.91 ms, a 640x384 frame 6.4 vs
  14 ms here), which is most of the live loop's detection time.
- `OpenCVYuNet`: ``cv2.FaceDetectorYN``, where onnxruntime is not installed, or with ``engine: opencv``.

The model file is read as data (no code in it can run): onnxruntime and OpenCV load only their own operators.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mimic.errors import UserError, said

STRIDES = (8, 16, 32)
OUTPUTS = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES)
ENGINES = ("auto", "onnxruntime", "opencv")


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
