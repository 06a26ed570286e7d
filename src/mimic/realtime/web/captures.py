"""The photos the web page takes of your face (`Captures`): each frame's largest face goes through the capture
script's detection, alignment and crop (`mimic.data.capture`) into ``<captures>/<index>_<class>/NNNN.png``; nothing
existing is overwritten. Class and file names a client sends are checked: a name never leads out of the captures
folder, and a symlinked class folder or photo (one that resolves anywhere but its own place) is not the captures'
(`mimic.data.class_folders.stays_in`): the server says so in its log, once per link.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from mimic.data.capture import class_folder, face_crop, save_crop
from mimic.data.class_folders import (
    NOT_CLASSES,
    is_class_dir,
    linked_classes,
    list_files,
    scan_class_folders,
    stays_in,
)
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import FaceDetector, for_photos
from mimic.io import IMAGE_SUFFIXES
from mimic.job_data import MIN_PHOTOS
from mimic.labels import canonical, check_class_name
from mimic.realtime.web.frames import TooLarge, decode

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def class_name(label: str) -> str:
    """A class name a client sent, canonical; a `UserError` unless `mimic.labels.CLASS_NAME` accepts it."""
    name = canonical(check_class_name(label, "label"))
    if name in NOT_CLASSES:
        raise UserError(f"label: {label!r} is not a class name: it names the folder of photos not sorted yet")
    return name


class Captures:
    """The captures ``folder``: one subfolder per class. ``detector``: the config of the detector that finds the face
    in a photo (loaded at the first photo); ``max_bytes``, ``max_pixels``: the largest photo accepted, and
    ``max_side``: the size it is decoded to at most (`frames.decode`)."""

    def __init__(self, folder: Path, detector: Any, max_bytes: int, max_pixels: int, max_side: int) -> None:
        self.folder, self.detector_cfg = folder, detector
        self.max_bytes, self.max_pixels, self.max_side = max_bytes, max_pixels, max_side
        self._detector: FaceDetector | None = None
        self._lock = threading.Lock()  # one detector; and two new classes at once must not take the same index
        self._logged: set[Path] = set()  # the symlinked class folders the log has named

    def folders(self) -> dict[str, Path]:
        """{class name: folder} of the captures folder (empty when it does not exist yet); a symlinked folder is no
        class (logged once)."""
        for link in set(linked_classes(self.folder).values()) - self._logged:
            log.warning("captures: %s is a symlink, not a class folder of %s: left alone", link.name, self.folder)
            self._logged.add(link)
        if not self.folder.is_dir() or not any(is_class_dir(p, links=False) for p in self.folder.iterdir()):
            return {}
        return {f.name: f.path for f in scan_class_folders(self.folder, links=False)}

    def listing(self) -> dict[str, Any]:
        """The captures folder's name, and per class its folder's name, photo count and file names."""
        classes = []
        for name, folder in self.folders().items():
            images = [p.name for p in list_files(folder, links=False)[0]]
            classes.append({"name": name, "folder": folder.name, "count": len(images), "files": images})
        return {"folder": self.folder.name, "classes": classes, "min_photos": MIN_PHOTOS}

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
        try:
            frame = decode(data, self.max_pixels, self.max_side).image
        except TooLarge as e:
            raise HTTPException(413, f"the photo: {e}") from None
        except ValueError as e:
            raise UserError(f"the photo: {e} (send a JPEG or PNG)") from None
        with self._lock:
            if self._detector is None:
                self._detector = for_photos(load_detector(self.detector_cfg))
            crop = face_crop(frame, self._detector)
            if crop is None:
                return {"error": "no face found in the photo: nothing saved", "face": False, "counts": self.counts()}
            folder = class_folder(self.folder, name, links=False)
            path = save_crop(folder, crop)
        return {"saved": path.name, "class": name, "folder": folder.name, "face": True, "counts": self.counts()}

    def photo(self, label: str, file: str) -> Path:
        """The photo ``file`` of class ``label``: 404 when there is none, a `UserError` for a name that is not a
        photo's."""
        name = class_name(label)
        folder = self.folders().get(name)
        if folder is None:
            link = linked_classes(self.folder).get(name)
            why = f": {self.folder.name}/{link.name} is a symlink, not a class folder" if link else ""
            raise HTTPException(404, f"no photos of class {label!r}{why}")
        if not FILE_NAME.fullmatch(file) or Path(file).suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"{file!r} is not the name of a photo")
        path = folder / file
        if not path.is_file() or not stays_in(folder, path):
            raise HTTPException(404, f"no photo {file!r} in class {label!r}")
        return path

    def delete(self, label: str, file: str) -> dict[str, Any]:
        """Delete one photo (`photo` names it); what was deleted and the counts."""
        path = self.photo(label, file)
        path.unlink()
        return {"deleted": path.name, "class": class_name(label), "counts": self.counts()}
