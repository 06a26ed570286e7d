"""Training augmentations that albumentations lacks, for the faces a real camera sees (issue 25).

`LowLight` is a dim room as a camera records it: the sensor's signal scaled down (exposure gain), a black-level
offset, Gaussian read noise, then rounding back to uint8, so that a dim face also loses grey levels. albumentations'
RandomBrightnessContrast and GaussNoise each do one part, and neither rounds between them; GaussNoise's sigma is a
fraction of 255, so it cannot add a fixed few grey levels of noise to a face whose signal is already small.

Used from the data config's ``augment:`` list like any albumentations transform (``_target_:
mimic.data.augment.LowLight``); seeded through the datamodule's ``A.Compose(seed=...)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform


class LowLight(ImageOnlyTransform):
    """Dim the face: ``round(clip(img * gain + offset + N(0, sigma)))``, uint8 in and out.

    gain: drawn log-uniformly from ``gain`` (so x0.2 to x0.4 is as likely as x0.5 to x1.0); offset: uniform grey
    levels from ``offset``; sigma: uniform grey levels from ``noise``. The noise is drawn per pixel.
    """

    def __init__(
        self,
        gain: tuple[float, float] = (0.15, 1.0),
        offset: tuple[float, float] = (0.0, 12.0),
        noise: tuple[float, float] = (0.0, 6.0),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        for name, (lo, hi), floor in (("gain", gain, 1e-3), ("offset", offset, -255.0), ("noise", noise, 0.0)):
            if not (floor <= lo <= hi):
                raise ValueError(f"LowLight: {name} must be (low, high) with {floor} <= low <= high, got {(lo, hi)}")
        self.gain, self.offset, self.noise = tuple(gain), tuple(offset), tuple(noise)

    def get_params(self) -> dict[str, float]:
        lo, hi = math.log(self.gain[0]), math.log(self.gain[1])
        return {
            "gain": math.exp(self.py_random.uniform(lo, hi)),
            "offset": self.py_random.uniform(*self.offset),
            "sigma": self.py_random.uniform(*self.noise),
            "noise_seed": self.py_random.randrange(2**31),
        }

    def apply(
        self, img: np.ndarray, gain: float, offset: float, sigma: float, noise_seed: int, **params: Any
    ) -> np.ndarray:
        if img.dtype != np.uint8:
            raise TypeError(f"LowLight works on uint8 images, got {img.dtype}")
        out = img.astype(np.float32) * gain + offset
        if sigma > 0:
            out += np.random.default_rng(noise_seed).normal(0.0, sigma, img.shape).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gain", "offset", "noise")
