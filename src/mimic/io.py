"""File plumbing written once: atomic writes, never-overwrite names, sha256, downloads, the cache folder and the image
suffixes mimic reads.

Every file mimic writes goes through `atomic_write` (a reader or a crash never sees half a file), and every file a user
keeps (logs, recordings, captures) gets a name from `free_path`, so nothing the user made is overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mimic.errors import UserError

log = logging.getLogger(__name__)

# What OpenCV 4.x decodes (GIF since 4.11; HEIC and RAW formats are not among them).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif")


def cache_dir(name: str = "") -> Path:
    """``$MIMIC_CACHE_DIR/<name>``, else ``$XDG_CACHE_HOME/mimic/<name>``, else ``~/.cache/mimic/<name>``: where mimic
    keeps what it can rebuild (parsed datasets, face crops, downloaded models, generated assets)."""
    root = os.environ.get("MIMIC_CACHE_DIR")
    if root:
        return Path(root).expanduser() / name
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mimic" / name


_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Create or replace ``path`` all at once: ``write(tmp)`` fills a hidden temporary file in the same folder, which
    then takes the name. Parent folders are created. The temporary file is removed when ``write`` fails. The file
    gets the permissions a plain ``open(path, "w")`` would give it (a replaced file keeps its own), not the owner-only
    ones of a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.part", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def free_path(path: str | os.PathLike) -> Path:
    """``path`` when nothing is there, else the first free ``<stem>-1<suffix>``, ``<stem>-2<suffix>``, ... beside it:
    the name for a file the user keeps (a log, a recording), so that an earlier one is never overwritten."""
    path = Path(path)
    n = 0
    candidate = path
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def new_file(path: str | Path, setting: str, default_name: str) -> Path:
    """Where a file the user asked for at ``path`` goes without overwriting anything: a folder gets ``default_name``
    inside it, an existing file a free numbered name beside it (said in a warning); a path through a file is an
    error."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / default_name
    through = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if through is not None:
        raise UserError(f"{setting}={path}: {through} is a file, not a folder. Name a path in a folder.")
    free = free_path(path)
    if free != path:
        log.warning("%s: %s already exists, so this run writes %s (nothing is overwritten)", setting, path, free)
    return free


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, path: str | os.PathLike, sha256: str | None = None, what: str = "file", timeout: float = 60):
    """Fetch ``url`` into ``path`` (atomically) and check its sha256; a `UserError` that says how to get the file by
    hand when the download fails or the file is not the expected one. Only called where the user asked for it."""
    path = Path(path)

    def fetch(tmp: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
        except OSError as e:
            raise UserError(f"could not download the {what} from {url} ({e}). Download it by hand to {path}.") from None
        if sha256 and (digest := sha256_file(tmp)) != sha256:
            raise UserError(
                f"the {what} downloaded from {url} has sha256 {digest}, expected {sha256}: not the expected file. "
                f"Download it by hand to {path}."
            )

    return atomic_write(path, fetch)


def cached(key: list[Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, kept in the cache folder under ``key`` (plain data): what was computed once is read back."""
    path = cache_dir("scores") / f"{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        result = compute()
    with contextlib.suppress(OSError):  # a cache that cannot be written costs time, nothing else
        write_json(path, result)
    return result
