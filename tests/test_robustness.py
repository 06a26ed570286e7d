"""scripts/bench/robustness.py (issue 25): the dimmed and shrunk copies of faces are what its rows say, seeded; and on
the real data it prints every row for a model file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import load_script, train_tiny_checkpoint

from mimic.errors import UserError

bench = load_script("bench/robustness")


def test_dimming_is_gain_offset_and_seeded_noise_clipped_to_uint8():
    faces = np.full((4, 48, 48), 129, np.uint8)
    assert (bench.dimmed(faces, 0.3, 0.0, 0.0, seed=0) == 39).all()  # round(129 x 0.3) = 39: a dim room's grey
    noisy = bench.dimmed(faces, 0.3, 0.0, 3.0, seed=1)
    assert noisy.dtype == np.uint8 and abs(float(noisy.mean()) - 38.7) < 0.3 and 2.5 < float(noisy.std()) < 3.5
    assert (noisy == bench.dimmed(faces, 0.3, 0.0, 3.0, seed=1)).all()
    assert not (noisy == bench.dimmed(faces, 0.3, 0.0, 3.0, seed=2)).all()
    dark = bench.dimmed(np.zeros((1, 8, 8), np.uint8), 0.2, 5.0, 40.0, seed=0)
    assert dark.min() == 0 and dark.max() <= 255  # clipped, not wrapped


def test_shrinking_to_20_px_keeps_the_size_and_loses_the_detail():
    checker = (np.indices((48, 48)).sum(0) % 2 * 255).astype(np.uint8)[None]
    face = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (1, 48, 48)).astype(np.uint8)[0], (0, 0), 3)
    out = bench.shrunk(np.concatenate([checker, face[None]]), 20)
    assert out.shape == (2, 48, 48) and out.dtype == np.uint8
    assert out[0].std() < 10  # 1-px detail is gone
    assert np.abs(out[1].astype(int) - face).mean() < 6  # a smooth face survives


def test_ck_plus_interval_resamples_whole_sequences_within_each_class():
    """Class 0: ten sequences of three frames, five read right and five wrong; class 1: all right. Each resample's
    balanced accuracy is then (k / 10 + 1) / 2 for k right sequences drawn: whole sequences, never single frames."""
    labels = np.repeat([0, 1], [30, 12])
    sequences = np.array([f"S{i // 3:03d}_001" for i in range(30)] + [f"S{100 + i // 3}_002" for i in range(12)])
    guess = labels.copy()
    guess[:15] = 1  # the first five sequences of class 0 read wrong
    acc, balanced, class0, class1 = bench.sequence_interval(labels, guess, sequences, seed=0)
    assert 50 <= balanced[0] < 75 < balanced[1] <= 100 and acc[0] < 100 * 27 / 42 < acc[1]
    for value in balanced:
        assert (value / 100 * 2 - 1) * 10 == pytest.approx(round((value / 100 * 2 - 1) * 10))
    assert class0[0] < 50 < class0[1] and list(class1) == [100, 100]
    np.testing.assert_array_equal(bench.sequence_interval(labels, guess, sequences, seed=0)[1], balanced)
    assert list(bench.sequence_interval(labels, labels, sequences, seed=0)[1]) == [100, 100]
    # against another model: differences over the same resamples. One that errs on one more sequence of class 0 is
    # 10 points behind on that class for each time a resample draws that sequence, and level on class 1.
    other = guess.copy()
    other[15:18] = 1
    acc, balanced, class0, class1 = bench.sequence_interval(labels, guess, sequences, seed=0, base=other)
    assert (
        0 <= class0[0] < class0[1] <= 30 + 1e-9
        and list(class1) == [0, 0]
        and 0 <= balanced[0] < balanced[1] <= 15 + 1e-9
    )
    assert not bench.sequence_interval(labels, guess, sequences, seed=0, base=guess).any()


def test_against_a_missing_model_or_one_of_other_classes_names_the_setting(tmp_path):
    fer = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    with pytest.raises(UserError, match=r"^against=.*nope\.ckpt: checkpoint not found"):
        bench.against(str(tmp_path / "nope.ckpt"), fer)
    three = train_tiny_checkpoint(tmp_path / "three.ckpt", classes=["happy", "sad", "neutral"], steps=1)
    with pytest.raises(UserError, match=r"^against=.*three\.ckpt: its classes \['happy', 'sad', 'neutral'\] are not "):
        bench.against(str(three), fer)
    assert list(bench.against(str(three), ["happy", "sad", "neutral"]).class_names) == ["happy", "sad", "neutral"]


@pytest.mark.slow  # reads FER2013 and CK+48
def test_the_benchmark_prints_every_row_for_a_model(shared_data, capsys):
    bench.main([f"data.path={shared_data / 'fer2013' / 'fer2013.csv.gz'}", f"ckplus={shared_data / 'ckplus48'}",
                "faces=100", "full_path=0", "cost=false", "against=bundled"])  # fmt: skip
    out = capsys.readouterr().out
    for name in ("PrivateTest as given", "dim x0.3, noise 3", "dim x0.2 + 5, noise 4", "shrunk to 20 px"):
        assert f"{name}" in out and "   100 " in out.split(name)[1].split("\n")[0]
    ck = out.split("CK+48, 6 classes")[1].split("\n")[0]
    assert "   927 " in ck and "ang" in ck and "sur" in ck
    acc, balanced = (float(v) for v in ck.split()[1:3])
    interval = out.split("95% interval over CK+48's 309 sequences (2,000 resamples): accuracy ")[1].split("\n")[0]
    (a_lo, a_hi), (b_lo, b_hi) = (map(float, part.strip("%").split("-")) for part in interval.split("%, balanced "))
    assert a_lo < acc < a_hi and b_lo < balanced < b_hi and a_hi - a_lo > 3  # 309 sequences, not 927 faces
    paired = out.split("minus against=bundled, same resamples: ")[1].split("\n")[0]  # the model against itself
    assert paired.startswith("accuracy +0.0 [+0.0, +0.0], balanced +0.0 [+0.0, +0.0]; ang +0.0 [+0.0, +0.0]")
    plus = out.split("FER+ majority labels")[1].split("\n")[0]  # all of PrivateTest that FER+ gives a 7-class label
    assert 3000 < int(plus.split()[0]) < 3589


@pytest.mark.slow  # reads FER2013
def test_choosing_on_publictest_leaves_ck_plus_out(shared_data, tmp_path, capsys):
    bench.main([f"data.path={shared_data / 'fer2013' / 'fer2013.csv.gz'}", f"ckplus={tmp_path / 'none'}",
                f"ferplus={tmp_path / 'none.csv'}", "split=val", "faces=50", "full_path=0"])  # fmt: skip
    out = capsys.readouterr().out
    assert "PublicTest as given" in out and "shrunk to 20 px" in out
    assert "CK+48" not in out and "FER+" not in out and "classify cost" not in out
