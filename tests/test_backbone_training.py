"""Every backbone trains through the same LightningModule and configs: fast_dev_run on synthetic faces, composition
with every data config and with +finetune=webcam (freeze patterns by stage name)."""

import pytest
from conftest import CONF, compose
from hydra.utils import instantiate

from mimic.train import run

BACKBONES = ["resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large"]
FAST = [
    "data=synthetic",
    "data.sources.synthetic.n_train=14",
    "data.sources.synthetic.n_val=7",
    "data.sources.synthetic.n_test=7",
    "data.batch_size=4",
    "model.weights=null",
    "model.preprocess.size=64",
    "debug=fdr",
    "logger=none",
]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fast_dev_run(backbone, tmp_path):
    cfg = compose("train", [f"model={backbone}", *FAST], output_dir=tmp_path)
    assert run(cfg) == {}  # fast_dev_run writes no checkpoint, so nothing is calibrated or tested


@pytest.mark.slow  # every data config composed and each backbone built (about 10 s in all)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_composes_with_every_data_config_and_finetune(backbone, tmp_path):
    for data in sorted(p.stem for p in (CONF / "data").glob("*.yaml")):
        cfg = compose("train", [f"model={backbone}", f"data={data}"], output_dir=tmp_path)
        assert cfg.model.preprocess.size == 112 and list(cfg.model.class_names) == list(cfg.data.classes)
    patterns = "[conv1,bn1,layer1,layer2]" if backbone.startswith("resnet") else "[features.0,features.1]"
    cfg = compose(
        "train",
        [f"model={backbone}", "+finetune=webcam", f"callbacks.freeze.patterns={patterns}", "model.weights=null"],
        output_dir=tmp_path,
    )
    freeze = instantiate(cfg.callbacks.freeze)
    model = instantiate(cfg.model, _recursive_=False)
    matched = freeze._match(model)
    assert all(matched[p] for p in freeze.patterns), matched
