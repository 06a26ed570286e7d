"""mimic.io's atomic writes: whole files or none, with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat

import pytest

from mimic.io import atomic_write, write_json


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_umask_permissions_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_json(tmp_path / "sub" / "metrics.json", {"acc": 0.7})
    assert path.read_text() == '{\n  "acc": 0.7\n}\n'
    assert _mode(path) == 0o666 & ~umask != 0o600


def test_a_replaced_file_keeps_its_permissions_and_a_failed_write_leaves_it_whole(tmp_path):
    path = tmp_path / "faces.csv"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write(path, lambda tmp: tmp.write_text("new\n"))
    assert path.read_text() == "new\n" and _mode(path) == 0o640

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["faces.csv"]
