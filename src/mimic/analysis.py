"""Analysing recorded videos and folders of photos: who showed what, and when (`python analyze.py INPUT...`,
``mimic-analyze``; `EmotionRecognizer.analyze_video` in Python).

A video goes through the live app's pipeline (`mimic.realtime.pipeline.Pipeline`: detector, tracker, classifier,
smoothing), unpaced: frames are read, detected and cropped ahead on a worker thread while the last one is classified
(`mimic.realtime.sources.read_ahead`, which classifies there too while this loop is behind: both cores busy), and
``every=N`` analyses every N-th frame. A scene cut ends every track (the tracker's `SceneCuts`), so no id follows one
person into the next shot. Per video, in ``out/<input name>/``:

- ``faces.csv``: the live log's rows (`mimic.realtime.result`), one per face per analysed frame;
- ``people.csv``: one row per track seen for at least ``min_track_s``: first and last seen, seconds on screen, the
  share of its frames each label was shown, its mean probabilities and each class's strongest moment (time and
  probability). Track ids are not identities: a person who leaves and comes back, or is hidden, gets a new id;
- ``timeline.png``: a panel per person (`mimic.analysis_pictures`);
- ``annotated.mp4`` with ``annotate=true``;
- ``summary.json``, written last: the input (path, size, modification time), the model, the frames, the cuts, the
  people, the files and the speed.

A folder of photos (or photo files) gives ``faces.csv`` (file, face, box, landmarks, probabilities, label),
``contact_sheet.png`` and ``summary.json``. An output folder whose ``summary.json`` names the same input (path, size,
modification time) is a finished input and is skipped, so an interrupted batch goes on where it stopped; any other
existing folder gets a numbered sibling (``clip-1/``): nothing is overwritten. A broken or unreadable file is named
and skipped; the others are analysed.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mimic.analysis_pictures import THUMB, contact_sheet, timeline
from mimic.errors import UserError
from mimic.io import IMAGE_SUFFIXES, write_bytes, write_json
from mimic.realtime import overlay
from mimic.realtime.pipeline import Pipeline
from mimic.realtime.result import columns
from mimic.realtime.sources import FrameSource, VideoSource, read_ahead
from mimic.realtime.stats import Stats
from mimic.realtime.window import Recorder

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
SUMMARY = "summary.json"


class AnalysisError(UserError):
    """An input that cannot be analysed (missing, unreadable, no frames): named, and skipped in a batch."""


@dataclass
class Input:
    """What one output folder holds the analysis of: a video, or photos (one folder's, or files given together)."""

    name: str
    kind: str  # "video" or "photos"
    path: Path  # the video, or the folder the photos are in
    files: list[Path] = field(default_factory=list)  # photos

    def identity(self) -> dict[str, Any]:
        """What ``summary.json`` names the input by: its absolute path, size in bytes and modification time (of the
        photos: their total size and latest time, and how many)."""
        files = [self.path] if self.kind == "video" else self.files
        stats = [f.stat() for f in files]
        out = {
            "path": str(self.path.absolute()),
            "size": sum(s.st_size for s in stats),
            "mtime": max(s.st_mtime for s in stats),
        }
        return out if self.kind == "video" else {**out, "photos": len(files)}


def collect_inputs(words: Sequence[str]) -> tuple[list[Input], list[str]]:
    """The inputs ``words`` name (video files, image files, folders, globs), and a line per word that names none.
    A folder gives each video in it and its photos as one input; photo files given directly go together by folder."""
    inputs: list[Input] = []
    photos: dict[Path, list[Path]] = {}
    problems = []
    for word in words:
        path = Path(os.path.expanduser(word))  # Path.expanduser raises on ~nobody/
        paths = [path] if path.exists() else [Path(p) for p in sorted(glob.glob(str(path)))]
        if not paths:
            problems.append(f"{word}: no such file or folder, and no file matches it")
            continue
        for p in paths:
            if p.is_dir():
                entries = sorted(e for e in p.iterdir() if e.is_file() and not e.name.startswith("."))
                videos = [e for e in entries if e.suffix.lower() in VIDEO_SUFFIXES]
                images = [e for e in entries if e.suffix.lower() in IMAGE_SUFFIXES]
                inputs += [Input(v.stem, "video", v) for v in videos]
                if images:
                    inputs.append(Input(p.absolute().name or "photos", "photos", p, images))
                if not videos and not images:
                    problems.append(f"{p}: holds no video ({' '.join(VIDEO_SUFFIXES)}) and no image")
            elif p.suffix.lower() in VIDEO_SUFFIXES:
                inputs.append(Input(p.stem, "video", p))
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                photos.setdefault(p.parent, []).append(p)
            else:
                problems.append(f"{p}: not a video ({' '.join(VIDEO_SUFFIXES)}) nor an image")
    for folder, files in photos.items():
        inputs.append(Input(folder.absolute().name or "photos", "photos", folder, sorted(set(files))))
    return inputs, problems


def output_folder(out: Path, item: Input) -> Path | None:
    """The new folder for ``item``'s results: ``out/<name>``, or the first free numbered sibling; None when one of
    them already holds a finished analysis of the same input (its summary.json names it)."""
    identity = item.identity()
    for k in range(10_000):
        folder = out / (item.name if k == 0 else f"{item.name}-{k}")
        if not folder.exists():
            folder.mkdir(parents=True)
            return folder
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            if json.loads((folder / SUMMARY).read_text()).get("input") == identity:
                return None
    raise AnalysisError(f"{out}: 10,000 folders named {item.name}-N already; choose another out=")


class EveryNth(FrameSource):
    """Every ``every``-th frame of a video (the ones between are grabbed, not decoded)."""

    def __init__(self, video: VideoSource, every: int) -> None:
        self.video, self.every = video, int(every)
        self.fps, self.description = video.fps, video.description

    def read(self) -> np.ndarray | None:
        for _ in range(self.every - 1):
            if not self.video.cap.grab():
                return None
            self.video.index += 1
        frame = self.video.read()
        self.index, self.time = self.video.index, self.video.time
        return frame

    def close(self) -> None:
        self.video.close()


@dataclass
class Track:
    """A person as the tracker followed them: per analysed frame their time, shown label, raw and smoothed
    probabilities; and their largest face as a picture."""

    id: int
    times: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    smoothed: list[np.ndarray] = field(default_factory=list)
    picture: np.ndarray | None = None
    picture_area: int = 0


@dataclass
class VideoAnalysis:
    """What `analyze_video` found: ``rows`` (faces.csv's rows as dicts, if kept), ``people`` (people.csv's), the
    tracks behind them, the scene cuts (seconds), the frames analysed, the seconds it took and the face rows."""

    class_names: list[str]
    rows: list[dict[str, Any]]
    people: list[dict[str, Any]]
    tracks: dict[int, Track]
    cuts: list[float]
    frames: int
    duration: float
    fps: float
    seconds: float
    faces: int

    def to_pandas(self):
        """The rows as a pandas DataFrame (pandas is not a dependency of mimic: ``pip install pandas``)."""
        try:
            import pandas as pd  # only this method needs it, and mimic does not depend on it
        except ImportError:
            raise UserError("to_pandas needs pandas: pip install pandas (or use .rows, a list of dicts)") from None
        return pd.DataFrame(self.rows)


def open_video(path: Path) -> VideoSource:
    """The video at ``path``, checked: an `AnalysisError` naming it when OpenCV cannot read frames from it."""
    try:
        video = VideoSource(path)
    except UserError as e:
        raise AnalysisError(str(e).replace("source: ", "", 1)) from None
    if not video.fps or int(video.cap.get(cv2.CAP_PROP_FRAME_COUNT)) <= 0:
        video.close()
        raise AnalysisError(f"{path}: OpenCV reads no frames from it (not a video, or a broken file)")
    return video


def analyze_video(
    path: str | Path | VideoSource,
    pipeline: Pipeline,
    every: int = 1,
    min_track_s: float = 1.0,
    ahead: bool = True,
    annotate: Path | None = None,
    progress: bool = True,
    stats: Stats | None = None,
    keep_rows: bool = True,
) -> VideoAnalysis:
    """Run ``pipeline`` over the video at ``path`` (or opened: `open_video`; every ``every``-th frame) and
    summarise it. ``annotate``: a new video file to write every analysed frame to, drawn on as the live window
    draws (at the analysed frames' rate). ``stats``: gets every frame's stage times (the benchmark's).
    ``keep_rows=False``: ``rows`` stays empty, only counted (faces.csv has them; an hour would fill memory)."""
    video = path if isinstance(path, VideoSource) else open_video(Path(path).expanduser())
    total = int(video.cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps, names = float(video.fps), list(pipeline.class_names)
    header, model = columns(names), pipeline.log.model if pipeline.log is not None else ""
    rows, tracks, cuts, faces = [], {}, [], 0
    start = time.perf_counter()
    bar = _progress(total // max(1, every), video.path.name, progress)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(contextlib.closing(EveryNth(video, every)))
        recorder = None
        if annotate is not None:
            recorder = stack.enter_context(contextlib.closing(Recorder(annotate, fps / every)))
        reader = read_ahead(source, pipeline.detect, ahead, pipeline.predictor.inputs, pipeline.predictor.run)
        with contextlib.closing(reader) as frames:
            for captured in frames:
                result = pipeline.step(
                    captured.frame, captured.time, captured.detections, captured.inputs, probs=captured.probs
                )
                if pipeline.tracker.cut:
                    cuts.append(round(captured.time, 3))
                faces += len(result.faces)
                rows += [dict(zip(header, r, strict=True)) for r in result.csv_rows(model)] if keep_rows else []
                for face in result.faces:
                    track = tracks.setdefault(face.id, Track(face.id))
                    track.times.append(captured.time)
                    track.labels.append(face.label)
                    track.probs.append(face.probs)
                    track.smoothed.append(face.smoothed)
                    if face.box[2] * face.box[3] > track.picture_area:
                        track.picture_area = face.box[2] * face.box[3]
                        track.picture = _picture(captured.frame, face.box)
                if recorder is not None:
                    recorder.write(overlay.draw(captured.frame, result.faces, names))
                if stats is not None:
                    stats.add(captured, result)
                bar.update(1)
                bar.set_postfix(faces=faces, refresh=False)
    bar.close()
    seconds = time.perf_counter() - start
    step = every / fps
    people = [person(t, names, step) for t in tracks.values() if len(t.times) * step >= min_track_s]
    return VideoAnalysis(names, rows, people, tracks, cuts, pipeline.frames, total / fps, fps, seconds, faces)


def _progress(total: int, name: str, enabled: bool):
    """A progress bar (frames, faces so far, time left) on a terminal; nothing elsewhere."""
    from tqdm import tqdm  # Lightning's dependency; only a run with a progress bar needs it

    return tqdm(total=total, desc=name, unit="frame", disable=None if enabled else True, leave=False)


def _picture(frame: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """A face and a margin around it, as a THUMB x THUMB picture."""
    x, y, w, h = box
    side, cx, cy = int(max(w, h) * 1.4), x + w / 2, y + h / 2
    x0, y0 = int(cx - side / 2), int(cy - side / 2)
    pad = cv2.copyMakeBorder(frame, side, side, side, side, cv2.BORDER_CONSTANT)
    crop = pad[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]
    return cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def person(track: Track, names: Sequence[str], step: float) -> dict[str, Any]:
    """One row of people.csv: the track's id, first and last seen, seconds on screen (analysed frames times the
    seconds between them), each label's share of its frames, its mean probabilities and each class's strongest
    moment."""
    probs, times = np.array(track.probs), np.array(track.times)
    out: dict[str, Any] = {
        "person": track.id,
        "first_s": round(float(times[0]), 3),
        "last_s": round(float(times[-1]), 3),
        "seconds": round(len(times) * step, 3),
        "frames": len(times),
    }
    out["label"] = max(names, key=track.labels.count)
    out |= {f"share_{c}": round(track.labels.count(c) / len(times), 4) for c in names}
    out |= {f"mean_{c}": round(float(probs[:, k].mean()), 4) for k, c in enumerate(names)}
    for k, c in enumerate(names):
        best = int(np.argmax(probs[:, k]))
        out[f"peak_{c}_s"], out[f"peak_{c}"] = round(float(times[best]), 3), round(float(probs[best, k]), 4)
    return out


def csv_bytes(rows: Iterable[dict[str, Any]], header: Sequence[str]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, list(header), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


@dataclass
class PhotoAnalysis:
    """Every face in a set of photos: ``rows`` as in its faces.csv, the faces' pictures, the files skipped."""

    class_names: list[str]
    rows: list[dict[str, Any]]
    pictures: list[np.ndarray]
    skipped: list[str]
    seconds: float


def photo_columns(names: Sequence[str]) -> list[str]:
    base = ["file", "face", "x", "y", "w", "h", "det_score", "landmarks", "label", "conf"]
    return [*base, *(f"p_{c}" for c in names)]


def analyze_photos(files: Sequence[Path], predictor: Any, detector: Any, progress: bool = True) -> PhotoAnalysis:
    """Every face of every photo in ``files`` (largest first in each), classified; unreadable files are skipped."""
    names = list(predictor.class_names)
    rows, pictures, skipped = [], [], []
    start = time.perf_counter()
    bar = _progress(len(files), files[0].parent.name if files else "photos", progress)
    for path in files:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        bar.update(1)
        if frame is None:
            skipped.append(f"{path}: not an image OpenCV can read")
            continue
        faces = sorted(detector.detect(frame), key=lambda d: (-d.area, -d.score))
        for k, (face, p) in enumerate(zip(faces, predictor.predict(frame, faces), strict=True)):
            marks = " ".join(f"{v:.1f}" for point in face.landmarks for v in point) if face.landmarks else ""
            label = names[int(np.argmax(p))]
            row = {"file": str(path), "face": k, **dict(zip("xywh", (int(v) for v in face.box), strict=True))}
            row |= {"det_score": round(float(face.score), 4), "landmarks": marks, "label": label}
            row |= {"conf": round(float(np.max(p)), 4), **{f"p_{c}": round(float(q), 4) for c, q in zip(names, p)}}
            rows.append(row)
            pictures.append(_picture(frame, face.box))
        bar.set_postfix(faces=len(rows), refresh=False)
    bar.close()
    return PhotoAnalysis(names, rows, pictures, skipped, time.perf_counter() - start)


def write_video(item: Input, folder: Path, result: VideoAnalysis, model: str, extra: dict) -> dict[str, Any]:
    """people.csv, timeline.png and, last, summary.json (faces.csv is the pipeline's log, written as it went)."""
    names = result.class_names
    header = ["person", "first_s", "last_s", "seconds", "frames", "label"]
    header += [f"{k}_{c}" for k in ("share", "mean") for c in names] + [
        key for c in names for key in (f"peak_{c}_s", f"peak_{c}")
    ]
    write_bytes(folder / "people.csv", csv_bytes(result.people, header))
    shown = [result.tracks[p["person"]] for p in result.people]
    png = cv2.imencode(".png", timeline(shown, names, result.duration, result.cuts))[1]
    write_bytes(folder / "timeline.png", png.tobytes())
    speed = result.frames / max(result.seconds, 1e-9)
    summary = {
        "input": item.identity(),
        "kind": "video",
        "model": model,
        "frames": result.frames,
        "fps": result.fps,
        "duration_s": round(result.duration, 3),
        "faces": result.faces,
        "cuts_s": result.cuts,
        "people": result.people,
        "seconds": round(result.seconds, 3),
        "frames_per_s": round(speed, 1),
        **extra,
    }
    write_json(folder / SUMMARY, summary)
    return summary


def write_photos(item: Input, folder: Path, result: PhotoAnalysis, model: str) -> dict[str, Any]:
    """faces.csv, contact_sheet.png and, last, summary.json."""
    write_bytes(folder / "faces.csv", csv_bytes(result.rows, photo_columns(result.class_names)))
    labels = [r["label"] for r in result.rows]
    sheet = contact_sheet(result.pictures, labels, [r["conf"] for r in result.rows])
    write_bytes(folder / "contact_sheet.png", cv2.imencode(".png", sheet)[1].tobytes())
    summary = {
        "input": item.identity(),
        "kind": "photos",
        "model": model,
        "photos": len(item.files),
        "faces": len(result.rows),
        "labels": {c: labels.count(c) for c in result.class_names},
        "skipped": result.skipped,
        "seconds": round(result.seconds, 3),
        "files": ["faces.csv", "contact_sheet.png", SUMMARY],
    }
    write_json(folder / SUMMARY, summary)
    return summary
