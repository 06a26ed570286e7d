"""mimic in one call, for your own Python code: faces and their emotions in an image.

    from mimic import EmotionRecognizer
    recognizer = EmotionRecognizer()                 # the bundled model and YuNet; ckpt=... for your own model
    for face in recognizer.detect(cv2.imread("photo.jpg")):
        print(face["box"], face["label"], face["emotions"])

It is the realtime app's path without the app: the same detector, the same face framing (`mimic.preprocessing`) and
the same `Predictor`, so a face gets the probabilities `realtime.py` and `evaluate.py` give it (DESIGN.md contract 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import for_photos
from mimic.models.predictor import open_model

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
