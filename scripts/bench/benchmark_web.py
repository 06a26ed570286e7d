"""Benchmark the web page's server: frames/s answered and round trip over a real WebSocket, one face and two.

    python scripts/bench/benchmark_web.py [ckpt=<file.ckpt|file.onnx>] [predictor.backend=auto|torch|onnx]
                                          [frames=300] [in_flight=1,2] [repeats=2] [faces_dir=../shared/data/faces]
                                          [any other src/mimic/conf/realtime.yaml override]

Starts ``python realtime.py ui=web`` in a subprocess (no ``ckpt``: the bundled model) and, as the page does, sends a
640x480 video's frames as JPEG (quality 80) over ``WS /ws/live``, the next one as soon as an answer comes back, with
1 (and then N) frames in flight. The video is made by scripts/bench/make_test_video.py from the shared portraits, or
synthetic faces without them: one face, then two. Reported per case: frames/s processed (answers other than skipped per
second of wall time), how many were skipped, the median and 90th percentile of the round trip (send to answer of a
processed frame), the server's own time per frame (``server_ms``) and how often the expected faces were found.
Each case runs ``repeats`` times and the best run is reported (the machine being shared). Client and server share
this machine's cores, as a browser and the server on a laptop do.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from websockets.sync.client import connect

from mimic.args import Key, integers, parse
from mimic.cli import user_errors

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "frames": Key(int, 300, "frames of each video"),
    "in_flight": Key(integers, [1, 2], "frames kept in flight, a run for each"),
    "repeats": Key(int, 2, "runs of each case; the best is reported"),
    "faces_dir": Key(Path, REPO.parent / "shared" / "data" / "faces", "portraits for the video (else synthetic faces)"),
}


def video_maker():
    spec = importlib.util.spec_from_file_location("make_test_video", Path(__file__).with_name("make_test_video.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frames_of(layout: str, n: int, faces_dir: Path | None, folder: Path) -> list[bytes]:
    """The JPEGs of a 640x480 test video with ``layout`` one or two faces."""
    vm = video_maker()
    patches = vm.photo_patches(faces_dir, vm.PORTRAITS) if faces_dir and faces_dir.is_dir() else []
    path = folder / f"{layout}.avi"
    vm.make_video(path, patches or vm.synthetic_patches(), frames=n, size=(640, 480), layout=layout, noise=4)
    cap, out = cv2.VideoCapture(str(path)), []
    while (ok_frame := cap.read())[0]:
        out.append(cv2.imencode(".jpg", ok_frame[1], [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    cap.release()
    return out


def start_server(overrides: list[str], folder: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(REPO / "realtime.py"), "ui=web", f"port={port}", "reactions.sound=false",
           f"log.path={folder / 'logs'}", f"hydra.run.dir={folder / 'run'}", *overrides]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        print("  server:", line.rstrip())
        if line.startswith("mimic web page: "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # a full pipe would stall the server
            return proc, port
    raise SystemExit(f"the server did not start: {' '.join(cmd)}")


def run_case(port: int, frames: list[bytes], in_flight: int, expected_faces: int) -> dict:
    """Send every frame, keeping ``in_flight`` unanswered; the figures of the answers."""
    sent: dict[int, float] = {}
    trips, server_ms, found, skipped = [], [], 0, 0
    with connect(f"ws://127.0.0.1:{port}/ws/live", max_size=None) as ws:
        json.loads(ws.recv())  # hello
        ws.send(frames[0])  # warm-up: the first frame pays for lazy set-up
        json.loads(ws.recv())
        start, n = time.perf_counter(), 0
        while n < min(in_flight, len(frames)):
            sent[n] = time.perf_counter()
            ws.send(frames[n])
            n += 1
        for _ in range(len(frames)):
            answer = json.loads(ws.recv())
            now = time.perf_counter()
            if n < len(frames):
                sent[n] = time.perf_counter()
                ws.send(frames[n])
                n += 1
            if answer.get("skipped"):
                skipped += 1
                continue
            trips.append(now - sent[answer["frame"] - 1])  # the warm-up frame was number 0
            server_ms.append(answer["server_ms"])
            found += len(answer["faces"]) == expected_faces
        wall = time.perf_counter() - start
    processed = len(trips)
    return {
        "fps": processed / wall,
        "processed": processed,
        "skipped": skipped,
        "rtt_median_ms": 1000 * float(np.median(trips)),
        "rtt_p90_ms": 1000 * float(np.percentile(trips, 90)),
        "server_ms": float(np.median(server_ms)),
        "found": found / max(1, processed),
    }


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        args = parse(argv, KEYS, __doc__, extra="", extra_help="any src/mimic/conf/realtime.yaml override")
    overrides = args.extra
    with tempfile.TemporaryDirectory(prefix="mimic-bench-web-") as tmp:
        folder = Path(tmp)
        videos = {
            faces: frames_of(layout, args.frames, args.faces_dir, folder) for faces, layout in ((1, "one"), (2, "two"))
        }
        proc, port = start_server(overrides, folder)
        try:
            print(f"{'faces':>5} {'in flight':>9} {'frames/s':>9} {'skipped':>8} {'rtt median':>11} {'rtt p90':>8} "
                  f"{'server':>7} {'found':>6}")  # fmt: skip
            for faces, frames in videos.items():
                for in_flight in args.in_flight:
                    runs = [run_case(port, frames, in_flight, faces) for _ in range(args.repeats)]
                    r = max(runs, key=lambda run: run["fps"])
                    print(f"{faces:>5} {in_flight:>9} {r['fps']:>9.1f} {r['skipped']:>8} {r['rtt_median_ms']:>8.1f} ms "
                          f"{r['rtt_p90_ms']:>5.1f} ms {r['server_ms']:>4.1f} ms {r['found']:>6.0%}")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
