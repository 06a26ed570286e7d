"""Shared fixtures: the one way tests reach the real data in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# mimic's cache (parsed datasets, face crops, ONNX exports of checkpoints) goes to a folder of this test session, for
# the commands the tests start too, never into the user's ~/.cache/mimic
_CACHE = tempfile.mkdtemp(prefix="mimic-test-cache-")
os.environ["MIMIC_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real datasets: $MIMIC_TEST_DATA, else ../shared/data beside the checkout; skip when it is absent
    or empty (a user's clone has neither)."""
    root = Path(os.environ.get("MIMIC_TEST_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir() or not any(root.iterdir()):
        pytest.skip(f"real test data not found at {root} (set MIMIC_TEST_DATA)")
    return root


def load_script(name: str):
    """The module of ``scripts/<name>.py`` (``bench/<name>`` for a measurement script; the scripts are not a package),
    for tests that call its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(name).name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_tiny_checkpoint(path: Path, classes=None, widths=(8, 16, 32), steps: int = 3, seed: int = 0) -> Path:
    """Train a tiny small_cnn for a few steps on synthetic faces and save a real Lightning checkpoint at ``path``."""
    import lightning as L

    from mimic.data.datamodule import EmotionDataModule
    from mimic.data.synthetic import SyntheticSource
    from mimic.labels import FER2013_CLASSES
    from mimic.models.classifier import EmotionClassifier

    classes = list(classes or FER2013_CLASSES)
    L.seed_everything(seed)
    dm = EmotionDataModule(
        {"synthetic": SyntheticSource(classes, n_train=64, n_val=32, n_test=32, seed=seed)}, classes, batch_size=16
    )
    model = EmotionClassifier(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": list(widths), "hidden": 32},
        class_names=classes,
        preprocess={"size": 48, "channels": 1, "mean": [0.5], "std": [0.5], "crop_margin": 0.1},
        tta_flip=False,  # the tests that need flip TTA turn it on
        log_images=False,
    )
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real mimic checkpoint (tiny small_cnn, FER2013's 7 classes, a few steps on synthetic faces)."""
    return train_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


CONF = REPO / "src" / "mimic" / "conf"  # the package's configs, composed below as the commands do: pkg://mimic.conf


def compose(config_name: str = "train", overrides: list[str] | None = None, output_dir: Path | None = None):
    """Compose a real config from mimic.conf as the command line would, with Hydra's runtime interpolations resolvable.

    ``output_dir`` stands in for the run folder Hydra would create (and becomes paths.log_dir's parent too).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_module("mimic.conf", version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=list(overrides or []), return_hydra_config=True)
    out = Path(output_dir) if output_dir else REPO / "outputs" / "pytest"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.runtime.cwd = str(REPO)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


TINY_SYNTHETIC = [
    "data=synthetic",
    "data.sources.synthetic.n_train=140",
    "data.sources.synthetic.n_val=70",
    "data.sources.synthetic.n_test=70",
    "data.batch_size=32",
    "model.net.widths=[8,16,32]",
    "model.net.hidden=32",
    "callbacks.progress_bar.refresh_rate=0",
]
"""Overrides that make `train.py data=synthetic` a seconds-long run, for end-to-end tests."""
