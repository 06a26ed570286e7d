"""Scale-out: the Optuna searches (hparams_search=), the launchers (hydra/launcher=joblib, submitit_local,
submitit_slurm), the trackers (logger=csv, logger=mlflow, both with TensorBoard), `mimic-train`'s return value (the
validation score the best checkpoint was selected on), the one-line error when an optional extra is missing, and
scripts/sweep_report.py. The extras are in the dev install (pyproject: dev includes mimic[scaleout]), so in CI nothing
here skips; without them the tests that need one skip."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_SYNTHETIC, compose, load_script

from mimic.errors import UserError

TINY_RUN = [*TINY_SYNTHETIC, "trainer.max_epochs=1"]


def _train_cli(args: list[str], cwd: Path, timeout: int = 400, prelude: str = "") -> subprocess.CompletedProcess:
    """`python train.py ARGS` in ``cwd``; ``prelude``: Python run first in the same process (a blocked import)."""
    code = f"{prelude}\nimport runpy, sys\nsys.argv = {[str(REPO / 'train.py'), *args]!r}\n"
    code += f"runpy.run_path({str(REPO / 'train.py')!r}, run_name='__main__')"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


# ---- a missing optional extra: one line, naming it, before Hydra composes ------------------------------------------
NEEDS = {
    "hparams_search=fer2013": "sweep",
    "hydra/sweeper=optuna": "sweep",
    "hydra/launcher=joblib": "joblib",
    "hydra/launcher=submitit_local": "submitit",
    "hydra/launcher=submitit_slurm": "submitit",
    "logger=mlflow": "mlflow",
    "logger=[tensorboard,mlflow]": "mlflow",
    "+logger=csv,mlflow": "mlflow",
}


@pytest.mark.parametrize(("word", "extra"), NEEDS.items())
def test_a_choice_that_needs_a_missing_extra_names_it(word, extra, monkeypatch):
    import mimic.extras

    monkeypatch.setattr(mimic.extras, "_importable", lambda module: False)
    with pytest.raises(UserError) as e:
        mimic.extras.check_command_line(["data=synthetic", word])
    message = str(e.value)
    assert "\n" not in message and word in message and f"pip install 'mimic[{extra}]'" in message, message


def test_choices_that_need_no_extra_pass_without_one(monkeypatch):
    import mimic.extras

    monkeypatch.setattr(mimic.extras, "_importable", lambda module: False)
    words = ["hparams_search=null", "logger=csv", "logger=[tensorboard,csv]", "~logger", "hydra/launcher=basic", "-m"]
    mimic.extras.check_command_line([*words, "model.optimizer.lr=0.01", "data.path=mlflow"])


def test_missing_sweeper_is_one_line_with_exit_2_and_nothing_run(tmp_path):
    """The real command with hydra-optuna-sweeper made unimportable: Hydra would fail while composing (it cannot find
    hydra/sweeper/optuna); mimic says which extra to install first."""
    block = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('hydra_plugins.hydra_optuna_sweeper'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    proc = _train_cli(["hparams_search=fer2013", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, 120, block)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: hparams_search=fer2013 needs Hydra's Optuna sweeper")
    assert "pip install 'mimic[sweep]'" in proc.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "outputs").exists()


# ---- configs: the searches fit the recipes they search, the launchers take their settings ------------------------
def _compose_with_hydra(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("mimic.conf", version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=True)


def _one_trial(params: dict) -> list[str]:
    """The overrides Hydra's Optuna sweeper would give a first trial of the search ``params``."""
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in params.items()])
    assert not fixed
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    return [f"{name}={trial._suggest(name, dist)}" for name, dist in space.items()]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("fer2013", {"model.optimizer.lr", "model.optimizer.weight_decay", "model.label_smoothing", "model.net.dropout",
                     "model.net.widths", "data.augment.1.p", "data.augment.2.p", "data.augment.3.p"}),
        ("finetune_webcam", {"trainer.max_epochs", "callbacks.freeze.patterns", "model.optimizer.lr"}),
    ],
)  # fmt: skip
def test_each_search_is_seeded_tpe_on_the_validation_score_and_fits_its_recipe(search, expected, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from omegaconf import OmegaConf

    from mimic.settings import check_settings

    cfg = _compose_with_hydra([f"hparams_search={search}"])
    sweeper = cfg.hydra.sweeper
    assert cfg.hydra.mode.name == "MULTIRUN" and sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed is not None
    assert sweeper.direction == "maximize" and cfg.callbacks.model_checkpoint.mode == "max"
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc" and sweeper.n_trials >= 10 and sweeper.n_jobs >= 1
    assert set(sweeper.params) == expected
    trial = _one_trial(OmegaConf.to_container(sweeper.params))
    tried = compose("train", [f"hparams_search={search}", *trial], output_dir=tmp_path)  # every key exists
    check_settings(tried, "train")
    for override in trial:
        key, value = override.split("=", 1)
        assert str(OmegaConf.select(tried, key)).replace(" ", "").replace("'", "") == value.replace("'", ""), key
    if search == "fer2013":  # the searched augmentations, by index into data/fer2013.yaml's list
        kinds = [tried.data.augment[i]._target_.rsplit(".", 1)[1] for i in (1, 2, 3)]
        assert kinds == ["Affine", "RandomBrightnessContrast", "CoarseDropout"]
        assert cfg.trainer.max_epochs == 8  # short trials
    else:
        assert cfg.task_name == "finetune_webcam" and "freeze" in cfg.callbacks  # +finetune=webcam is included


@pytest.mark.parametrize(
    ("launcher", "settings"),
    [
        ("joblib", {"n_jobs": 2}),
        ("submitit_local", {"timeout_min": 30}),
        ("submitit_slurm", {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 240, "cpus_per_task": 8}),
    ],
)
def test_launchers_are_config_choices_with_their_settings(launcher, settings, tmp_path):
    pytest.importorskip(f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher")
    given = [f"hydra.launcher.{k}={v}" for k, v in settings.items()]
    cfg = _compose_with_hydra([f"hydra/launcher={launcher}", *given, f"hydra.sweep.dir={tmp_path}/sweep"])
    assert cfg.hydra.launcher._target_.startswith(f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher.")
    assert {k: cfg.hydra.launcher[k] for k in settings} == settings
    if launcher.startswith("submitit"):  # the jobs' logs go inside the sweep's own folder
        assert cfg.hydra.launcher.submitit_folder == f"{tmp_path}/sweep/.submitit/%j"


@pytest.mark.slow  # a multirun through submitit in a process of its own
def test_submitit_slurm_submits_the_readmes_settings_as_one_array_job(tmp_path):
    """docs/scaleout.md's SLURM command up to the cluster: a stand-in sbatch keeps the script submitit writes and
    refuses it (nothing is trained here), so the #SBATCH lines show what a real cluster would get."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "sbatch: refused" >&2\nexit 1\n')
    (bin_ / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit checks that it is on a cluster
    for tool in bin_.iterdir():
        tool.chmod(0o755)
    settings = ["hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1", "hydra.launcher.cpus_per_task=8"]
    settings += ["hydra.launcher.mem_gb=32", "hydra.launcher.timeout_min=120", f"hydra.sweep.dir={tmp_path}/sweep"]
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    args = ["-m", "hydra/launcher=submitit_slurm", *settings, "trainer=gpu", "model=small_cnn,resnet18", "seed=1,2,3"]
    proc = subprocess.run([sys.executable, REPO / "train.py", *args], cwd=tmp_path, capture_output=True, env=env)
    assert proc.returncode != 0 and b"sbatch: refused" in proc.stderr
    lines = (tmp_path / "submitted.sh").read_text().splitlines()
    sbatch = {line.split()[1] for line in lines if line.startswith("#SBATCH")}
    expected = {"--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB", "--time=120"}
    assert expected | {"--array=0-5%6"} <= sbatch, sbatch  # 2 models x 3 seeds, one array job
    assert f"--output={tmp_path}/sweep/.submitit/%A_%a/%A_%a_0_log.out" in sbatch  # logs inside the sweep folder
    assert not list((tmp_path / "sweep").glob("[0-9]*"))  # no job ran


# ---- trackers and the objective: one real run logging to TensorBoard, MLflow and CSV at once -----------------------
@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tiny real run with logger=[tensorboard,mlflow,csv], the MLflow store under its outputs/ (as by default)."""
    pytest.importorskip("mlflow")
    tmp = tmp_path_factory.mktemp("tracked")
    before = {name: os.environ.pop(name, None) for name in ("MLFLOW_DISABLE_TELEMETRY", "MLFLOW_TRACKING_URI")}
    try:
        from mimic.train import run

        overrides = [*TINY_RUN, "trainer.log_every_n_steps=1", "logger=[tensorboard,mlflow,csv]"]
        overrides += [f"paths.log_dir={tmp}/outputs"]
        cfg = compose("train", overrides, output_dir=tmp / "run")
        results = run(cfg)
        telemetry = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
    finally:  # MLflow sets MLFLOW_TRACKING_URI in the process it logs from: put both back as they were
        for name, value in before.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
    return tmp, results, telemetry


@pytest.mark.slow  # a training run logging to MLflow, TensorBoard and CSV (MLflow's import alone: about 5 s)
def test_mlflow_run_reads_back_with_mlflows_own_client(tracked):
    import mlflow

    tmp, results, telemetry = tracked
    assert telemetry == "true"  # set by mimic before mlflow was imported: no usage data leaves the machine
    store = tmp / "outputs" / "mlflow" / "mlflow.db"
    assert store.is_file()  # SQLite: what MLflow 3.7+ prefers
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    (found,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert found.info.status == "FINISHED" and found.data.tags["run_folder"] == str(tmp / "run")
    metrics = json.loads((tmp / "run" / "test_metrics.json").read_text())
    for key in ("test/acc", "test/f1", "test/ece", "test/recall_happy"):
        assert found.data.metrics[key] == pytest.approx(metrics[key]), key
    assert found.data.metrics["val/acc"] == pytest.approx(metrics["val/acc"])  # one epoch: the last is the best
    assert [m.value for m in client.get_metric_history(found.info.run_id, "train/loss_step")]  # curves, not only ends
    params = found.data.params
    assert params["config/model/optimizer/lr"] == "0.05" and params["config/data/batch_size"] == "32"
    assert params["best_checkpoint"] == results["best_checkpoint"]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"confusion_matrix.png", "test_metrics.json"} <= artifacts
    logged = json.loads(Path(client.download_artifacts(found.info.run_id, "test_metrics.json", str(tmp))).read_text())
    assert logged["test/confusion_matrix"] == metrics["test/confusion_matrix"]


@pytest.mark.slow  # a training run logging to MLflow, TensorBoard and CSV (MLflow's import alone: about 5 s)
def test_csv_and_tensorboard_get_the_same_outcome(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, results, _ = tracked
    (version,) = (tmp / "run" / "csv").iterdir()
    hparams = yaml.safe_load((version / "hparams.yaml").read_text())
    assert hparams["best_checkpoint"] == results["best_checkpoint"]
    assert hparams["test/confusion_matrix"] == results["test/confusion_matrix"]
    assert hparams["config"]["model"]["optimizer"]["lr"] == 0.05
    with open(version / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(next(r["test/acc"] for r in rows if r.get("test/acc"))) == pytest.approx(results["test/acc"])
    tags: dict[str, list] = {"tensors": [], "images": []}
    for events in (tmp / "run" / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0, "images": 0})
        acc.Reload()
        for kind in tags:
            tags[kind] += acc.Tags()[kind]
    assert "best_checkpoint/text_summary" in tags["tensors"] and "test/confusion_matrix" in tags["images"]


@pytest.mark.slow  # a training run logging to MLflow, TensorBoard and CSV (MLflow's import alone: about 5 s)
def test_mimic_train_returns_the_selected_checkpoints_validation_score(tracked):
    """The objective of a search: the checkpoint callback's score of the checkpoint it kept, in test_metrics.json
    too; never a test metric."""
    import torch

    from mimic.cli import objective

    tmp, results, _ = tracked
    ckpt = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint{'monitor': 'val/acc'")]
    assert results["monitor"] == "val/acc" and objective(results) == pytest.approx(float(state["best_model_score"]))
    assert f"acc{objective(results):.4f}" in Path(results["best_checkpoint"]).name
    metrics = json.loads((tmp / "run" / "test_metrics.json").read_text())
    assert metrics["monitor"] == "val/acc" and metrics["val/acc"] == objective(results)
    assert objective({}) is None  # no checkpoint (fast_dev_run): nothing to optimise


@pytest.mark.slow  # imports MLflow
def test_mlflow_store_follows_what_the_installed_mlflow_prefers(tmp_path, monkeypatch):
    """SQLite where MLflow has it as its default (3.7 on); an older MLflow gets its file store; a tracking_uri (a
    server) is used as given. A user's own MLFLOW_DISABLE_TELEMETRY is left alone."""
    pytest.importorskip("mlflow")
    import mlflow.store.tracking

    from mimic.tracking import mlflow_logger

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "1")  # the user's own way of saying it
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # 3.7+ refuses the file store otherwise
    assert mlflow_logger(str(tmp_path / "a"))._tracking_uri == f"sqlite:///{tmp_path}/a/mlflow.db"
    assert mlflow_logger(str(tmp_path / "b"), "http://127.0.0.1:9")._tracking_uri == "http://127.0.0.1:9"
    monkeypatch.delattr(mlflow.store.tracking, "DEFAULT_TRACKING_URI")
    assert mlflow_logger(str(tmp_path / "c"))._tracking_uri == f"file:{tmp_path}/c/mlruns"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "1"


# ---- the engines, end to end -----------------------------------------------------------------------------------
@pytest.mark.slow  # three trainings in one process (about 20 s)
def test_optuna_search_of_three_trials_writes_its_best_parameters_and_value(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from test_folders import write_fer2013_csv

    fer = write_fer2013_csv(tmp_path / "fer2013.csv", {"Training": 12, "PublicTest": 4, "PrivateTest": 4})
    sweep = tmp_path / "sweep"
    args = ["hparams_search=fer2013", f"data.path={fer}", "trainer.max_epochs=1", "model.net.hidden=32"]
    args += ["data.batch_size=32", "callbacks.progress_bar.refresh_rate=0", "hydra.sweeper.n_trials=3"]
    proc = _train_cli([*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    params = {"model.optimizer.lr", "model.optimizer.weight_decay", "model.label_smoothing", "model.net.dropout"}
    params |= {"model.net.widths", "data.augment.1.p", "data.augment.2.p", "data.augment.3.p"}
    assert set(best["best_params"]) == params
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1", "2"]
    scores = {j.name: json.loads((j / "test_metrics.json").read_text())["val/acc"] for j in jobs}
    assert best["best_value"] == pytest.approx(max(scores.values()))  # the validation score, not the test one
    winner = max(scores, key=scores.get)
    tried = yaml.safe_load((sweep / winner / ".hydra" / "overrides.yaml").read_text())
    assert f"model.optimizer.lr={best['best_params']['model.optimizer.lr']}" in tried

    written = load_script("sweep_report").report(sweep)
    with open(written) as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows][0] == winner and len(rows) == 3
    assert float(rows[0]["best_val"]) == pytest.approx(best["best_value"], abs=1e-4)


@pytest.mark.slow  # two jobs in their own processes (about 30 s)
def test_submitit_local_sweep_of_two_jobs_each_in_its_own_run_folder(tmp_path):
    """submitit_local: the cluster launcher's code path on this machine. Both jobs start at once and log to one new
    MLflow store, whose tables only one of them may create."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pytest.importorskip("mlflow")
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "seed=1,2", "threads=1"]
    args += [*TINY_RUN, "logger=[csv,mlflow]", f"paths.log_dir={tmp_path}/outputs", f"hydra.sweep.dir={sweep}"]
    proc = _train_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, seed in (("0", 1), ("1", 2)):
        folder = sweep / job
        assert f"seed={seed}" in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        metrics = json.loads((folder / "test_metrics.json").read_text())
        assert Path(metrics["best_checkpoint"]).parent == folder / "checkpoints"
        assert (folder / "csv" / "version_0" / "metrics.csv").is_file() and (folder / "train.log").is_file()
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # each job ran as its own submitit job

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow/mlflow.db")
    found = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert sorted(r.data.tags["run_folder"] for r in found) == [str(sweep / "0"), str(sweep / "1")]


# ---- scripts/sweep_report.py -------------------------------------------------------------------------------------
def _job(sweep: Path, name: str, overrides: list[str], metrics: dict | None, extra: dict | None = None) -> None:
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (sweep / name / "test_metrics.json").write_text(json.dumps(metrics))
    for file, value in (extra or {}).items():
        (sweep / name / file).write_text(json.dumps(value))


def _metrics(val: float, test: float, ckpt: str) -> dict:
    return {"best_checkpoint": ckpt, "monitor": "val/acc", "val/acc": val, "test/acc": test}


def test_sweep_report_is_one_table_and_one_csv_read_as_plain_data(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    hostile = "data.path=${oc.env:HOME}"  # printed as written: nothing is resolved
    _job(sweep, "0", ["model=small_cnn", "seed=1"], _metrics(0.61, 0.60, f"{sweep}/0/checkpoints/best-a.ckpt"))
    _job(sweep, "1", ["model=small_cnn", "seed=2", hostile], _metrics(0.5, 0.4, "/old.ckpt"),
         {"test_metrics-1.json": _metrics(0.65, 0.63, f"{sweep}/1/checkpoints/best-b.ckpt")})  # fmt: skip
    _job(sweep, "2", ["model=small_cnn", "seed=3"], None)  # failed or still running
    _job(sweep, "10", ["model=small_cnn", "seed=11"], _metrics(0.55, 0.52, "/elsewhere/best-c.ckpt"))
    (sweep / ".submitit" / "123").mkdir(parents=True)  # not a job
    (sweep / "optimization_results.yaml").write_text("name: optuna\nbest_params: {seed: 2}\nbest_value: 0.65\n")
    (sweep / "sweep_report.csv").write_text("an earlier report\n")

    report = load_script("sweep_report")
    report.main([str(sweep)])
    written = sweep / "sweep_report-1.csv"
    assert (sweep / "sweep_report.csv").read_text() == "an earlier report\n"  # kept
    with open(written) as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["1", "0", "10", "2"]  # best validation score first, no result last
    assert rows[0] == {
        "job": "1",
        "overrides": f"model=small_cnn seed=2 {hostile}",
        "monitor": "val/acc",
        "best_val": "0.6500",
        "test_acc": "0.6300",
        "checkpoint": f"{sweep}/1/checkpoints/best-b.ckpt",
    }
    assert rows[3]["best_val"] == rows[3]["test_acc"] == "-" and rows[3]["checkpoint"] == ""
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == "every job: model=small_cnn" and lines[2].split()[:4] == ["job", "best", "val/acc", "test/acc"]
    assert lines[3].split()[:4] == ["1", "0.6500", "0.6300", "1/checkpoints/best-b.ckpt"] and hostile in lines[3]
    assert "Optuna's best (optimization_results.yaml): value 0.6500 with seed=2" in out
    assert f"CSV: {written}" in out


def _python_tag(marker: Path) -> str:
    """YAML whose tag names Python code that would create ``marker``: a loader that runs tags would make it."""
    return f'- !!python/object/apply:os.system ["touch {marker}"]\n'


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: None, "sweep folder not found"),
        (lambda p: p.mkdir(), "no job folders"),
        (lambda p: _job(p, "0", ["seed=1"], None) or (p / "0/.hydra/overrides.yaml").write_text("[unclosed"), "YAML"),
        (lambda p: _job(p, "0", ["seed=1"], None) or (p / "0/.hydra/overrides.yaml").write_text("a: 1"), "a list"),
        (
            lambda p: (
                _job(p, "0", ["seed=1"], None)
                or (p / "0/.hydra/overrides.yaml").write_text(_python_tag(p.parent / "ran"))
            ),
            "tag",
        ),
    ],
    ids=["missing", "empty", "broken_yaml", "not_a_list", "python_tag"],
)
def test_sweep_report_mistakes_are_one_line_and_exit_2(make, needle, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    make(sweep)
    with pytest.raises(SystemExit) as e:
        load_script("sweep_report").main([f"sweep={sweep}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ran").exists()  # a YAML tag naming Python code is refused, never run
