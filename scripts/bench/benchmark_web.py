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

import contextlib
import importlib.util
import json
import multiprocessing
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mimic.args import Key, boolean, integers, parse
from mimic.cli import user_errors
from mimic.data.synthetic import draw_scene

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "frames": Key(int, 300, "frames of each video"),
    "in_flight": Key(integers, [1, 2], "frames kept in flight, a run for each"),
    "repeats": Key(int, 2, "runs of each case; the best is reported"),
    "faces_dir": Key(Path, REPO.parent / "shared" / "data" / "faces", "portraits for the video (else synthetic faces)"),
    "cases": Key(boolean, True, "run the one-client cases"),
    "load": Key(float, 60.0, "seconds of the four-client load (two paced, one at the pixel limit, a flood); 0: none"),
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


def big_frame(pixels: int) -> bytes:
    """A JPEG of a square scene with one synthetic face at the pixel limit (``ui.max_pixels``: 2048x2048)."""
    side = int(pixels**0.5)
    frame = draw_scene([("happy", (side // 3, side // 4, side // 3, side // 3))], side, side)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def _client(url: str, kind: str, frames: list[bytes], seconds: float, out: multiprocessing.Queue) -> None:
    """One client of `four_clients`, for ``seconds``: ``paced`` (15 frames/s, one in flight, as the page), ``big``
    (frames at the pixel limit, the next as soon as one is answered) or ``flood`` (frames as fast as the socket takes
    them, a reader thread counting the answers). Puts its figures on ``out``: round trips of processed frames,
    answers, skipped, errors."""
    try:
        out.put(_talk(url, kind, frames, seconds))
    except Exception as e:  # a client that fails is reported, not waited for
        out.put(dict(kind=kind, sent=0, answers=0, skipped=0, errors=[f"client failed: {e!r}"], trips=[]))


def _talk(url: str, kind: str, frames: list[bytes], seconds: float) -> dict:
    trips, answers, skipped, errors = [], 0, 0, []
    with connect(url, max_size=None, open_timeout=30) as ws:
        json.loads(ws.recv())  # hello
        end, n = time.perf_counter() + seconds, 0
        if kind == "flood":
            got = []

            def read() -> None:
                with contextlib.suppress(ConnectionClosed):
                    while len(got) < n or time.perf_counter() < end:
                        got.append(json.loads(ws.recv()))

            reader = threading.Thread(target=read)
            reader.start()
            while time.perf_counter() < end:
                ws.send(frames[n % len(frames)])
                n += 1
            reader.join(60)
            answers, skipped = len(got), sum(bool(a.get("skipped")) for a in got)
            errors = [a["error"] for a in got if "error" in a]
        else:
            period = 1 / 15 if kind == "paced" else 0.0
            while (now := time.perf_counter()) < end:
                ws.send(frames[n % len(frames)])
                answer = json.loads(ws.recv())
                trips.append(time.perf_counter() - now)
                answers += 1
                if "error" in answer:
                    errors.append(answer["error"])
                n += 1
                time.sleep(max(0.0, now + period - time.perf_counter()))
    return dict(kind=kind, sent=n, answers=answers, skipped=skipped, errors=errors, trips=trips)


def four_clients(port: int, frames: list[bytes], big: bytes, seconds: float = 60.0) -> list[dict]:
    """The hostile load of issue 24 on the server at ``port``: two paced clients (15 frames/s), one sending frames
    at the pixel limit and one flooding, at once for ``seconds``, each in its own process as browsers are; each
    client's figures (`_client`), in that order."""
    url = f"ws://127.0.0.1:{port}/ws/live"
    plan = [("paced", frames), ("paced", frames), ("big", [big]), ("flood", frames)]
    context = multiprocessing.get_context("fork")  # the clients need nothing re-imported
    out = context.Queue()
    procs = [context.Process(target=_client, args=(url, kind, f, seconds, out)) for kind, f in plan]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    order = ["paced", "big", "flood"]
    return sorted(results, key=lambda r: order.index(r["kind"]))


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def print_load(results: list[dict], pid: int) -> None:
    print(f"four clients at once; server memory after: {rss_mb(pid):.0f} MB")
    print(f"{'client':>6} {'sent':>6} {'answers':>8} {'skipped':>8} {'errors':>6} {'rtt median':>11} {'rtt p99':>8}")
    for r in results:
        trips = np.array(r["trips"]) * 1000 if r["trips"] else None
        median = f"{np.median(trips):8.1f} ms" if trips is not None else f"{'-':>11}"
        p99 = f"{np.percentile(trips, 99):5.1f} ms" if trips is not None else f"{'-':>8}"
        print(f"{r['kind']:>6} {r['sent']:>6} {r['answers']:>8} {r['skipped']:>8} {len(r['errors']):>6} {median} {p99}")


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
            if args.load:
                print_load(four_clients(port, videos[1], big_frame(4194304), args.load), proc.pid)
            if not args.cases:
                return
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
