"""Files that ship inside the package (package data, so they are there offline after any install):

- ``face_detection_yunet_2023mar.onnx``: OpenCV Zoo's YuNet face detector (MIT licence,
  ``LICENSE.opencv_zoo.face_detection_yunet.txt``), the default detector (`mimic.yunet.YuNetDetector`).
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
YUNET_MODEL = ASSETS / "face_detection_yunet_2023mar.onnx"
