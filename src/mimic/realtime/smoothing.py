"""Per-face smoothing of the probabilities and of the shown label, so the label does not flicker.

Two steps, each frame: an exponential moving average of the probabilities (``alpha`` is the weight of the newest
frame: 1 means no averaging), then hysteresis on the shown label: it changes only when another class leads the shown
one by at least ``margin`` in the averaged probabilities. ``enabled=False`` shows the raw argmax.
"""

from __future__ import annotations

import numpy as np

from mimic.errors import UserError


class LabelSmoother:
    """The smoothing state of one face: ``update(probs)`` -> (shown label index, smoothed probabilities)."""

    def __init__(self, alpha: float = 0.3, margin: float = 0.1, enabled: bool = True) -> None:
        if not 0.0 < alpha <= 1.0:
            raise UserError(f"smoothing.alpha must be in (0, 1], got {alpha}")
        if margin < 0:
            raise UserError(f"smoothing.margin must be >= 0, got {margin}")
        self.alpha, self.margin, self.enabled = float(alpha), float(margin), enabled
        self.probs: np.ndarray | None = None
        self.label: int | None = None

    def update(self, probs: np.ndarray) -> tuple[int, np.ndarray]:
        probs = np.asarray(probs, dtype=np.float64)
        if not self.enabled:
            self.probs, self.label = probs, int(np.argmax(probs))
            return self.label, probs
        self.probs = probs.copy() if self.probs is None else self.probs + self.alpha * (probs - self.probs)
        best = int(np.argmax(self.probs))
        if self.label is None or self.probs[best] - self.probs[self.label] >= self.margin:
            self.label = best
        return self.label, self.probs
