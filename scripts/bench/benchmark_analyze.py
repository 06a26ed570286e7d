"""Benchmark `python analyze.py` on a video: frames/s, how many times real time, and where the time goes.

    python scripts/bench/benchmark_analyze.py [video=<clip.mp4>] [layout=two-three|crowd] [ckpt=<file.ckpt|.onnx>]
                                              [every=1] [repeats=2] [faces_dir=../shared/data/faces]
                                              [any conf/realtime.yaml override]

No ``video``: a make_test_video.py clip (640x360, 30 frames/s, 300 frames) of the portraits in ``faces_dir`` or of
synthetic faces, written to a temporary folder: ``two-three`` (two faces, then three) or ``crowd`` (a scene cut every
3 s to another crowd of 5-8 small, dim faces). No ``ckpt``: the bundled model; an
int8 model is timed by naming its file (``scripts/export.py ckpt=... int8=true``). Each repeat analyses the whole
video exactly as analyze.py does (`mimic.analysis.analyze_video`: read, detect and crop ahead on a thread, classify,
track, smooth, write faces.csv), with nothing drawn or written but the log; the best repeat is reported, the machine
being shared. Stages as `benchmark_realtime.py` names them: decode, detect and crop on the reader thread; classify
on the main one, or on the reader when the main one is behind (`mimic.realtime.sources.read_ahead`; it prints how
many frames); smooth and log on the main one, so a frame takes less than their sum. On a made clip it also prints the
share of the clip's faces found (its pasted boxes). Run it with nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module

from mimic.analysis import analyze_video, open_video
from mimic.args import Key, parse
from mimic.cli import user_errors
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.models.bundled import resolve_ckpt
from mimic.realtime.pipeline import Pipeline, predictor_from_config
from mimic.realtime.stats import STAGES, Stats

KEYS = {
    "video": Key(Path, None, "the video to analyse (default: make_test_video.py's two-three clip)"),
    "layout": Key(str, "two-three", "the made clip's layout: two-three or crowd"),
    "faces_dir": Key(Path, None, "portraits for the default clip (default: synthetic faces)"),
    "every": Key(int, 1, "analyse every N-th frame"),
    "repeats": Key(int, 2, "analyses of the whole video; the best is reported"),
}


def script(name: str):
    """The script ``name`` beside this one (the video maker, the face benchmark), as a module."""
    import importlib.util  # scripts beside this one, not modules of the package

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_clip(folder: Path, faces_dir: Path | None, layout: str) -> tuple[Path, list[list[tuple]]]:
    """make_test_video.py's clip of ``layout`` in ``folder``, and its faces' boxes per frame."""
    maker = script("make_test_video")
    patches = (maker.photo_patches(faces_dir) if faces_dir else []) or maker.synthetic_patches()
    if layout not in ("two-three", "crowd"):
        raise UserError(f"layout={layout}: two-three or crowd")
    path = folder / f"{layout}.avi"
    truth = maker.make_video(
        path, patches, frames=300, size=(640, 360), fps=30.0, layout=layout, noise=3, lighting=True
    )
    return path, truth


def recall(rows: list[dict], truth: list[list[tuple]], every: int) -> float:
    """The share of the clip's faces, in the analysed frames, that a logged face's box hits (`benchmark_faces.hit`)."""
    hit = script("benchmark_faces").hit
    boxes: dict[int, list[tuple]] = {}
    for row in rows:
        boxes.setdefault(int(row["frame"]), []).append(tuple(int(row[k]) for k in "xywh"))
    faces = [(i, face) for i in range(0, len(truth), every) for face in truth[i]]
    found = sum(any(hit(box, face) for box in boxes.get(i // every, [])) for i, face in faces)
    return found / max(1, len(faces))


def measure(cfg, video: Path, every: int, log_dir: Path) -> tuple[float, Stats, object]:
    """One analysis of ``video``: (seconds, its stage times, the analysis)."""
    stats = Stats()
    predictor = predictor_from_config(cfg)
    pipeline = Pipeline.from_config(cfg, predictor, load_detector(cfg.detector), log_dir / "faces.csv", popups=False)
    with contextlib.closing(pipeline):
        result = analyze_video(open_video(video), pipeline, every, progress=False, stats=stats)
    (log_dir / "faces.csv").unlink()
    return result.seconds, stats, result


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__, extra="", extra_help="any src/mimic/conf/realtime.yaml override")
        overrides = [*args.extra, "reactions.enabled=false", "display=false"]
        with initialize_config_module("mimic.conf", version_base="1.3"):
            cfg = compose("realtime", overrides=overrides)
        with tempfile.TemporaryDirectory(prefix="mimic-bench-analyze-") as tmp:
            video, truth = (args.video, None) if args.video else default_clip(Path(tmp), args.faces_dir, args.layout)
            runs = [measure(cfg, video, args.every, Path(tmp)) for _ in range(max(1, args.repeats))]
    seconds, stats, result = min(runs, key=lambda r: r[0])
    speed = result.frames / seconds
    print(f"video: {video} ({result.frames * args.every} frames, {result.fps:.0f} frames/s, every={args.every})")
    print(f"model: {resolve_ckpt(cfg.get('ckpt')).name}, detector: {cfg.detector._target_.rsplit('.', 1)[-1]}")
    print(
        f"analysed {result.frames} frames in {seconds:.2f} s: {speed:.1f} frames/s, "
        f"{speed * args.every / result.fps:.2f}x real time; {len(result.rows) / max(1, result.frames):.2f} faces "
        f"a frame; repeats: {', '.join(f'{r[0]:.2f} s' for r in runs)}"
    )
    print(
        f"classified on the reader thread while the loop was behind: {stats.classified_ahead} of {stats.frames} frames"
    )
    if truth is not None:
        print(f"faces found: {100 * recall(result.rows, truth, args.every):.1f}% of the clip's (its boxes)")
    print("stage      mean ms   p95 ms   max ms   (decode, detect, crop: reader thread; classify: either thread)")
    for stage in STAGES:
        values = np.array(stats.stages[stage]) * 1000
        if len(values):
            print(f"{stage:<9} {values.mean():8.2f} {np.percentile(values, 95):8.2f} {values.max():8.2f}")


if __name__ == "__main__":
    main()
