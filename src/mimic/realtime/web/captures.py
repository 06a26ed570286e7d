"""The photos the web page takes of your face (`Captures`): each frame's largest face goes through the capture
script's detection, alignment and crop (`mimic.data.capture`) into ``<captures>/<index>_<class>/NNNN.png``; nothing
existing is overwritten. Class and file names a client sends are checked: a name never leads out of the captures
folder.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from mimic.data.capture import class_folder, face_crop, save_crop
from mimic.data.class_folders import NOT_CLASSES, is_class_dir, list_files, read_image, scan_class_folders
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import FaceDetector, for_photos
from mimic.io import IMAGE_SUFFIXES
from mimic.jobs import MIN_PHOTOS
from mimic.labels import canonical, check_class_name

FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def class_name(label: str) -> str:
    """A class name a client sent, canonical; a `UserError` unless `mimic.labels.CLASS_NAME` accepts it."""
    name = canonical(check_class_name(label, "label"))
    if name in NOT_CLASSES:
        raise UserError(f"label: {label!r} is not a class name: it names the folder of photos not sorted yet")
    return name


class Captures:
    """The captures ``folder``: one subfolder per class. ``detector``: the config of the detector that finds the face
    in a photo (loaded at the first photo); ``max_bytes``: the largest photo accepted."""

    def __init__(self, folder: Path, detector: Any, max_bytes: int) -> None:
        self.folder, self.detector_cfg, self.max_bytes = folder, detector, max_bytes
        self._detector: FaceDetector | None = None
        self._lock = threading.Lock()  # one detector; and two new classes at once must not take the same index

    def folders(self) -> dict[str, Path]:
        """{class name: folder} of the captures folder (empty when it does not exist yet)."""
        if not self.folder.is_dir() or not any(is_class_dir(p) for p in self.folder.iterdir()):
            return {}
        return {f.name: f.path for f in scan_class_folders(self.folder)}

    def listing(self) -> dict[str, Any]:
        """The folder, and per class its folder's name, photo count and file names."""
        classes = []
        for name, folder in self.folders().items():
            images = [p.name for p in list_files(folder)[0]]
            classes.append({"name": name, "folder": folder.name, "count": len(images), "files": images})
        return {"folder": str(self.folder), "classes": classes, "min_photos": MIN_PHOTOS}

    def counts(self) -> dict[str, int]:
        return {c["name"]: c["count"] for c in self.listing()["classes"]}

    def save(self, label: str, data: bytes) -> dict[str, Any]:
        """Save the face in the JPEG or PNG ``data`` as a photo of class ``label``: what was saved and the counts, or
        ``"face": False`` when the photo has no face (nothing saved)."""
        name = class_name(label)
        if len(data) > self.max_bytes:
            raise HTTPException(
                413, f"the photo has {len(data):,} bytes, more than ui.max_frame_bytes={self.max_bytes:,}"
            )
        frame = read_image(data)
        if frame is None:
            raise UserError("the photo is not an image OpenCV can decode (send a JPEG or PNG)")
        with self._lock:
            if self._detector is None:
                self._detector = for_photos(load_detector(self.detector_cfg))
            crop = face_crop(frame, self._detector)
            if crop is None:
                return {"error": "no face found in the photo: nothing saved", "face": False, "counts": self.counts()}
            folder = class_folder(self.folder, name)
            path = save_crop(folder, crop)
        return {"saved": path.name, "class": name, "folder": folder.name, "face": True, "counts": self.counts()}

    def photo(self, label: str, file: str) -> Path:
        """The photo ``file`` of class ``label``: 404 when there is none, a `UserError` for a name that is not a
        photo's."""
        folder = self.folders().get(class_name(label))
        if folder is None:
            raise HTTPException(404, f"no photos of class {label!r}")
        if not FILE_NAME.fullmatch(file) or Path(file).suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"{file!r} is not the name of a photo")
        path = folder / file
        if not path.is_file() or path.resolve().parent != folder.resolve():
            raise HTTPException(404, f"no photo {file!r} in class {label!r}")
        return path

    def delete(self, label: str, file: str) -> dict[str, Any]:
        """Delete one photo (`photo` names it); what was deleted and the counts."""
        path = self.photo(label, file)
        path.unlink()
        return {"deleted": path.name, "class": class_name(label), "counts": self.counts()}
