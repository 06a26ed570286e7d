"""Build a fine-tuning dataset from a webcam: face crops saved into class folders.

    python scripts/capture_dataset.py label=happy [every=2] [count=50] [camera=0 | source=video.mp4]
                                      [out=data/webcam] [countdown=3] [detector=yunet] [preview=false]
    python scripts/capture_dataset.py auto_label=true [ckpt=outputs/.../best.ckpt] [confidence=0.8] ...

Every ``every`` seconds (of video time for a file) the largest face is cut out with the realtime app's detector and
crop and saved as ``<out>/<index>_<label>/NNNN.png``, numbering on from the highest number there at that moment, so an
existing photo is never overwritten. The label's folder is found by class name, or made with the next free index. A
live preview shows the box, a countdown before the first shot and the progress; q or Esc stops. Writes are atomic (a
temporary file renamed into place), so Ctrl-C never leaves half an image. ``auto_label=true`` captures without a
label: each crop goes to the folder of the model's prediction when its probability reaches ``confidence``, else to
``<out>/unsorted/`` (named with the guess) for you to review and move. ``--help`` lists the keys.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from mimic.args import Key, boolean, parse
from mimic.cli import user_errors
from mimic.data.capture import CROP_SIZE, class_folder, save_crop
from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import largest_face
from mimic.labels import canonical
from mimic.models.bundled import resolve_ckpt
from mimic.preprocessing import PreprocessSpec, crop_face
from mimic.realtime.sources import CameraSource, FrameSource, open_source, quiet_opencv

AUTO_CAMERAS = range(4)
WINDOW = "mimic capture (q: stop)"


def check_out(root: Path) -> None:
    """A clear error when ``root`` or a folder above it is a file: the class folders go in a folder there."""
    for p in (root, *root.parents):
        if p.is_dir():
            return
        if p.exists():
            raise UserError(
                f"out={root}: {p} is a file, not a folder. Name the folder that holds (or will hold) the class "
                f"folders, e.g. out=data/webcam."
            )


def open_frames(camera: int | None, source: str | None) -> FrameSource:
    """A video file / image folder, the given camera, or the first camera of 0-3 that opens."""
    if source is not None:
        return open_source(source)
    if camera is not None:
        try:
            return CameraSource(camera, probe=len(AUTO_CAMERAS))
        except UserError as e:
            raise UserError(f"{e} Here: camera=<index>, or source=<video file> to capture from a file.") from None
    for index in AUTO_CAMERAS:
        try:
            return CameraSource(index, probe=0)
        except UserError:
            continue
    raise UserError(
        f"no camera could be opened (indices tried: {', '.join(map(str, AUTO_CAMERAS))}). Check that one is "
        f"connected and that this program may use it, or capture from a file with source=video.mp4."
    )


class Saver:
    """Writes crops into their folders with running numbers; with a ``predictor`` (``auto_label=true``) its guess
    decides the folder per crop."""

    def __init__(self, root: Path, label: str | None, predictor=None, confidence: float = 0.8) -> None:
        self.root, self.label, self.predictor, self.confidence = root, label, predictor, confidence
        self.counts: dict[str, int] = {}

    def save(self, crop: np.ndarray) -> Path:
        suffix = ""
        if self.predictor is None:
            folder = class_folder(self.root, self.label)
        else:
            probs = self.predictor.predict_crops([crop])[0]
            best = int(np.argmax(probs))
            guess = self.predictor.class_names[best]
            if probs[best] >= self.confidence:
                folder = class_folder(self.root, guess)
            else:
                folder, suffix = self.root / "unsorted", f"_{guess}-{int(100 * probs[best]):02d}"
        path = save_crop(folder, crop, suffix)
        self.counts[folder.name] = self.counts.get(folder.name, 0) + 1
        return path


def _display_available() -> bool:
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _draw(frame: np.ndarray, face, status: str, countdown: float | None) -> np.ndarray:
    view = frame.copy()
    if face is not None:
        x, y, w, h = face.box
        cv2.rectangle(view, (x, y), (x + w, y + h), (0, 200, 0), 2)
    cv2.putText(view, status, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(view, status, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    if countdown is not None:
        text = str(int(np.ceil(countdown)))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 4, 8)
        org = ((view.shape[1] - tw) // 2, (view.shape[0] + th) // 2)
        cv2.putText(view, text, org, cv2.FONT_HERSHEY_SIMPLEX, 4, (0, 0, 0), 14, cv2.LINE_AA)
        cv2.putText(view, text, org, cv2.FONT_HERSHEY_SIMPLEX, 4, (0, 220, 255), 8, cv2.LINE_AA)
    return view


def capture(args: SimpleNamespace) -> int:
    """Run the capture loop; returns the number of crops saved."""
    root = Path(args.out).expanduser()
    check_out(root)
    predictor = None
    spec = PreprocessSpec(framing="eyes")  # as the model configs frame faces for training
    if args.auto_label:
        from mimic.models.predictor import Predictor

        predictor = Predictor(resolve_ckpt(args.ckpt))
        spec = predictor.spec
        print(
            f"auto-labelling with {args.ckpt or 'the bundled model'}: classes {predictor.class_names}, confidence "
            f">= {args.confidence:.2f}, else {root / 'unsorted'}"
        )
    else:
        print(f"capturing '{canonical(args.label)}' into {class_folder(root, args.label)}")
    if args.margin is not None:
        spec = replace(spec, framing="box", crop_margin=args.margin)
    detector = load_detector(args.detector)
    saver = Saver(root, args.label, predictor, args.confidence)
    preview = args.preview and _display_available()
    if args.preview and not preview:
        print("no display found: running without the preview window (preview=false silences this)")
    saved, start, next_at, last_print = 0, None, None, 0.0
    with open_frames(args.camera, args.source) as frames:
        print(f"reading {frames.description}; {args.count} crops, one every {args.every:g} s")
        try:
            while saved < args.count:
                frame = frames.read()
                if frame is None:
                    print(f"{frames.description} ended after {saved} of {args.count} crops")
                    break
                t = frames.time
                if start is None:
                    start = t
                    next_at = t + args.countdown
                face = largest_face(detector.detect(frame))
                if t >= next_at and face is not None:
                    crop = crop_face(frame, face, spec, size=max(spec.size, CROP_SIZE))
                    path = saver.save(np.ascontiguousarray(crop))
                    saved += 1
                    next_at = t + args.every
                    print(f"[{saved}/{args.count}] {path}", flush=True)
                elif t >= next_at and time.monotonic() - last_print > 2:
                    last_print = time.monotonic()
                    print("no face in view: waiting for one", flush=True)
                if preview:
                    left = next_at - t
                    countdown = left if t < start + args.countdown else None
                    status = f"{saved}/{args.count} saved" + ("" if face is not None else "  (no face)")
                    if countdown is None and left > 0:
                        status += f"  next in {left:.1f}s"
                    cv2.imshow(WINDOW, _draw(frame, face, status, countdown))
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        print("stopped by the user")
                        break
        finally:
            if preview:
                with quiet_opencv():
                    cv2.destroyAllWindows()
    where = ", ".join(f"{n}: {c}" for n, c in sorted(saver.counts.items())) or "nothing"
    print(f"saved {saved} face crops under {root} ({where})")
    return saved


KEYS = {
    "label": Key(str, None, "the class of every crop (happy, sad, ...)"),
    "auto_label": Key(boolean, False, "sort the crops by a model's predictions instead of a label"),
    "ckpt": Key(str, None, "auto_label's model (default: the bundled pretrained model)"),
    "confidence": Key(float, 0.8, "auto_label: the lowest probability that sorts a crop into its class"),
    "camera": Key(int, None, "camera index (default: the first of 0-3 that opens)"),
    "source": Key(str, None, "a video file or a folder of images instead of a camera"),
    "out": Key(str, "data/webcam", "the dataset root holding the class folders"),
    "every": Key(float, 2.0, "seconds between crops"),
    "count": Key(int, 50, "how many crops to save"),
    "countdown": Key(float, 3.0, "seconds before the first crop"),
    "detector": Key(str, "yunet", "face detector: yunet or haar"),
    "margin": Key(
        float,
        None,
        "cut a square around the face box grown by this margin instead of the eye framing (default: the "
        "checkpoint's framing with auto_label, else the eye framing)",
    ),
    "preview": Key(boolean, True, "show the preview window"),
}


def parse_args(argv: list[str] | None = None) -> SimpleNamespace:
    """The command line's settings, checked (`UserError` on a wrong one)."""
    args = parse(argv, KEYS, __doc__)
    if (args.label is None) == (not args.auto_label):
        raise UserError(
            "give label=<class> (happy, sad, ...) for the photos, or auto_label=true to sort them by a model's "
            "predictions, not both"
            if args.auto_label
            else "say what the photos show: label=<class> (happy, sad, ...), or auto_label=true to sort them by a "
            "model's predictions"
        )
    if args.ckpt is not None and not args.auto_label:
        raise UserError(f"ckpt={args.ckpt} is the model of auto_label=true; with label= no model is used")
    if args.camera is not None and args.source is not None:
        raise UserError(f"camera={args.camera} and source={args.source}: give one")
    if args.count < 1 or args.every < 0 or args.countdown < 0:
        raise UserError("count must be at least 1, every and countdown at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse_args(argv)
        try:
            capture(args)
        except KeyboardInterrupt:
            print("\ninterrupted: every crop saved so far is complete")
            sys.exit(130)


if __name__ == "__main__":
    main()
