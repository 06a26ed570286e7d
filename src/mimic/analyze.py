"""The ``analyze`` command: `python analyze.py INPUT... [out=analysis] [every=1] [ckpt=...] [annotate=true]`
(installed: ``mimic-analyze``). Every input (a video, a photo, a folder, a glob) is analysed into its own folder under
``out`` (`mimic.analysis` says what each holds), one after another; finished inputs are skipped, broken ones named
and skipped, and each ends with a line of what it found and how fast. Settings: the ``analyze`` block of
src/mimic/conf/realtime.yaml, with the live app's detector, tracker, smoothing and predictor settings above it."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from mimic.analysis import (
    AnalysisError,
    Input,
    analyze_photos,
    analyze_video,
    collect_inputs,
    open_video,
    output_folder,
    write_photos,
    write_video,
)
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import for_photos
from mimic.models.bundled import resolve_ckpt
from mimic.realtime.pipeline import Pipeline, predictor_from_config

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Analyse every input the command line names (plain words, `mimic.cli.ANALYZE_INPUTS`, and ``inputs=``);
    returns {input path: its summary, or why it was skipped}. A user error when some input could not be analysed,
    after all the others were."""
    from mimic.cli import ANALYZE_INPUTS  # the plain words of the command line, set before Hydra composed the config

    words = [*ANALYZE_INPUTS, *(str(w) for w in cfg.analyze.inputs or [])]
    if not words:
        raise UserError(
            "analyze: name what to analyse: video files, photos, folders or globs, e.g. "
            "`python analyze.py interview.mp4 photos/` (or inputs=[...])"
        )
    with open_dict(cfg):  # analysis shows no window and plays no reaction
        cfg.display, cfg.reactions.enabled = False, False
    inputs, problems = collect_inputs(words)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    failed = list(problems)
    predictor = predictor_from_config(cfg)
    model, out = resolve_ckpt(cfg.get("ckpt")).name, Path(str(cfg.analyze.out)).expanduser()
    results: dict[str, Any] = {}
    for item in inputs:
        folder = output_folder(out, item)
        if folder is None:
            print(f"{item.path}: already analysed in {out}/ (its summary.json names it): skipped")
            results[str(item.path)] = "finished before"
            continue
        try:
            summary = _video(cfg, item, folder, predictor, model) if item.kind == "video" else None
            if summary is None:
                summary = _photos(cfg, item, folder, predictor, model)
        except AnalysisError as e:
            print(f"error: {e}", file=sys.stderr)
            failed.append(str(e))
            with contextlib.suppress(OSError):  # nothing of it was written but perhaps a faces.csv: keep that
                folder.rmdir()
            results[str(item.path)] = str(e)
            continue
        results[str(item.path)] = summary
        print(_line(item, folder, summary))
    if failed:
        total = len(inputs) + len(problems)
        raise UserError(f"{len(failed)} of {total} inputs were not analysed (named above); the others were")
    return results


def _video(cfg: DictConfig, item: Input, folder: Path, predictor: Any, model: str) -> dict[str, Any]:
    video = open_video(item.path)  # a broken file fails here, before faces.csv is opened
    try:
        detector = load_detector(cfg.detector)  # its own, for this video's frames only
        pipeline = Pipeline.from_config(cfg, predictor, detector, folder / "faces.csv", model, popups=False)
    except BaseException:
        video.close()
        raise
    files = ["faces.csv", "people.csv", "timeline.png", "summary.json"]
    settings = cfg.analyze
    annotate = folder / "annotated.mp4" if settings.annotate else None
    if annotate is not None:
        files.insert(3, "annotated.mp4")
    every, min_track_s = int(settings.every), float(settings.min_track_s)
    with contextlib.closing(pipeline):
        result = analyze_video(video, pipeline, every, min_track_s, bool(cfg.pipeline), annotate, keep_rows=False)
    extra = {"every": every, "min_track_s": min_track_s, "files": files}
    return write_video(item, folder, result, model, extra)


def _photos(cfg: DictConfig, item: Input, folder: Path, predictor: Any, model: str) -> dict[str, Any]:
    detector = for_photos(load_detector(cfg.detector))  # unrelated photos: every one scanned in full
    result = analyze_photos(item.files, predictor, detector)
    for skipped in result.skipped:
        print(f"error: {skipped} (skipped)", file=sys.stderr)
    return write_photos(item, folder, result, model)


def _line(item: Input, folder: Path, summary: dict[str, Any]) -> str:
    """The one line printed when an input is done."""
    if summary["kind"] == "photos":
        found = f"{summary['photos']} photos, {summary['faces']} faces"
        return f"{item.path}: {found} in {summary['seconds']:.1f} s -> {folder}"
    speed = summary["frames_per_s"]
    realtime = speed * summary["every"] / summary["fps"] if summary["fps"] else 0.0
    return (
        f"{item.path}: {summary['frames']} frames in {summary['seconds']:.1f} s ({speed:.0f} frames/s, "
        f"{realtime:.1f}x real time), {summary['faces']} faces, {len(summary['people'])} people, "
        f"{len(summary['cuts_s'])} cut{'' if len(summary['cuts_s']) == 1 else 's'} -> {folder}"
    )
