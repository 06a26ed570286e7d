"""Where mimic keeps what it can rebuild: parsed datasets, face crops, downloaded models, generated assets."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str = "") -> Path:
    """``$MIMIC_CACHE_DIR/<name>``, else ``$XDG_CACHE_HOME/mimic/<name>``, else ``~/.cache/mimic/<name>``."""
    root = os.environ.get("MIMIC_CACHE_DIR")
    if root:
        return Path(root).expanduser() / name
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mimic" / name
