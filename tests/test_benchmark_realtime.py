"""The realtime benchmark's measurements and its video: the simulated change of expression (splice and delay through
the real `LabelSmoother`), the per-face probability streams a run records, and scripts/bench/make_test_video.py's
lighting changes and two-three layout."""

from __future__ import annotations

import itertools
import math
import re
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import load_script

from mimic.detectors import load_detector
from mimic.realtime.result import Face, FrameResult
from mimic.realtime.smoothing import LabelSmoother
from mimic.realtime.sources import Captured
from mimic.realtime.stats import Stats
from mimic.realtime.tracker import iou

bench, vm = load_script("bench/benchmark_realtime"), load_script("bench/make_test_video")


def _decode(path: Path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


# --- the simulated change of expression -------------------------------------------------------------------------


def test_swap_after_swaps_two_columns_from_the_switch_on():
    probs = np.random.default_rng(0).dirichlet(np.ones(7), 20)
    out = bench.swap_after(probs, 8, 3, 5)
    np.testing.assert_array_equal(out[:8], probs[:8])
    np.testing.assert_array_equal(out[8:, 3], probs[8:, 5])
    np.testing.assert_array_equal(out[8:, 5], probs[8:, 3])
    np.testing.assert_array_equal(np.delete(out, [3, 5], 1), np.delete(probs, [3, 5], 1))
    assert out is not probs and not np.shares_memory(out, probs)


def test_constant_face_changes_after_the_frames_the_ema_and_margin_give():
    """A face reading happy 0.6, neutral 0.25, the rest 0.03 on every frame: after the switch the new class b holds
    0.6 and happy holds b's old value p. With the half-life that gives each 30 frames/s frame the EMA weight alpha,
    the averaged lead of b after n frames is (0.6 - p)(1 - 2(1 - alpha)^n); the label turns when it reaches the
    margin, on the switch frame + n - 1."""
    alpha, margin, fps = 0.2, 0.15, 30.0
    half_life = math.log(0.5) / math.log(1 - alpha) / fps
    row = np.full(7, 0.03)
    row[3], row[6] = 0.6, 0.25
    probs, times = np.tile(row, (100, 1)), np.arange(100) / fps
    changes = bench.expression_changes(times, probs, partial(LabelSmoother, half_life, margin), points=3)
    assert sorted({c.switch for c in changes}) == [30, 42, 55]  # linspace(30, 100 - 45, 3), rounded
    assert {(c.a, c.b) for c in changes} == {(3, b) for b in (0, 1, 2, 4, 5, 6)} and len(changes) == 18
    for c in changes:
        lead = row[3] - row[c.b]
        n = next(n for n in itertools.count(1) if lead * (1 - 2 * (1 - alpha) ** n) >= margin)
        assert c.frames == n - 1 and c.seconds == pytest.approx((n - 1) / fps)
    # the same in numbers: 0.35 ahead (b = neutral) needs 6 frames, 0.57 ahead needs 5
    assert {c.b: c.frames for c in changes} == {0: 4, 1: 4, 2: 4, 4: 4, 5: 4, 6: 5}
    summary = bench.change_summary(changes)
    assert summary["cases"] == 18 and summary["missed"] == 0 and summary["median_frames"] == 4
    assert summary["max_frames"] == 5 and summary["max_s"] == pytest.approx(5 / fps)
    assert summary["within_half_s"] == 1.0
    # without smoothing the raw top class turns on the switch frame; a margin beyond reach never turns it
    raw = bench.expression_changes(times, probs, partial(LabelSmoother, enabled=False), points=3)
    assert {c.frames for c in raw} == {0}
    stuck = bench.expression_changes(times, probs, partial(LabelSmoother, 0.3, 0.7), points=3)
    assert {c.frames for c in stuck} == {None} and bench.change_summary(stuck)["missed"] == 18
    assert bench.change_summary(stuck)["max_frames"] == math.inf


def _noisy_stream(n: int = 150, seed: int = 1) -> np.ndarray:
    """Softmax of noisy logits: a face mostly reading class 3, sometimes 6 (a real face's noise, roughly)."""
    logits = np.random.default_rng(seed).normal(0, 0.8, (n, 7))
    logits[:, 3] += 2.0
    logits[:, 6] += 1.2
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_noisy_face_changes_are_what_a_fresh_smoother_shows_on_the_spliced_stream():
    probs = _noisy_stream()
    times = np.cumsum(np.where(np.arange(150) % 10 == 9, 2, 1)) / 30.0  # a face missed now and then: media time jumps
    make = partial(LabelSmoother, 0.1, 0.1)
    changes = bench.expression_changes(times, probs, make, points=5)
    switches = sorted({c.switch for c in changes})
    assert switches == [int(round(v)) for v in np.linspace(30, 150 - 45, 5)]
    for s in switches:
        cases = [c for c in changes if c.switch == s]
        a = int(np.argmax(probs[s : s + 45].mean(0)))
        before = make()
        for t, p in zip(times[:s], probs[:s], strict=True):
            before.update(p, t)
        assert {c.a for c in cases} == {a}
        assert sorted(c.b for c in cases) == [b for b in range(7) if b not in (a, before.label)]
        for c in cases:  # the same frames, fed one by one through a fresh smoother
            sm = make()
            spliced = bench.swap_after(probs, s, a, c.b)[: s + 45]
            labels = [sm.update(p, t)[0] for t, p in zip(times, spliced, strict=False)]
            shown = next((j for j in range(s, s + 45) if labels[j] == c.b), None)
            assert c.frames == (None if shown is None else shown - s)
            if shown is not None:
                assert c.seconds == pytest.approx(times[shown] - times[s])
    # the raw argmax turns where the recording first reads a again; smoothing takes longer on the whole
    raw = bench.expression_changes(times, probs, partial(LabelSmoother, enabled=False), points=5)
    top = probs.argmax(1)
    for c in raw:
        assert c.frames == next(j for j in range(c.switch, len(probs)) if top[j] == c.a) - c.switch
    smoothed, unsmoothed = bench.change_summary(changes), bench.change_summary(raw)
    assert smoothed["missed"] == 0 and smoothed["median_frames"] > unsmoothed["median_frames"]


def test_a_short_stream_gives_no_changes():
    probs = _noisy_stream(74)
    assert bench.expression_changes(np.arange(74) / 30, probs, LabelSmoother) == []
    assert bench.change_summary([])["cases"] == 0


def test_switches_counts_the_shown_label_changes_of_a_replayed_stream():
    probs = _noisy_stream()
    times = np.arange(len(probs)) / 30
    raw = bench.switches(times, probs, LabelSmoother(enabled=False))
    assert raw == int(np.count_nonzero(np.diff(probs.argmax(1)))) > 10
    assert bench.switches(times, probs, LabelSmoother(0.1, 0.1)) < raw
    assert bench.switches([], [], LabelSmoother()) == 0


def test_stats_record_each_face_stream_only_when_asked():
    captured = Captured(np.zeros((4, 4, 3), np.uint8), 0.0, [], 0.0, 0.0)

    def result(index: int, ids: list[int]) -> FrameResult:
        faces = []
        for i in ids:
            p = np.full(7, 0.1)
            p[i % 7] = 0.4
            faces.append(Face(i, (0, 0, 9, 9), 0.9, None, p, "x", 0.4, p, "x", 0.4))
        return FrameResult(index, index / 30, "", 0.0, faces)

    kept, live = Stats(record=True), Stats()
    for k, ids in enumerate([[0], [0, 1], [1], [1, 2]]):
        kept.add(captured, result(k, ids))
        live.add(captured, result(k, ids))
    assert live.streams == {}
    assert {i: times for i, (times, _) in kept.streams.items()} == {
        0: [0, 1 / 30],
        1: [1 / 30, 2 / 30, 3 / 30],
        2: [3 / 30],
    }
    assert [int(np.argmax(p)) for p in kept.streams[1][1]] == [1, 1, 1]


# --- the benchmark video -----------------------------------------------------------------------------------------


def test_light_schedule_is_seeded_and_has_slow_drifts_and_a_lamp():
    light = vm.light_schedule(300, seed=0)
    np.testing.assert_array_equal(light, vm.light_schedule(300, seed=0))
    assert not np.allclose(light, vm.light_schedule(300, seed=1))
    gain, offset = light[:, 0], light[:, 1]
    steps = np.abs(np.diff(gain)) + np.abs(np.diff(offset)) / 100
    jumps = np.flatnonzero(steps > 0.1) + 1  # the lamp on and off
    assert len(jumps) == 2 and 60 <= jumps[0] < 90 and 210 <= jumps[1] < 240
    assert steps[steps <= 0.1].max() < 0.01  # everything else drifts slowly
    assert 0.7 < gain.min() < gain.max() < 1.35 and -25 < offset.min() < offset.max() < 30
    assert gain[jumps[0]] / gain[jumps[0] - 1] > 1.2 and offset[jumps[0]] - offset[jumps[0] - 1] > 15


def test_lighting_changes_frame_brightness_as_scheduled_and_repeats(tmp_path):
    patches, frames, size = vm.synthetic_patches(2), 60, (320, 180)
    vm.make_video(tmp_path / "plain.avi", patches, frames, size, layout="one-two", seed=3)
    for name in ("lit.avi", "again.avi"):
        vm.make_video(tmp_path / name, patches, frames, size, layout="one-two", seed=3, lighting=True)
    plain, lit, again = (_decode(tmp_path / n) for n in ("plain.avi", "lit.avi", "again.avi"))
    assert len(plain) == len(lit) == frames
    light = vm.light_schedule(frames, seed=3)
    for (gain, offset), p, q, r in zip(light, plain, lit, again, strict=True):
        expected = np.clip(p.astype(np.float32) * gain + offset, 0, 255)
        assert abs(q.mean() - expected.mean()) < 2.0
        np.testing.assert_array_equal(q, r)
    means = np.array([f.mean() for f in lit])
    on, off = np.flatnonzero(np.abs(np.diff(light[:, 0])) > 0.1) + 1  # the lamp's switches in the schedule
    assert list(np.flatnonzero(np.abs(np.diff(means)) > 20) + 1) == [on, off]  # the only jumps in the video
    assert means[on] > means[on - 1] + 20 and means[off] < means[off - 1] - 20


def test_the_script_lights_by_default_and_not_with_lighting_false(tmp_path, capsys):
    for flags in ([], ["lighting=false"]):
        out = tmp_path / f"clip{len(flags)}.avi"
        vm.main([f"out={out}", "frames=30", "size=160x90", *flags])
    assert "lighting changes (seed 0)" in capsys.readouterr().out
    lit, plain = _decode(tmp_path / "clip0.avi"), _decode(tmp_path / "clip1.avi")
    vm.make_video(tmp_path / "ref.avi", vm.synthetic_patches(), 30, (160, 90))
    np.testing.assert_array_equal(plain[10], _decode(tmp_path / "ref.avi")[10])
    assert max(abs(a.mean() - b.mean()) for a, b in zip(lit, plain, strict=True)) > 10


@pytest.fixture(scope="module")
def patches(request) -> list[np.ndarray]:
    """The two real portraits, or synthetic faces where the real data is absent."""
    try:
        root = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return vm.synthetic_patches()
    return vm.photo_patches(root / "faces", vm.PORTRAITS)


def test_two_three_shows_two_faces_then_three_that_yunet_finds(tmp_path, patches):
    path = tmp_path / "two_three.mp4"
    truth = vm.make_video(path, patches, frames=20, layout="two-three", noise=4, lighting=True)
    assert [len(b) for b in truth] == [2] * 10 + [3] * 10
    detector, frames = load_detector("yunet"), _decode(path)
    for i in (0, 9, 10, 19):
        found = detector.detect(frames[i])
        assert len(found) == len(truth[i]), f"frame {i}: {len(found)} faces found"
        assert all(any(iou(d.box, t) >= 0.3 for d in found) for t in truth[i]), f"frame {i}"
    xs = [x for x, *_ in truth[15]]
    assert xs == sorted(xs) and xs[1] - xs[0] > truth[15][0][2]  # left to right, apart


@pytest.mark.slow  # renders and reads back a 200-frame crowd clip
def test_the_crowd_layout_cuts_every_few_seconds_to_another_small_dim_crowd(tmp_path, patches):
    from mimic.realtime.tracker import SceneCuts  # the live tracker's cut detector, on the clip it is meant for

    path = tmp_path / "crowd.avi"
    truth = vm.make_video(path, patches, frames=200, fps=30.0, layout="crowd", noise=3)
    shot = int(vm.CROWD_SHOT_S * 30)
    assert all(3 <= len(boxes) <= 8 and all(22 <= b[2] <= 40 for b in boxes) for boxes in truth)
    assert len(truth[shot]) != len(truth[0]) or truth[shot] != truth[0]  # another crowd after the cut
    people = [max(len(b) for b in truth[i : i + shot]) for i in range(0, 200, shot)]  # each shot's crowd
    assert all(5 <= n <= 8 for n in people)
    away = [len(b) < people[i // shot] for i, b in enumerate(truth)]  # someone looks away (no face in the boxes)
    assert 10 <= sum(away) <= 150 and not all(away[:shot])  # for a while, then back
    video, cuts, frames = cv2.VideoCapture(str(path)), SceneCuts(), []
    while (frame := video.read()[1]) is not None:
        frames.append(frame)
    assert [i for i, f in enumerate(frames) if cuts.update(f)] == [shot, 2 * shot]
    assert np.mean([f.mean() for f in frames]) < 60  # a dim room


def test_make_video_refuses_an_unknown_layout(tmp_path):
    with pytest.raises(ValueError, match="layout must be one of"):
        vm.make_video(tmp_path / "x.avi", vm.synthetic_patches(1), frames=2, layout="three")


@pytest.mark.slow  # the whole benchmark on a video
def test_the_benchmark_prints_its_figures_on_a_video(tmp_path, patches, capsys):
    """The whole script on a short two-face clip with the bundled model: stages, frames/s, flicker, and the
    simulated changes of expression at the video's frame rate and at half of it."""
    path = tmp_path / "clip.mp4"
    vm.make_video(path, patches, frames=160, layout="two-three", noise=4, lighting=True)  # 80 frames of 2 faces
    bench.main([f"source={path}", "startup=false"])
    out = capsys.readouterr().out
    assert re.search(r"frames/s: [\d.]+ overall", out)
    assert re.search(r"per face-minute \([\d.]+ face-seconds in [1-9]\d* tracks\): on [\d.]+, off [\d.]+", out)
    assert re.search(r"smoothing on: shown after median [\d.]+ frames .* \d+ changes, \d+% of them", out)
    assert re.search(r"every other frame \(15 frames/s\): shown after median [\d.]+ s", out)
