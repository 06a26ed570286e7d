"""How YuNet reads the same photo at growing sizes: where faces start to be misread, which sets ``detector.max_side``.

    python scripts/bench/benchmark_large_photos.py [faces=../shared/data/faces] [sides=1280,2048,2560,3072,4096]

Each photo is scanned at its own size, then resized so its longer side is each of ``sides`` pixels and scanned at
full resolution (``max_side=null``): the faces found are mapped back to the photo's own pixels and compared with the
ones found at its own size (a face "kept" overlaps one of those by IoU > 0.5). Last, the photo enlarged 4x is scanned
with the default settings (shrunk to ``max_side``). A side is safe when every photo keeps its faces and gains none.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from mimic.args import Key, integers, parse
from mimic.cli import user_errors
from mimic.detectors import load_detector
from mimic.faces import Detection, for_photos

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "faces": Key(Path, REPO.parent / "shared" / "data" / "faces", "a folder of .jpg photos"),
    "sides": Key(integers, [1280, 2048, 2560, 3072, 4096], "the longer sides to resize each photo to"),
}


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def compare(own: list[Detection], found: list[Detection], scale: float) -> str:
    """'kept k/n, extra e, ms' of ``found`` (in pixels of a photo ``scale`` times the original) against ``own``."""
    boxes = [tuple(v / scale for v in d.box) for d in found]
    kept = sum(any(iou(o.box, b) > 0.5 for b in boxes) for o in own)
    extra = sum(not any(iou(o.box, b) > 0.5 for o in own) for b in boxes)
    return f"kept {kept}/{len(own)}, extra {extra}"


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__)
    sides = args.sides
    full = for_photos(load_detector("yunet", max_side=None))
    default = for_photos(load_detector("yunet"))
    print(f"default max_side: {default.max_side}")
    print(f"{'photo':<26} {'own size':<10} " + " ".join(f"{s:>22}" for s in sides) + f" {'4x, default':>26}")
    for path in sorted(args.faces.glob("*.jpg")):
        photo = cv2.imread(str(path))
        own = full.detect(photo)
        cells = []
        for side in sides:
            scale = side / max(photo.shape[:2])
            resized = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            cells.append(compare(own, full.detect(resized), scale))
        big = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        t = time.perf_counter()
        found = default.detect(big)
        ms = 1000 * (time.perf_counter() - t)
        size = f"{photo.shape[1]}x{photo.shape[0]}"
        print(
            f"{path.name:<26} {size:<10} "
            + " ".join(f"{c:>22}" for c in cells)
            + f" {compare(own, found, 4.0) + f', {ms:.0f} ms':>26}"
        )


if __name__ == "__main__":
    main()
