"""Every option of every config group composes, resolves, passes the settings check (mimic.settings), and (for data
and model) instantiates."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, compose
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mimic.settings import check_settings

TRAIN_GROUPS = ["data", "model", "trainer", "callbacks", "logger", "paths", "hydra", "experiment", "debug"]


def options(group: str) -> list[str]:
    """Every config in the group's folder: each is a choice ``--help`` offers, so each must compose (the shared bases,
    `_data_faces` and `_model_backbone`, live outside the groups)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


CASES = [(g, o) for g in TRAIN_GROUPS if g != "hydra" for o in options(g)]
REQUIRED = {"folder": ["data.path=faces"]}  # ??? in the shipped config: the user must give these


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_resolves(group, option, tmp_path):
    cfg = compose("train", [f"{group}={option}", *REQUIRED.get(option, [])], output_dir=tmp_path)
    check_settings(cfg, "train")
    OmegaConf.resolve(cfg)
    assert cfg.trainer.max_epochs >= 1
    assert list(cfg.model.class_names) == list(cfg.data.classes)


def test_hydra_group_sets_run_dirs_and_data_under_the_working_directory(tmp_path):
    """Runs and data go below the folder the command runs in, never into the installed package."""
    from hydra import compose as hc
    from hydra import initialize_config_module

    with initialize_config_module("mimic.conf", version_base="1.3"):
        cfg = hc("train", return_hydra_config=True)
    raw = OmegaConf.to_container(cfg, resolve=False)
    assert raw["hydra"]["run"]["dir"].startswith("${paths.log_dir}/")
    assert raw["paths"]["root_dir"] == "${hydra:runtime.cwd}"
    assert raw["paths"]["log_dir"] == "${paths.root_dir}/outputs"
    assert raw["paths"]["data_dir"] == "${paths.root_dir}/data"
    assert cfg.hydra.job.chdir is False


@pytest.mark.parametrize("overrides", [[], ["hparams_search=fer2013"], ["hydra/launcher=submitit_local"]])
def test_a_sweep_folder_resolves_before_hydras_runtime_values_exist(overrides):
    """A sweeper reads hydra.sweep.dir before Hydra sets its runtime values (HydraConfig), so it must not lean on
    ${hydra:...} (`python train.py -m seed=1,2` failed with "HydraConfig was not set" when it went through
    paths.log_dir). It is outputs/ of the working folder, as paths.log_dir's default."""
    from hydra import compose as hc
    from hydra import initialize_config_module
    from hydra.core.hydra_config import HydraConfig

    if overrides and overrides[0].startswith("hydra/launcher"):
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    elif overrides:
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    with initialize_config_module("mimic.conf", version_base="1.3"):
        cfg = hc("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().cfg = None  # as when a sweeper starts
    assert str(cfg.hydra.sweep.dir).startswith("outputs/train/multiruns/")
    assert OmegaConf.to_container(cfg.hydra.launcher, resolve=True) is not None


@pytest.mark.parametrize("model", options("model"))
def test_every_model_instantiates_offline(model, tmp_path):
    overrides = [f"model={model}", "data=synthetic"] + ([] if model.startswith("small_cnn") else ["model.weights=null"])
    cfg = compose("train", overrides, output_dir=tmp_path)
    net = instantiate(cfg.model, _recursive_=False)
    assert net.class_names == list(cfg.data.classes)


def test_finetune_realtime_and_evaluate_configs_compose_and_pass_the_check(tmp_path):
    for name in options("finetune"):
        check_settings(compose("train", [f"+finetune={name}"], output_dir=tmp_path), "train")
    for det in options("detector"):
        check_settings(compose("realtime", [f"detector={det}"], output_dir=tmp_path), "realtime")
    for data in options("data"):
        cfg = compose("evaluate", ["ckpt=x.ckpt", f"data={data}", *REQUIRED.get(data, [])], output_dir=tmp_path)
        check_settings(cfg, "evaluate")


def test_data_configs_instantiate(tmp_path: Path):
    cfg = compose("train", ["data=synthetic"], output_dir=tmp_path)
    dm = instantiate(cfg.data)
    assert dm.classes == list(cfg.data.classes)


def test_your_own_conf_folder_is_searched_and_its_absence_is_fine(tmp_path, monkeypatch):
    """conf/ in the folder a command runs from adds configs (the checkout's example experiment) and conf/local/
    default.yaml settings; a folder without conf/ composes the same, without a warning."""
    from conftest import REPO

    monkeypatch.chdir(REPO)
    cfg = compose("train", ["experiment=example"], output_dir=tmp_path)
    assert cfg.task_name == "example" and cfg.model.optimizer.lr == 0.02 and cfg.trainer.max_epochs == 8
    mine = tmp_path / "elsewhere"
    (mine / "conf" / "local").mkdir(parents=True)
    (mine / "conf" / "local" / "default.yaml").write_text("# @package _global_\nseed: 7\nthreads: 2\n")
    monkeypatch.chdir(mine)
    for command in ("train", "evaluate", "realtime"):
        assert compose(command, [], output_dir=tmp_path).threads == 2
    monkeypatch.chdir(tmp_path)
    assert compose("train", [], output_dir=tmp_path).seed == 42
    shown = subprocess.run([sys.executable, str(REPO / "train.py"), "--cfg", "job"], cwd=tmp_path, capture_output=True)
    assert shown.returncode == 0 and b"task_name: train" in shown.stdout and b"searchpath" not in shown.stderr


def test_help_offers_the_options_and_your_data_config_builds_on_the_shared_base(tmp_path, monkeypatch):
    """``train.py --help`` lists exactly the data and model configs that can be chosen, not the bases they share; a
    data config of your own in conf/data/ starts from `_data_faces` as the shipped ones do."""
    from conftest import REPO

    shown = subprocess.run([sys.executable, str(REPO / "train.py"), "--help"], cwd=tmp_path, capture_output=True)
    groups = shown.stdout.decode().split("== Config ==")[0]  # the part that lists each group's options
    listed = dict(line.split(": ", 1) for line in groups.splitlines() if line.startswith(("data: ", "model: ")))
    assert shown.returncode == 0 and {g: v.split(", ") for g, v in listed.items()} == {
        "data": options("data"),
        "model": options("model"),
    }
    assert "_data_faces" not in groups and "_model_backbone" not in groups
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /_data_faces\n  - _self_\ndata:\n  path: faces\n  batch_size: 16\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = compose("train", ["data=mine"], output_dir=tmp_path)
    assert cfg.data._target_ == "mimic.data.datamodule.EmotionDataModule" and cfg.data.batch_size == 16
    assert cfg.data.augment[0]._target_ == "albumentations.HorizontalFlip"
