"""mimic in one call, for your own Python code: faces and their emotions in an image.

    from mimic import EmotionRecognizer
    recognizer = EmotionRecognizer()                 # the bundled model and YuNet; ckpt=... for your own model
    for face in recognizer.detect(cv2.imread("photo.jpg")):
        print(face["box"], face["label"], face["emotions"])
    video = recognizer.analyze_video("interview.mp4")   # .rows, .people, .to_pandas()

It is the realtime app's path without the app: the same detector, the same face framing (`mimic.preprocessing`) and
the same `Predictor`, so a face gets the probabilities `realtime.py` and `evaluate.py` give it (DESIGN.md contract 2).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import for_photos
from mimic.models.predictor import open_model

if TYPE_CHECKING:
    from mimic.analysis import VideoAnalysis

MIN_CROP = 8  # pixels on each side: less holds no face to read


class EmotionRecognizer:
    """Finds the faces in an image and gives each one's emotion probabilities.

    ``ckpt``: a mimic checkpoint or exported ONNX file (None: the bundled pretrained model). ``detector``: a detector
    config name (``"yunet"``, the default, or ``"haar"``) or a config mapping (conf/detector/). ``tta_flip``: None
    follows the model file. ``backend``: what runs a checkpoint: ``auto`` (onnxruntime when installed, through an export
    cached by the checkpoint's hash, else torch), ``onnx`` or ``torch``. ``threads``: the
    classifier's threads (None: the library's default)."""

    def __init__(
        self,
        ckpt: str | os.PathLike | None = None,
        detector: str | Mapping[str, Any] = "yunet",
        tta_flip: bool | None = None,
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.predictor = open_model(ckpt, threads, tta_flip, backend=backend)
        self._detector_spec = detector
        self.detector = for_photos(load_detector(detector))  # every image here is a new scene
        self.class_names: list[str] = list(self.predictor.class_names)

    def detect(self, image: np.ndarray | str | os.PathLike) -> list[dict[str, Any]]:
        """Every face in ``image`` (a BGR or gray uint8 array as OpenCV reads it, or an image file's path), largest
        first: ``{"box": (x, y, w, h), "score": detector confidence, "landmarks": five (x, y) points or None (Haar),
        "emotions": {class: probability} for every class, "label": the most likely class, "confidence": its
        probability}``."""
        frame = _image(image)
        faces = sorted(self.detector.detect(frame), key=lambda d: (-d.area, -d.score))
        probs = self.predictor.predict(frame, faces)
        return [
            {
                "box": tuple(int(v) for v in face.box),
                "score": float(face.score),
                "landmarks": [(float(x), float(y)) for x, y in face.landmarks] if face.landmarks else None,
                "emotions": {name: float(q) for name, q in zip(self.class_names, p)},
                "label": self.class_names[int(np.argmax(p))],
                "confidence": float(np.max(p)),
            }
            for face, p in zip(faces, probs)
        ]

    def analyze_video(self, path: str | os.PathLike, every: int = 1, min_track_s: float = 1.0) -> VideoAnalysis:
        """Every face of the video at ``path`` (every ``every``-th frame), tracked, classified and smoothed as the
        live app does, unpaced: ``.rows`` (a dict per face per frame, faces.csv's columns), ``.people`` (a summary
        per person seen for at least ``min_track_s`` seconds, people.csv's columns), ``.to_pandas()``. Track ids
        are not identities: a scene cut, or a face lost for a moment, starts a new one (`mimic.analysis`)."""
        # analysis needs the live pipeline and the tracker, which one-image calls never load
        from mimic.analysis import analyze_video, open_video
        from mimic.realtime.pipeline import Pipeline

        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise UserError(f"analyze_video: every={every!r}: analyse every N-th frame, N a whole number from 1")
        video = open_video(Path(path).expanduser())
        pipeline = Pipeline(self.predictor, load_detector(self._detector_spec))  # a detector of its own: video
        with contextlib.closing(pipeline):
            return analyze_video(video, pipeline, every, float(min_track_s), progress=False)

    def classify(self, face: np.ndarray) -> dict[str, float]:
        """The emotion probabilities of one face crop (BGR or gray uint8, any size, framed roughly as FER2013 frames
        faces), without detection."""
        crop = _image(face)
        if min(crop.shape[:2]) < MIN_CROP:
            raise UserError(
                f"classify: the face crop is {crop.shape[1]}x{crop.shape[0]} pixels; a face needs at least {MIN_CROP} "
                f"on each side. Pass the face cut from the image, or the whole image to detect()."
            )
        return {name: float(q) for name, q in zip(self.class_names, self.predictor.predict_crops([crop])[0])}


def _image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    if isinstance(image, str | os.PathLike):
        path = Path(image).expanduser()
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if frame is None:
            why = "no such file" if not path.is_file() else "not an image OpenCV can read"
            raise UserError(f"{path}: {why}; pass an image file (.jpg, .png, ...) or a uint8 array")
        return frame
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise UserError(f"expected an image: a uint8 array (H, W), (H, W, 3) or (H, W, 4) or a file path, got a {what}")
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] != 3:
        raise UserError(f"expected 1, 3 or 4 channels, got an array of shape {image.shape}")
    return image
