"""Cross-dataset evaluation: ``split=all`` tests every image of a data config, and a multirun of scripts/evaluate.py
over data configs ends with one table of them (mimic.cross_report), printed once and written as the sweep folder's
cross_dataset.csv, a failed job a row of its own while the others still run."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, compose
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from mimic.cross_report import IN_THIS_PROCESS, CrossDatasetReport, JobFailed
from mimic.data.base import DataError
from mimic.data.synthetic import draw_faces
from mimic.evaluate import run
from mimic.labels import FER2013_CLASSES
from mimic.settings import check_settings

TINY = {"n_train": 14, "n_val": 7, "n_test": 21}  # split=all: 42 images
DATA = ["tiny", "faces", "missing"]
COLUMNS = ["job", "data", "split", "n", "accuracy", "balanced_accuracy", "macro_f1"]


def _user_configs(cwd: Path) -> None:
    """conf/data/ of the folder the command runs in (evaluate.yaml searches file://conf): ``tiny`` (synthetic faces,
    every class), ``faces`` (9 photos in 3 class folders) and ``missing`` (a folder that is not there)."""
    rng = np.random.default_rng(0)
    for i, name in enumerate(["happy", "sad", "surprise"]):
        folder = cwd / "faces" / f"{i}_{name}"
        folder.mkdir(parents=True)
        for k, face in enumerate(draw_faces([name] * 3, 96, rng, bgr=True)):
            cv2.imwrite(str(folder / f"{k}.jpg"), face)
    configs = {
        "tiny": {"defaults": ["synthetic", "_self_"], "data": {"sources": {"synthetic": TINY}}},
        "faces": {
            "defaults": ["folder", "_self_"],
            "data": {"path": str(cwd / "faces"), "sources": {"folder": {"cache_dir": False}}},
        },
        "missing": {"defaults": ["folder", "_self_"], "data": {"path": str(cwd / "nowhere")}},
    }
    (cwd / "conf" / "data").mkdir(parents=True)
    for name, config in configs.items():
        (cwd / "conf" / "data" / f"{name}.yaml").write_text("# @package _global_\n" + OmegaConf.to_yaml(config))


def _evaluate(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "scripts" / "evaluate.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=cwd)


@pytest.fixture(scope="module")
def sweep(tiny_checkpoint, tmp_path_factory):
    """The command as a user types it, over three data configs of the folder it runs in, the last of which fails."""
    cwd = tmp_path_factory.mktemp("cross")
    _user_configs(cwd)
    args = ["-m", f"ckpt={tiny_checkpoint}", f"data={','.join(DATA)}", "split=all", f"hydra.sweep.dir={cwd / 'sweep'}"]
    return _evaluate(args, cwd), cwd / "sweep"


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.slow  # scripts/evaluate.py as a multirun in a process of its own (about 7 s)
def test_one_table_of_every_job_printed_once(sweep):
    proc, folder = sweep
    assert proc.returncode == 2, proc.stderr[-3000:]  # a job failed: the user's mistake's exit status, after the table
    assert proc.stdout.count("Cross-dataset report (3 jobs") == 1
    table = proc.stdout.split("Cross-dataset report", 1)[1].splitlines()
    header, tiny, faces, missing = table[1:5]
    assert header.split() == ["job", "data", "split", "n", "accuracy", "balanced", "macro-F1", *FER2013_CLASSES]
    for line, name, job in [(tiny, "tiny", 0), (faces, "faces", 1)]:
        metrics = json.loads((folder / str(job) / "test_metrics.json").read_text())
        scores = [metrics[k] for k in ("test/acc", "test/balanced_acc", "test/f1")]
        recalls = [metrics[f"test/recall_{c}"] for c in FER2013_CLASSES]
        shown = ["n/a" if v is None else f"{v:.4f}" for v in scores + recalls]
        assert line.split() == [str(job), name, "all", str(metrics["n"]), *shown]
    assert faces.split()[7:10] == ["n/a"] * 3  # no angry, disgust or fear photo
    assert missing.split()[:4] == ["2", "missing", "all", "failed:"] and "nowhere not found" in missing
    assert table[5] == f"CSV: {folder / 'cross_dataset.csv'}"
    assert "nowhere not found" in proc.stderr and "error: 1 of 3 jobs failed" in proc.stderr


@pytest.mark.slow  # scripts/evaluate.py as a multirun in a process of its own (about 7 s)
def test_the_csv_holds_each_jobs_metrics(sweep, tiny_checkpoint):
    _, folder = sweep
    columns, rows = _rows(folder / "cross_dataset.csv")
    recalls = [f"recall_{c}" for c in FER2013_CLASSES]
    assert columns == [*COLUMNS, *recalls, "error", "checkpoint", "overrides"]
    assert [(r["job"], r["data"], r["split"]) for r in rows] == [(str(k), d, "all") for k, d in enumerate(DATA)]
    for row in rows[:2]:
        metrics = json.loads((folder / row["job"] / "test_metrics.json").read_text())
        assert int(row["n"]) == metrics["n"] and row["error"] == ""
        assert row["checkpoint"] == str(tiny_checkpoint) and f"data={row['data']}" in row["overrides"].split()
        keys = ["test/acc", "test/balanced_acc", "test/f1", *(f"test/recall_{c}" for c in FER2013_CLASSES)]
        for column, key in zip([*COLUMNS[4:], *recalls], keys):
            if metrics[key] is None:
                assert row[column] == "", column  # n/a: an empty cell
            else:
                assert "e" not in row[column] and float(row[column]) == pytest.approx(metrics[key], abs=1e-6)
    tiny, faces, missing = rows
    assert tiny["recall_angry"] != "" and faces["recall_angry"] == "" and faces["recall_happy"] != ""
    assert "nowhere not found" in missing["error"]
    assert all(missing[c] == "" for c in COLUMNS[3:] + recalls)


@pytest.mark.slow  # scripts/evaluate.py as a multirun in a process of its own (about 7 s)
def test_split_all_tests_every_image_of_a_set(sweep):
    _, folder = sweep
    tiny = json.loads((folder / "0" / "test_metrics.json").read_text())
    assert tiny["split"] == "all" and tiny["n"] == sum(TINY.values()) == 42
    _, predictions = _rows(folder / "0" / "predictions.csv")
    assert {r["image"].rsplit(":", 1)[0] for r in predictions} == {f"synthetic:{s}" for s in ("train", "val", "test")}
    assert json.loads((folder / "1" / "test_metrics.json").read_text())["n"] == 9  # every photo of the folders


@pytest.mark.slow  # scripts/evaluate.py in a process of its own
def test_a_single_run_prints_no_table(tiny_checkpoint, tmp_path):
    _user_configs(tmp_path)
    proc = _evaluate([f"ckpt={tiny_checkpoint}", "data=faces", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all: accuracy" in proc.stdout and "Cross-dataset" not in proc.stdout  # data=folder is test_only: all
    assert not list(tmp_path.rglob("cross_dataset*.csv"))


def test_a_split_that_is_not_one_of_the_four(tiny_checkpoint, tmp_path):
    with pytest.raises(DataError, match="split='holdout': choose one of train, val, test, all"):
        run(compose("evaluate", [f"ckpt={tiny_checkpoint}", "data=synthetic", "split=holdout"], output_dir=tmp_path))
    with pytest.raises(Exception, match="'train', 'val', 'test', 'all'|train, val, test, all"):
        check_settings(compose("evaluate", ["split=holdout"]), "evaluate")


def _job(num: int, folder: Path, mode: RunMode = RunMode.MULTIRUN, data: str = "x"):
    return OmegaConf.create(
        {
            "split": "test",
            "hydra": {
                "mode": mode,
                "job": {"num": num},
                "runtime": {"choices": {"data": data}},
                "overrides": {"task": [f"data={data}"]},
                "launcher": {"_target_": IN_THIS_PROCESS},
                "sweep": {"dir": str(folder)},
            },
        }
    )


def _result(recall: dict) -> dict:
    scores = {"test/acc": 0.5, "test/balanced_acc": 0.25, "test/f1": 0.125}
    recalls = {f"test/recall_{c}": v for c, v in recall.items()}
    return {"split": "test", "n": 4, **scores, **recalls, "class_names": list(recall)}


def test_class_columns_are_every_models_classes_and_a_bug_is_a_row(tmp_path, capsys):
    """Rows of models with other classes: a class one model lacks is n/a in its row. A job that failed on a bug is a
    row, the sweep is not ended on it (Hydra's sweeper would raise it), and the command then exits 1."""
    report = CrossDatasetReport()
    for num, (data, recall) in enumerate([("a", {"happy": 1.0, "sad": None}), ("b", {"angry": 0.0, "sad": 0.5})]):
        report.on_job_end(
            _job(num, tmp_path, data=data), JobReturn(status=JobStatus.COMPLETED, _return_value=_result(recall))
        )
    crashed = JobReturn(status=JobStatus.FAILED, _return_value=ZeroDivisionError("division by zero\nmore"))
    report.on_job_end(_job(2, tmp_path, data="c"), crashed)
    assert crashed.status == JobStatus.COMPLETED and crashed.return_value is None
    with pytest.raises(SystemExit) as exit_info:
        report.on_multirun_end(_job(0, tmp_path))
    assert exit_info.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-5].split() == ["job", "data", "split", "n", "accuracy", "balanced", "macro-F1", "happy", "sad", "angry"]
    assert out[-4].split() == ["0", "a", "test", "4", "0.5000", "0.2500", "0.1250", "1.0000", "n/a", "n/a"]
    assert out[-3].split() == ["1", "b", "test", "4", "0.5000", "0.2500", "0.1250", "n/a", "0.5000", "0.0000"]
    assert out[-2].split() == ["2", "c", "test", "failed:", "division", "by", "zero"]
    columns, rows = _rows(tmp_path / "cross_dataset.csv")
    assert columns[7:10] == ["recall_happy", "recall_sad", "recall_angry"]
    assert [r["recall_sad"] for r in rows] == ["", "0.500000", ""] and rows[2]["error"] == "division by zero"
    with pytest.raises(SystemExit):
        report.on_multirun_end(_job(0, tmp_path))  # the same sweep folder again: the first CSV is kept
    assert _rows(tmp_path / "cross_dataset-1.csv") == (columns, rows)


def test_a_user_error_fails_its_job_only_in_a_multirun(tmp_path, capsys):
    report = CrossDatasetReport()
    try:
        raise JobFailed("data.path: not found") from DataError("data.path: not found")
    except JobFailed as e:
        failed = JobReturn(status=JobStatus.FAILED, _return_value=e)
    report.on_job_end(_job(0, tmp_path), failed)
    assert not report.bugs and "error: data.path: not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        report.on_multirun_end(_job(0, tmp_path))
    assert exit_info.value.code == 2
    single = CrossDatasetReport()
    single.on_job_end(_job(0, tmp_path, mode=RunMode.RUN), JobReturn(status=JobStatus.COMPLETED, _return_value={}))
    assert single.rows == []
