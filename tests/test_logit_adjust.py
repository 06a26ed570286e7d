"""Logit adjustment (``logit_adjust``): the choice of tau on held-out data, and a real Trainer run whose best
checkpoint reads every face with its logits shifted by -tau * log(the training faces' class shares), in the file
itself, so evaluation, the live app and an ONNX export all get it."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_SYNTHETIC, compose

from mimic.evaluate import LOGIT_ADJUST_GRID, choose_logit_adjustment
from mimic.models.classifier import EmotionClassifier
from mimic.train import adjust_checkpoint, run

LOG_PRIOR = torch.tensor([math.log(0.9), math.log(0.1)], dtype=torch.float64)  # tau lifts class 1 by 2.2 * tau


def _logits(margins: list[float]) -> torch.Tensor:
    """Two-class logits whose class-0 logit leads class 1's by each margin."""
    return torch.tensor([[m, 0.0] for m in margins])


def test_the_smallest_tau_with_the_best_balanced_accuracy_is_chosen():
    # 90 faces of class 0 read right by a wide margin, 10 of class 1 read as class 0 by 0.5: from tau 0.3 on
    # (2.2 * 0.3 = 0.66 > 0.5) class 1 is read right, and accuracy rises with balanced accuracy.
    labels = torch.tensor([0] * 90 + [1] * 10)
    tau, scores = choose_logit_adjustment(_logits([3.0] * 90 + [0.5] * 10), labels, LOG_PRIOR)
    assert tau == 0.3 and scores[0.0] == (0.9, 0.5) and scores[0.3] == (1.0, 1.0)
    assert list(scores) == list(LOGIT_ADJUST_GRID)


def test_no_tau_that_costs_accuracy_is_chosen():
    # tau 0.3 reads both class-1 faces right (balanced 0.5 -> 0.85) but three class-0 faces wrong: accuracy falls
    # from 10/12 to 9/12, so the adjustment is refused.
    labels = torch.tensor([0] * 10 + [1] * 2)
    tau, scores = choose_logit_adjustment(_logits([0.4] * 3 + [3.0] * 7 + [0.5] * 2), labels, LOG_PRIOR)
    assert scores[0.3][1] == pytest.approx(0.85) and scores[0.3][0] < scores[0.0][0]
    assert tau == 0.0


def _val_logits(path, faces: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return EmotionClassifier.load(path)(faces).double()


@pytest.fixture(scope="module")
def faces():
    return torch.rand(16, 1, 48, 48, generator=torch.Generator().manual_seed(0))


def test_a_fixed_tau_is_folded_into_the_best_checkpoint(tmp_path, faces):
    # One epoch: the best checkpoint and last.ckpt hold the same weights; only the best one is adjusted.
    cfg = compose("train", [*TINY_SYNTHETIC, "trainer.max_epochs=1", "logit_adjust=0.5"], output_dir=tmp_path)
    results = run(cfg)
    counts = np.bincount(np.arange(140) % 7, minlength=7)  # the synthetic training faces: balanced
    share = counts / counts.sum()
    assert results["logit_adjust"] == {"tau": 0.5, "train_class_share": pytest.approx(share.tolist(), abs=1e-6)}
    best, last = results["best_checkpoint"], tmp_path / "checkpoints" / "last.ckpt"
    expected = _val_logits(last, faces) - 0.5 * torch.log(torch.tensor(share))
    assert torch.allclose(_val_logits(best, faces), expected, atol=1e-5)
    assert torch.load(best, weights_only=True)["logit_adjust"]["tau"] == 0.5
    assert json.loads((tmp_path / "test_metrics.json").read_text())["logit_adjust"]["tau"] == 0.5
    # A second adjustment (a resumed run whose best checkpoint is this one) leaves the file as it is.
    before = (tmp_path / "checkpoints" / best.split("/")[-1]).read_bytes()
    model = EmotionClassifier.load(best)
    assert adjust_checkpoint(model, best, None, 0.5)["tau"] == 0.5
    assert (tmp_path / "checkpoints" / best.split("/")[-1]).read_bytes() == before


def test_tau_chosen_on_the_validation_split(tmp_path, caplog):
    # The synthetic training faces are balanced: every tau shifts each logit alike and reads the same, so the
    # smallest, 0, is chosen, and the run says what it measured.
    overrides = [*TINY_SYNTHETIC, "trainer.max_epochs=1", "logit_adjust=true"]
    with caplog.at_level("INFO", logger="mimic.train"):
        results = run(compose("train", overrides, output_dir=tmp_path))
    assert results["logit_adjust"]["tau"] == 0.0
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("logit adjustment tau")]
    acc0, acc = (float(x) for x in line.split("validation accuracy ")[1].split(",")[0].split(" -> "))
    assert line.startswith("logit adjustment tau 0.0") and acc == acc0 > 0
