"""Per-face smoothing of the probabilities and of the shown label, so the label does not flicker.

Two steps, each frame: an exponential moving average of the probabilities over media time, whose memory halves every
``half_life`` seconds (0: no averaging), then hysteresis on the shown label: it changes only when another class leads
the shown one by at least ``margin`` in the averaged probabilities. Time, not frames: a camera at 15 frames/s and a
video at 60 smooth alike. ``enabled=False`` shows the raw argmax.
"""

from __future__ import annotations

import numpy as np

from mimic.errors import UserError

FALLBACK_DT = 1 / 30  # a frame whose time does not advance counts as this many seconds after the last one


class LabelSmoother:
    """The smoothing state of one face: ``update(probs, t)`` -> (shown label index, smoothed probabilities)."""

    def __init__(self, half_life: float = 0.1, margin: float = 0.1, enabled: bool = True) -> None:
        if not 0.0 <= half_life <= 10.0:
            raise UserError(f"smoothing.half_life must be in [0, 10] seconds, got {half_life}")
        if not 0.0 <= margin <= 1.0:
            raise UserError(f"smoothing.margin must be in [0, 1], got {margin}")
        self.half_life, self.margin, self.enabled = float(half_life), float(margin), enabled
        self.probs: np.ndarray | None = None
        self.label: int | None = None
        self.t: float | None = None
        self.dt = FALLBACK_DT

    def weight(self, t: float) -> float:
        """The EMA weight of a frame at media time ``t`` (seconds). A frame whose time does not advance (a repeated
        or backward timestamp) counts as the last step again."""
        if self.t is not None and t > self.t:
            self.dt = t - self.t
        self.t = t
        return 1.0 if self.half_life == 0 else 1.0 - 0.5 ** (self.dt / self.half_life)

    def update(self, probs: np.ndarray, t: float) -> tuple[int, np.ndarray]:
        probs = np.asarray(probs, dtype=np.float64)
        if not self.enabled:
            self.probs, self.label = probs, int(np.argmax(probs))
            return self.label, probs
        w = self.weight(t)
        self.probs = probs.copy() if self.probs is None else self.probs + w * (probs - self.probs)
        best = int(np.argmax(self.probs))
        if self.label is None or self.probs[best] - self.probs[self.label] >= self.margin:
            self.label = best
        return self.label, self.probs
