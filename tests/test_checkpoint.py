"""Checkpoints are self-describing and load without running pickled code; foreign files get a clear error."""

import numpy as np
import pytest
import torch

from mimic.models.card import CheckpointError, ModelCard
from mimic.models.checkpoint import load_net, read_card, read_checkpoint
from mimic.models.classifier import EmotionClassifier
from mimic.preprocessing import PreprocessSpec, preprocess


def test_round_trip_gives_the_same_predictions(tiny_checkpoint):
    a, b = EmotionClassifier.load(tiny_checkpoint), EmotionClassifier.load(tiny_checkpoint)
    faces = [np.random.default_rng(i).integers(0, 256, (90, 80, 3), dtype=np.uint8) for i in range(4)]
    x = preprocess(faces, a.spec)
    assert torch.equal(a.predict_proba(x), b.predict_proba(x))
    assert a.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert not a.training


def test_state_dict_matches_the_file(tiny_checkpoint):
    model = EmotionClassifier.load(tiny_checkpoint)
    saved = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.ckpt"):
        EmotionClassifier.load(tmp_path / "nope.ckpt")


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt is not a mimic checkpoint"):
        EmotionClassifier.load(junk)


def test_foreign_checkpoint_without_our_hparams(tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"lr": 0.1}}, other)
    with pytest.raises(CheckpointError, match="lacks net, class_names, preprocess, mimic_version"):
        EmotionClassifier.load(other)


class Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_pickled_code_is_not_run(tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        torch.save({"state_dict": {}, "hyper_parameters": {"x": Evil()}}, f)
    with pytest.raises(CheckpointError, match="without running pickled code"):
        EmotionClassifier.load(evil)
    assert "pickled code ran" not in capsys.readouterr().out


def test_net_target_must_be_ours(tiny_checkpoint, tmp_path):
    ckpt = read_checkpoint(tiny_checkpoint)
    ckpt["hyper_parameters"]["net"]["_target_"] = "os.system"
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="'os.system'; only mimic's own net builders are built"):
        EmotionClassifier.load(bad)


def test_checkpoints_as_written_before_still_load(tiny_checkpoint, tmp_path):
    """Today's configs spell the net's builder mimic.models.small_cnn.small_cnn, store the optimizer and scheduler
    configs, and older files carry an empty ``preprocess.extra``: all of it loads, to the same predictions."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["net"]["_target_"] == "mimic.models.small_cnn.small_cnn"
    hp["preprocess"]["extra"] = {}
    hp["optimizer"] = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05, "momentum": 0.9}
    hp["scheduler"] = {"_target_": "mimic.models.classifier.warmup_cosine", "_partial_": True, "warmup_fraction": 0.03}
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    x = preprocess([np.full((60, 60), 99, np.uint8), np.zeros((48, 48), np.uint8)], PreprocessSpec())
    want = EmotionClassifier.load(tiny_checkpoint).predict_proba(x)
    assert torch.equal(EmotionClassifier.load(old).predict_proba(x), want)
    net, card = load_net(old)
    assert card.preprocess == PreprocessSpec() and card.net["widths"] == [8, 16, 32]


def test_the_model_card_says_what_the_checkpoint_says(tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["hyper_parameters"].update(tta_flip=True, channels_last=False, weights="imagenet")
    ckpt["state_dict"]["temperature"] = torch.tensor(1.7)
    path = tmp_path / "card.ckpt"
    torch.save(ckpt, path)
    card, raw = read_card(path)
    assert card == ModelCard(
        net={"_target_": "mimic.models.small_cnn.small_cnn", "widths": [8, 16, 32], "hidden": 32},
        class_names=["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        preprocess=PreprocessSpec(),
        temperature=pytest.approx(1.7),
        tta_flip=True,
        channels_last=False,
        mimic_version=ckpt["hyper_parameters"]["mimic_version"],
    )
    model = EmotionClassifier.load(path)
    assert model.hparams.tta_flip and not model.hparams.channels_last and model.hparams.weights is None
    assert float(model.temperature) == pytest.approx(1.7)
