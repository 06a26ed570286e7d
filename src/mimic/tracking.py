"""Experiment trackers beside TensorBoard (``logger=csv``, ``logger=mlflow``, ``logger=[tensorboard,mlflow]``): MLflow's
logger on a local store under outputs/ or on a tracking server, with MLflow's usage telemetry off; and what every
logger gets when a run ends (`log_results`). The hyper-parameters (train.py logs the composed config) and the test
metrics (Lightning's test logs them) reach every logger on their own.

MLflow is an optional extra (``pip install 'mimic[mlflow]'``), imported only when its logger is made.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger

from mimic.extras import require
from mimic.models.figures import render_confusion


def mlflow_logger(
    store: str, tracking_uri: str | None = None, artifact_location: str | None = None, **kwargs
) -> MLFlowLogger:
    """Lightning's `MLFlowLogger` on ``tracking_uri`` (a server, ``http://host:5000``, or any store MLflow takes); when
    that is null, on a local store in the folder ``store``: SQLite (``mlflow.db``, artifacts in ``artifacts/``) where
    the installed MLflow prefers it (3.7 on, which refuses its old file store), else its file store (``mlruns/``).
    ``kwargs`` go to `MLFlowLogger` (experiment_name, run_name, tags, ...).

    MLflow's usage telemetry is switched off (``MLFLOW_DISABLE_TELEMETRY=true``, read when mlflow is imported) unless
    the environment already says otherwise: nothing reaches the network unasked."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    require("mlflow", "logger=mlflow", ["mlflow"])
    if not tracking_uri:
        folder = Path(store).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        import mlflow.store.tracking  # the optional extra: imported only when its logger is made

        if str(getattr(mlflow.store.tracking, "DEFAULT_TRACKING_URI", "")).startswith("sqlite"):
            require("mlflow", f"MLflow's local store ({folder / 'mlflow.db'})")
            tracking_uri = f"sqlite:///{(folder / 'mlflow.db').as_posix()}"
            artifact_location = artifact_location or (folder / "artifacts").as_uri()
            with _one_at_a_time(folder / ".mlflow.db.lock"):  # the client creates the tables of a new database
                return MLFlowLogger(tracking_uri=tracking_uri, artifact_location=artifact_location, **kwargs)
        tracking_uri = f"file:{(folder / 'mlruns').as_posix()}"
    return MLFlowLogger(tracking_uri=tracking_uri, artifact_location=artifact_location, **kwargs)


@contextlib.contextmanager
def _one_at_a_time(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (POSIX; elsewhere no lock): parallel jobs of a sweep
    (hydra/launcher=joblib, submitit_local) starting on a new SQLite store would each create MLflow's tables, and all
    but one fail."""
    try:
        import fcntl  # POSIX only: elsewhere, no lock
    except ImportError:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def log_results(loggers: list[Logger], results: dict) -> None:
    """Give each logger what the run ended with, beside its curves: the best checkpoint's path (TensorBoard: text;
    the others: a hyper-parameter) and, when the run was tested, the test confusion matrix (TensorBoard has it as an
    image already; CSV in hparams.yaml; MLflow as the artifacts ``confusion_matrix.png`` and ``test_metrics.json``)."""
    best = results["best_checkpoint"]
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):  # its hparams.yaml is written once, before the run ends
            lg.experiment.add_text("best_checkpoint", best)
            lg.experiment.flush()
        else:
            lg.log_hyperparams({"best_checkpoint": best})
        if "test/confusion_matrix" not in results:
            continue
        confusion, names = results["test/confusion_matrix"], results["class_names"]
        if isinstance(lg, CSVLogger):
            lg.log_hyperparams({"test/confusion_matrix": confusion, "class_names": names})
        elif isinstance(lg, MLFlowLogger):
            lg.experiment.log_dict(lg.run_id, results, "test_metrics.json")
            image = render_confusion(np.array(confusion), names)
            lg.experiment.log_image(lg.run_id, image, artifact_file="confusion_matrix.png")
