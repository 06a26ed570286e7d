"""The face detectors mimic ships, by name: `load_detector` makes one from its config in conf/detector/.

    from mimic.detectors import load_detector
    from mimic.faces import largest_face
    detector = load_detector("yunet")                     # conf/detector/yunet.yaml, or "haar", or such a config
    faces = detector.detect(frame_bgr)                    # list[Detection], best score first
    face = largest_face(faces)                            # Detection | None
    crop = mimic.preprocessing.crop_face(frame_bgr, face, spec)

A config names its class with ``_target_``; only the classes in `DETECTORS` are made (a config never chooses code to
run), with its settings checked as the command line checks them (`mimic.settings.check_detector`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mimic.errors import UserError
from mimic.faces import FaceDetector
from mimic.haar import HaarDetector
from mimic.settings import check_detector
from mimic.yunet import YuNetDetector

DETECTOR_CONFIGS = Path(__file__).resolve().parent / "conf" / "detector"
DETECTORS = {f"{cls.__module__}.{cls.__name__}": cls for cls in (YuNetDetector, HaarDetector)}


def load_detector(spec: str | Mapping[str, Any], **overrides: Any) -> FaceDetector:
    """A detector from the name of a config in conf/detector/ (``"haar"``, ``"yunet"``) or from such a config: a
    mapping whose ``_target_`` names one of `DETECTORS`. ``overrides`` win over the config's values."""
    if isinstance(spec, str):
        path = DETECTOR_CONFIGS / f"{spec}.yaml"
        if not re.fullmatch(r"[\w-]+", spec) or not path.is_file():
            names = ", ".join(sorted(p.stem for p in DETECTOR_CONFIGS.glob("*.yaml")))
            raise UserError(f"unknown detector {spec!r}: use one of {names} (the configs in {DETECTOR_CONFIGS})")
        spec = OmegaConf.load(path)
    if OmegaConf.is_config(spec):
        spec = OmegaConf.to_container(spec, resolve=True)
    settings = {**spec, **overrides}
    check_detector(settings)
    target = str(settings.pop("_target_", ""))
    cls = DETECTORS.get(target)
    if cls is None:
        raise UserError(f"detector _target_ {target!r}: name one of mimic's detector classes, {', '.join(DETECTORS)}")
    try:
        inspect.signature(cls).bind(**settings)
    except TypeError as e:
        params = ", ".join(inspect.signature(cls).parameters)
        raise UserError(f"detector {target}: {e}; its settings are {params}") from None
    return cls(**settings)
