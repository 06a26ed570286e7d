"""A run into a folder that holds an earlier run keeps that run's record (`mimic.run_folders`): train.py as typed,
twice into one folder, then a multirun into a sweep folder that holds jobs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_SYNTHETIC


def _train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / "train.py"), *args, *TINY_SYNTHETIC, "debug=fdr"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.slow  # train.py in a subprocess, three times
def test_a_second_run_in_a_folder_keeps_the_first_runs_config(tmp_path):
    run = tmp_path / "run"
    for seed in (1, 2, 3):
        proc = _train([f"seed={seed}", f"hydra.run.dir={run}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    seeds = {d.name: yaml.safe_load((d / "config.yaml").read_text())["seed"] for d in run.glob(".hydra*")}
    assert seeds == {".hydra": 1, ".hydra-1": 2, ".hydra-2": 3}
    for name in (".hydra-1", ".hydra-2"):
        assert yaml.safe_load((run / name / "hydra.yaml").read_text())["hydra"]["output_subdir"] == name
        assert f"seed={seeds[name]}" in yaml.safe_load((run / name / "overrides.yaml").read_text())


@pytest.mark.slow
def test_a_multirun_into_a_sweep_folder_with_jobs_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    config = sweep / "0" / ".hydra" / "config.yaml"
    config.write_text("seed: 7\n")
    proc = _train(["-m", "seed=1,2", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: hydra.sweep.dir={sweep}: it holds an earlier multirun's jobs (0), which this one would overwrite. "
        "Name a new folder, or leave hydra.sweep.dir out: each multirun then gets a dated folder of its own."
    )
    assert "Traceback" not in proc.stderr
    assert config.read_text() == "seed: 7\n" and sorted(p.name for p in sweep.iterdir()) == ["0"]
