"""The web server under hostile and heavy clients (issue 24): images decoded only within the pixel limit, one client
unable to hold up the others, no 500 for a client's input or a missing file, no way out of its folders, the printed
address working, secrets off disk, bounded logs and memory, jobs' models, small photo sets, a quiet log; and a soak
test of four clients at once against the real server."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, load_script
from fastapi.testclient import TestClient
from test_personalise import face_frames, make_app, post_photo, wait
from test_realtime_app import patches  # noqa: F401  (the fixture test_web_browser's camera needs)
from test_web_api import CLASSES, free_port, jpeg, rows_of, web_cfg
from test_web_browser import browser, camera, model_file, server, wait_for  # noqa: F401  (fixtures)

from mimic.data.synthetic import draw_scene
from mimic.job_data import snapshot
from mimic.jobs import MODEL_FILE, process_runs
from mimic.realtime.web import sessions as sessions_module
from mimic.realtime.web.frames import TooLarge, decode, image_size
from mimic.realtime.web.inbox import INBOX_ITEMS, Frame, Inbox, Skipped
from mimic.realtime.web.main import create_app

rss_mb = load_script("bench/benchmark_web").rss_mb  # a process's resident memory in MB


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG claiming ``width`` x ``height`` pixels: a header the size is read from, no pixels."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height) + bytes(40)


def scene(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    return cv2.imencode(".jpg", draw_scene([("happy", box)], width, height), [cv2.IMWRITE_JPEG_QUALITY, 85])[
        1
    ].tobytes()


@pytest.fixture
def client(tmp_path, tiny_checkpoint):
    """A server of the tiny model whose folders are all under ``tmp_path`` (as `test_personalise.make_app` makes)."""
    with TestClient(make_app(tmp_path, tiny_checkpoint)) as c:
        yield c


# ------------------------------------------------------------------------------------------------------ 1. pixels
def test_a_frame_over_the_pixel_limit_is_refused_from_its_header(client):
    over = scene(2100, 2100, (800, 800, 400, 400))  # a real JPEG just over 2048x2048
    with client.websocket_connect("/ws/live") as ws:
        ws.receive_json()
        for n, data in enumerate([png_header(10000, 10000), over]):
            ws.send_bytes(data)
            answer = ws.receive_json()
            assert answer["frame"] == n and "ui.max_pixels" in answer["error"] and "faces" not in answer
        ws.send_bytes(jpeg())
        assert len(ws.receive_json()["faces"]) == 1  # the connection carries on


def test_a_photo_over_the_pixel_limit_is_refused_with_413(client):
    for data in (png_header(10000, 10000), scene(2100, 2100, (800, 800, 400, 400))):
        response = client.post("/api/captures", data={"class": "happy"}, files={"file": ("big.png", data)})
        assert response.status_code == 413 and "ui.max_pixels" in response.json()["error"]
    assert client.get("/api/captures").json()["classes"] == []  # nothing saved


def test_a_large_frame_is_shrunk_once_and_answered_in_its_own_pixels(client):
    box = (900, 500, 600, 600)
    with client.websocket_connect("/ws/live") as ws:
        ws.receive_json()
        ws.send_bytes(scene(2000, 1500, box))
        answer = ws.receive_json()
    assert (answer["width"], answer["height"]) == (2000, 1500)
    (face,) = answer["faces"]
    x, y, w, h = face["box"]
    assert abs(x + w / 2 - 1200) < 100 and abs(y + h / 2 - 800) < 100 and 350 < w < 900  # the sent frame's pixels
    assert all(880 < px < 1520 and 480 < py < 1120 for px, py in face["landmarks"])
    row = rows_of(client.get("/api/log.csv").content)[0]
    assert [int(row[k]) for k in "xywh"] == face["box"]  # logged in the same pixels


def test_decode_reads_the_size_first_and_decodes_large_images_reduced():
    data = scene(2048, 1536, (800, 500, 500, 500))
    assert image_size(data) == (2048, 1536)
    sent = decode(data, 2048 * 2048, 1280)
    assert sent.image.shape == (768, 1024, 3) and sent.scale == 0.5 and (sent.width, sent.height) == (2048, 1536)
    small = decode(jpeg(), 2048 * 2048, 1280)
    assert small.image.shape == (480, 640, 3) and small.scale == 1.0
    strip = decode(cv2.imencode(".png", np.zeros((8, 20000, 3), np.uint8))[1].tobytes(), 2048 * 2048, 1280)
    assert strip.image.shape[1] == 1280  # over 8 times the side: resized after the reduced decode
    with pytest.raises(TooLarge, match="ui.max_pixels"):
        decode(png_header(50000, 50000), 2048 * 2048, 1280)


# ------------------------------------------------------------------------------------------------------ 2. fair time
def test_a_flooded_inbox_keeps_one_frames_bytes_and_bounds_its_length():
    inbox = Inbox()
    for n in range(5):
        inbox.put(Frame(n, bytes(1000), 0.0))
    assert [type(i) for i in inbox.items] == [Skipped] * 4 + [Frame] and inbox.items[-1].data
    assert [i.n for i in inbox.items] == list(range(5)) and inbox.space.is_set()
    for n in range(5, INBOX_ITEMS):
        inbox.put(Frame(n, bytes(1000), 0.0))
    assert not inbox.space.is_set()  # the reader waits until the answering loop takes them
    assert len(inbox.drain()) == INBOX_ITEMS and inbox.space.is_set()


def test_connections_are_served_in_turn(tmp_path, tiny_checkpoint, monkeypatch):
    """A flooding client and a paced one: each of the paced client's frames waits for at most one of the flood's."""
    starts: list[tuple[int, int, float, float]] = []  # (connection, frame, arrived, started)
    process = sessions_module.Sessions.process

    def recorded(self, conn, frame):
        starts.append((conn.id, frame.n, conn.t0 + frame.time, time.monotonic()))
        return process(self, conn, frame)

    monkeypatch.setattr(sessions_module.Sessions, "process", recorded)
    two = jpeg(2)
    client = TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint)))
    with client, client.websocket_connect("/ws/live") as flood, client.websocket_connect("/ws/live") as paced:
        flood_id = flood.receive_json()["hello"]["connection"]
        paced_id = paced.receive_json()["hello"]["connection"]
        for _ in range(60):
            flood.send_bytes(two)
        for n in range(6):
            paced.send_bytes(jpeg())
            assert paced.receive_json()["frame"] == n
        answers = [flood.receive_json() for _ in range(60)]
    assert [a["frame"] for a in answers] == list(range(60))  # every frame answered, in order
    assert sum("faces" in a for a in answers) >= 2 and sum(bool(a.get("skipped")) for a in answers) >= 1
    flood_starts = [s for c, _, _, s in starts if c == flood_id]
    for _, _, arrived, started in [s for s in starts if s[0] == paced_id]:
        assert sum(arrived < s < started for s in flood_starts) <= 1


def test_connections_beyond_the_limit_are_refused_until_one_closes(tmp_path, tiny_checkpoint):
    with TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint, "ui.max_connections=2"))) as client:
        with client.websocket_connect("/ws/live") as one, client.websocket_connect("/ws/live") as two:
            one.receive_json(), two.receive_json()
            with client.websocket_connect("/ws/live") as three:
                assert "ui.max_connections" in three.receive_json()["error"]
        with client.websocket_connect("/ws/live") as again:
            assert "hello" in again.receive_json()


# ------------------------------------------------------------------------------------------------------ 3. no 500s
def test_deep_or_large_json_is_refused_not_a_500(client):
    deep = "[" * 30_000 + "]" * 30_000  # under the size limit; Python's parser would recurse 30,000 deep
    for path in ("/api/finetune", "/api/model"):
        response = client.post(path, content=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "nested" in response.json()["error"], path
        huge = json.dumps({"epochs": 1, "pad": "x" * 100_000})
        response = client.post(path, content=huge, headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and "bytes" in response.json()["error"], path
    response = client.post("/api/captures", content=b"x" * 4_200_000, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413
    with client.websocket_connect("/ws/live") as ws:
        ws.receive_json()
        ws.send_text(deep)
        assert "JSON" in ws.receive_json()["error"]
        ws.send_bytes(jpeg())
        assert len(ws.receive_json()["faces"]) == 1


def test_a_log_deleted_from_disk_answers_404(client):
    with client.websocket_connect("/ws/live") as ws:
        name = ws.receive_json()["hello"]["log"]
        ws.send_bytes(jpeg())
        ws.receive_json()
    (entry,) = client.get("/api/logs").json()["logs"]
    path = Path(client.app.state.web.sessions.logs[name].csv.path)
    path.unlink()
    for url in (f"/api/logs/{name}", "/api/log.csv"):
        response = client.get(url)
        assert response.status_code == 404 and "no longer on disk" in response.json()["error"]


# ------------------------------------------------------------------------------------------------------ 6. secrets
def test_the_token_is_redacted_wherever_hydra_saves_it_and_nothing_else_is():
    from mimic.realtime.web.server import REDACTED, _redacted

    saved = {
        "ui": {"token": 12345678, "name": "web", "host": "127.0.0.1"},  # a number stays a number in config.yaml
        "task": ["ui=web", "ui.token=12345678", "+ui.token='12345678'"],
        "override_dirname": "ui.token=12345678,ui=web",
        "note": "123456789",
    }
    assert _redacted(saved, "12345678") == {
        "ui": {"token": REDACTED, "name": "web", "host": "127.0.0.1"},
        "task": ["ui=web", f"ui.token={REDACTED}", f"+ui.token={REDACTED}"],
        "override_dirname": f"ui.token={REDACTED},ui=web",
        "note": "123456789",
    }
    assert _redacted({"ui": {"name": "web", "token": "web"}, "o": ["ui=web", "ui.token=web"]}, "web") == {
        "ui": {"name": "web", "token": REDACTED},
        "o": ["ui=web", f"ui.token={REDACTED}"],
    }  # a short token: only where it is the token's value


# ------------------------------------------------------------------------------------------------------ 7. openapi
def test_the_api_schema_needs_the_token(tmp_path, tiny_checkpoint):
    with TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint), token="s3cret-token")) as client:
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/docs").status_code == 404
        schema = client.get("/openapi.json?token=s3cret-token").json()
        assert "/api/finetune" in schema["paths"] and "/openapi.json" not in schema["paths"]
        assert client.get("/").status_code == 200  # the page itself is served without it (it asks for it)


# ------------------------------------------------------------------------------------------------------ 8. logs
def test_one_log_per_connection_a_new_one_only_for_other_classes(client, tmp_path):
    from conftest import train_tiny_checkpoint

    root = client.app.state.web.catalog.root
    train_tiny_checkpoint(root / "three" / "best.ckpt", classes=["happy", "sad", "neutral"])
    copy = root / "same" / "best.ckpt"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(Path(client.app.state.web.sessions.default.path).read_bytes())
    models = {e["name"].split("/")[0]: e["id"] for e in client.get("/api/models").json()["models"]}
    with client.websocket_connect("/ws/live") as ws:
        hello = ws.receive_json()["hello"]
        for model in (models["same"], hello["model"]["id"], models["same"]):  # the same classes: the same file
            ws.send_text(json.dumps({"model": model}))
            assert ws.receive_json()["log"] == hello["log"]
            ws.send_bytes(jpeg())
            ws.receive_json()
        ws.send_text(json.dumps({"model": models["three"]}))
        switched = ws.receive_json()
        assert switched["log"] != hello["log"] and switched["classes"] == ["happy", "sad", "neutral"]
    rows = rows_of(client.get(f"/api/logs/{hello['log']}").content)
    assert [r["model"] for r in rows] == ["same/best.ckpt", f"{Path(hello['model']['name'])}", "same/best.ckpt"]
    assert len(client.get("/api/logs").json()["logs"]) == 2


def settled(client: TestClient, live: int) -> list[dict]:
    """The listed logs once ``live`` of them are live (a closed connection's log is finished on the server's time)."""
    for _ in range(200):
        logs = client.get("/api/logs").json()["logs"]
        if sum(e["live"] for e in logs) == live:
            return logs
        time.sleep(0.05)
    raise AssertionError(f"the logs did not settle: {logs}")


def test_listed_logs_are_capped_and_deleted_only_when_asked(tmp_path, tiny_checkpoint):
    with TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint, "ui.max_logs=3"))) as client:
        names = []
        for _ in range(5):
            with client.websocket_connect("/ws/live") as ws:
                names.append(ws.receive_json()["hello"]["log"])
        with client.websocket_connect("/ws/live") as live:
            live_log = live.receive_json()["hello"]["log"]
            listed = [e["name"] for e in settled(client, live=1)]
            assert listed == names[-2:] + [live_log]  # the newest 3; a live one is always listed
            assert all((tmp_path / "logs" / n).is_file() for n in names)  # none deleted
            response = client.delete(f"/api/logs/{live_log}")
            assert response.status_code == 409 and "still being written" in response.json()["error"]
        assert client.delete(f"/api/logs/{names[0]}").status_code == 404  # not listed: not the API's to delete
        assert client.delete(f"/api/logs/{names[-1]}").json() == {"deleted": names[-1]}
        assert not (tmp_path / "logs" / names[-1]).exists() and (tmp_path / "logs" / names[0]).is_file()
        assert client.get(f"/api/logs/{names[-1]}").status_code == 404


# ------------------------------------------------------------------------------------------------------ 12. quiet log
@pytest.mark.slow  # two ONNX exports
def test_the_exporters_info_lines_are_not_shown_unless_asked(tmp_path, tiny_checkpoint, caplog):
    from mimic.models.onnx_export import export

    def exporter_lines(level: int) -> list[str]:
        caplog.clear()
        with caplog.at_level(level):
            export(tiny_checkpoint, tmp_path / f"m{level}.onnx")
        return [r.name for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir", "torch.onnx"))]

    assert exporter_lines(logging.INFO) == []
    assert exporter_lines(logging.DEBUG)  # hydra.verbose=true sets DEBUG: then they are shown


# ------------------------------------------------------------------------------------------------------ 4, 9, 10
@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A folder outside every folder of the server, holding a photo that is not the server's."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    cv2.imwrite(str(folder / "0000.png"), np.full((128, 128, 3), 7, np.uint8))
    return folder


def untouched(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def end(pid: int, folder: Path) -> None:
    """Wait for the job process ``pid`` of ``folder`` to end (a cancelled one gets SIGKILL 20 s after SIGTERM)."""
    deadline = time.monotonic() + 60
    while process_runs(pid, folder) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_symlinked_class_folder_is_no_class(client, tmp_path, elsewhere, caplog):
    before = untouched(elsewhere)
    assert post_photo(client, "happy", face_frames("happy", 1)[0]).status_code == 200
    webcam = tmp_path / "data" / "webcam"
    (webcam / "1_evil").symlink_to(elsewhere, target_is_directory=True)

    for _ in range(3):
        listing = client.get("/api/captures").json()
        assert [(c["name"], c["count"]) for c in listing["classes"]] == [("happy", 1)]
    assert caplog.text.count("1_evil is a symlink, not a class folder") == 1  # said once in the server's log

    for method in (client.get, client.delete):
        r = method("/api/captures/evil/0000.png")
        assert r.status_code == 404 and "webcam/1_evil is a symlink, not a class folder" in r.json()["error"]
    r = post_photo(client, "evil", face_frames("happy", 1)[0])
    assert r.status_code == 400 and "webcam/1_evil is a symlink" in r.json()["error"]
    assert untouched(elsewhere) == before

    r = post_photo(client, "sad", face_frames("sad", 1)[0])  # the next class takes the next real folder
    assert r.status_code == 200 and r.json()["folder"] == "1_sad" and (webcam / "1_sad").is_dir()
    (webcam / "2_fear").write_bytes(b"a file where the next class folder would go")
    r = post_photo(client, "fear", face_frames("happy", 1)[0])
    assert r.status_code == 400 and "webcam/2_fear is a link or a file" in r.json()["error"]
    assert (webcam / "2_fear").read_bytes() == b"a file where the next class folder would go"


def test_a_symlinked_photo_is_not_listed_read_or_deleted(client, tmp_path, elsewhere):
    before = untouched(elsewhere)
    post_photo(client, "happy", face_frames("happy", 1)[0])
    folder = tmp_path / "data" / "webcam" / "0_happy"
    (folder / "0007.png").symlink_to(elsewhere / "0000.png")
    assert client.get("/api/captures").json()["classes"][0]["files"] == ["0000.png"]
    for method in (client.get, client.delete):
        assert method("/api/captures/happy/0007.png").status_code == 404
    assert untouched(elsewhere) == before and (folder / "0007.png").is_symlink()


def test_a_job_takes_only_the_captures_own_photos(client, tmp_path, elsewhere):
    """Starting a job: the snapshot copies the class folders' own photos, not a symlinked folder's or photo's."""
    for label in ("happy", "sad"):
        for data in face_frames(label, 2):
            assert post_photo(client, label, data).status_code == 200
    webcam = tmp_path / "data" / "webcam"
    (webcam / "2_fear").symlink_to(elsewhere, target_is_directory=True)
    (webcam / "0_happy" / "0009.png").symlink_to(elsewhere / "0000.png")

    r = client.post("/api/finetune", json={"epochs": 1})
    assert r.status_code == 200, r.text
    job = r.json()
    folder = tmp_path / "outputs" / "personalise" / job["id"]
    pid = json.loads((folder / "job.json").read_text())["pid"]
    try:
        assert job["classes"] == ["happy", "sad"]  # no FER2013: the classes photographed
        assert job["captured"] == {c: {"test": 1, "val": 0, "train": 1} for c in ("happy", "sad")}
        copied = sorted(p.relative_to(folder / "data").as_posix() for p in (folder / "data").rglob("*.png"))
        assert len(copied) == 4 and not [p for p in copied if "fear" in p or "0009" in p]
    finally:
        assert client.delete(f"/api/finetune/{job['id']}").json()["state"] == "cancelled"
        end(pid, folder)


def write_job(root: Path, job_id: str, ckpt: Path, **files: dict) -> Path:
    """A job folder as the server and the job's process leave it: job.json, its model and the ``files`` given."""
    folder = root / job_id
    folder.mkdir(parents=True)
    job = {"id": job_id, "base": str(ckpt), "classes": ["happy", "sad"], "epochs": 1, "freeze": [], "fer2013": False}
    (folder / "job.json").write_text(json.dumps({**job, "created": time.time() - 3600}))
    (folder / MODEL_FILE).write_bytes(ckpt.read_bytes())
    for name, data in files.items():
        (folder / f"{name}.json").write_text(json.dumps(data))
    return folder


def test_a_symlinked_job_folder_is_no_job(client, tmp_path, tiny_checkpoint, caplog):
    outside = write_job(tmp_path / "elsewhere", "20240101-000000", tiny_checkpoint, result={"state": "done"})
    root = tmp_path / "outputs" / "personalise"
    root.mkdir(parents=True)
    (root / "20240101-000000").symlink_to(outside, target_is_directory=True)
    before = untouched(outside)
    assert client.get("/api/finetune").json() == {"jobs": []}
    for method in (client.get, client.delete):
        r = method("/api/finetune/20240101-000000")
        assert r.status_code == 404 and "no fine-tuning job '20240101-000000'" in r.json()["error"]
    assert "20240101-000000 is a symlink, not a job folder" in caplog.text
    assert untouched(outside) == before
    assert not [m for m in client.get("/api/models").json()["models"] if "20240101" in m["name"]]


def test_model_files_reached_through_a_symlink_are_not_offered(client, tmp_path, tiny_checkpoint, elsewhere):
    models = tmp_path / "outputs"
    (models / "runs").mkdir(parents=True)
    other = elsewhere / "other.ckpt"
    other.write_bytes(tiny_checkpoint.read_bytes())
    (models / "runs" / "linked.ckpt").symlink_to(other)
    (models / "runs" / "mine.ckpt").write_bytes(tiny_checkpoint.read_bytes())
    names = {m["name"] for m in client.get("/api/models").json()["models"]}
    assert "runs/mine.ckpt" in names and not [n for n in names if "other.ckpt" in n or "linked.ckpt" in n]


def test_the_picker_offers_only_the_models_of_jobs_that_are_done(client, tmp_path, tiny_checkpoint):
    """Job folders whose state is set by their files, each with its model file: done, cancelled after its model was
    written, ended without a result, failed; and a model file loose in the jobs' folder."""
    root = tmp_path / "outputs" / "personalise"
    done = write_job(root, "20240101-000001", tiny_checkpoint, result={"state": "done"})
    write_job(root, "20240101-000002", tiny_checkpoint, result={"state": "done"}, cancelled={})
    write_job(root, "20240101-000003", tiny_checkpoint)
    write_job(root, "20240101-000004", tiny_checkpoint, result={"state": "failed", "error": "no"})
    (root / "stray.ckpt").write_bytes(tiny_checkpoint.read_bytes())

    names = [m["name"] for m in client.get("/api/models").json()["models"]]
    assert [n for n in names if n.endswith(MODEL_FILE) or "stray" in n] == [f"{done.name}/{MODEL_FILE}"]
    states = {j["id"]: (j["state"], j.get("model")) for j in client.get("/api/finetune").json()["jobs"]}
    assert states["20240101-000002"] == ("cancelled", None) and states["20240101-000004"] == ("failed", None)
    assert states["20240101-000001"][0] == "done" and states["20240101-000001"][1]["classes"]


FAKE_JOB = """
import signal, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
def late_model(signum, frame):  # the job's process writes its model after the cancel, then ends
    (folder / "personalised.ckpt").write_bytes(b"a model nobody wants")
    sys.exit(0)
signal.signal(signal.SIGTERM, late_model)
(folder / "ready").touch()
time.sleep(60)
"""


def test_a_cancelled_jobs_model_is_removed_once_its_process_ends(client, tmp_path, tiny_checkpoint):
    folder = write_job(tmp_path / "outputs" / "personalise", "20240101-000005", tiny_checkpoint)
    (folder / MODEL_FILE).unlink()
    proc = subprocess.Popen([sys.executable, "-c", FAKE_JOB, str(folder)], start_new_session=True)
    try:
        job = json.loads((folder / "job.json").read_text())
        (folder / "job.json").write_text(json.dumps({**job, "pid": proc.pid}))
        deadline = time.monotonic() + 30
        while not (folder / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(f"/api/finetune/{folder.name}").json()["state"] == "running"
        assert client.delete(f"/api/finetune/{folder.name}").json()["state"] == "cancelled"
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 30
        while (folder / MODEL_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (folder / MODEL_FILE).exists()
        assert client.get(f"/api/finetune/{folder.name}").json()["state"] == "cancelled"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def photos(folder: Path, n: int, label: str = "happy") -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}.png"), draw_scene([(label, (8, 8, 112, 112))], 128, 128, rng=rng))
    return folder


@pytest.mark.parametrize(
    "n, split", [(2, (1, 0, 1)), (3, (1, 0, 2)), (4, (1, 1, 2)), (8, (2, 1, 5))]
)  # fmt: skip
def test_two_photos_are_enough_one_held_out_one_trained_on(tmp_path, n, split):
    folder = photos(tmp_path / "webcam" / "0_happy", n)
    counts = snapshot({"happy": folder}, tmp_path / "data", ["happy"])
    assert counts == {"happy": dict(zip(("test", "val", "train"), split))}
    assert (tmp_path / "data" / "val" / "happy").is_dir()  # empty or not: training photos stay out of validation


def test_a_photo_and_its_exact_copy_are_one_photo(client, tmp_path):
    for label in ("happy", "sad"):
        for data in face_frames(label, 2):
            post_photo(client, label, data)
    folder = tmp_path / "data" / "webcam" / "1_sad"
    (folder / "0001.png").write_bytes((folder / "0000.png").read_bytes())
    r = client.post("/api/finetune", json={})
    assert r.status_code == 400 and "at least 2 different photos; these have fewer: sad (1)" in r.json()["error"]


def test_a_client_sees_folder_names_never_server_paths(client, tmp_path):
    post_photo(client, "happy", face_frames("happy", 1)[0])
    assert client.get("/api/captures").json()["folder"] == "webcam"
    options = client.get("/api/finetune/options").json()
    assert options["fer2013"]["path"] == "fer2013" and options["min_photos"] == 2
    assert str(tmp_path) not in json.dumps(options) + json.dumps(client.get("/api/captures").json())


@pytest.mark.slow
def test_a_job_from_two_photos_per_class_without_fer2013_runs_to_done(client, tmp_path):
    """A real job (tiny model, no FER2013): one photo per class trained on, one held out, no validation: the last
    epoch is kept, the report says it rests on one photo per class, and its model is offered."""
    for label in ("happy", "sad"):
        for data in face_frames(label, 2):
            assert post_photo(client, label, data).status_code == 200
    r = client.post("/api/finetune", json={"epochs": 2})
    assert r.status_code == 200, r.text
    done = wait(client, r.json()["id"], lambda s: s["state"] != "running")
    assert done["state"] == "done", done
    assert done["captured"] == {c: {"test": 1, "val": 0, "train": 1} for c in ("happy", "sad")}
    report = done["report"]
    assert report["after"]["held_out"]["n"] == 2 and report["kept"] == "the last epoch (no photos to validate on)"
    assert "trained on one photo per class and judged on one held-out photo per class" in report["note"]
    assert [h["epoch"] for h in done["history"]] == [1, 2]
    assert done["model"]["id"] in {m["id"] for m in client.get("/api/models").json()["models"]}


# ------------------------------------------------------------------------------------------------------ 11. the page
def with_module(driver, name: str, function: str):
    """``function`` (a JS function of a module) called with the page's own ES module ``static/<name>`` (the instance
    the page runs: the same URL); its value."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"import(new URL('static/{name}', location.href).href).then((m) => done(({function})(m)),"
        " (e) => done({error: String(e)}));"
    )


@pytest.mark.slow  # a real server and Chromium (test_web_browser.py's fixtures)
def test_the_page_says_each_thing_once_and_in_its_place(server, browser, tmp_path):  # noqa: F811
    """What a first visit shows: the class picker on a real class, the personalise heading on one line with the
    captures folder's name and no server path anywhere, the model picker's short lines shown whole, labels inside the
    frame and off each other, the running epoch, and why the face panel's label is not the top bar."""
    driver = browser
    driver.get(server)
    wait_for(driver, "window.mimicStats && mimicStats.lastDrawn && mimicStats.lastDrawn.faces.length", 90, "face")
    wait_for(driver, "document.getElementById('p-fer2013-note').textContent", 20, "the fine-tuning options")
    wait_for(driver, "document.getElementById('p-folder').textContent", 20, "the photos")

    # the class picker starts on the model's first class (no photos yet), not on "new class…"
    picker = driver.execute_script(
        "return {value: document.getElementById('p-class').value, classes: mimic.classes,"
        " box: !document.getElementById('p-new-class').hidden}"
    )
    assert picker["value"] == picker["classes"][0] and not picker["box"], picker

    # the heading on one line, with the captures folder's name; no server path on the page
    head = driver.execute_script(
        "const h = document.querySelector('#personalise .panel-head h2'), head = h.parentElement;"
        "return {h: h.getBoundingClientRect().height, head: head.getBoundingClientRect().height,"
        " line: parseFloat(getComputedStyle(h).lineHeight), folder: document.getElementById('p-folder').textContent,"
        " html: document.documentElement.outerHTML, text: document.body.innerText}"
    )
    assert head["h"] < 1.5 * head["line"] and head["head"] < 1.5 * head["line"] + 4, head
    assert head["folder"] == "webcam/"
    for path in (str(tmp_path), str(REPO)):
        assert path not in head["html"] and path not in head["text"]
    assert "ui.personalise.fer2013" in driver.find_element("id", "p-fer2013-note").text

    # the model picker: each thing once ("bundled · 70.0%"), its longest line shown whole
    models = {m["id"]: m for m in driver.execute_script("return mimic.models")}
    options = driver.execute_script(
        "const s = document.getElementById('model-picker'), style = getComputedStyle(s);"
        "const ctx = document.createElement('canvas').getContext('2d'); ctx.font = style.font;"
        "return {options: [...s.options].map((o) => [o.value, o.text]), room: s.clientWidth"
        " - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 16,"
        " widest: Math.max(...[...s.options].map((o) => ctx.measureText(o.text).width))}"
    )
    for model_id, text in options["options"]:
        m = models[model_id]
        accuracy = "" if m["accuracy"] is None else f" · {m['accuracy'] * 100:.1f}%"
        assert text == ("bundled" if m["kind"] == "bundled" else m["name"]) + accuracy, text
        assert "(bundled)" not in text
    assert options["widest"] <= options["room"], options

    # labels: inside the frame, off the labels placed before them (above the box, else below, else inside its top)
    placed = with_module(
        driver,
        "view.js",
        "(m) => m.placeLabels([[100, 100, 80, 80], [110, 105, 80, 80], [120, 110, 80, 80], [600, 2, 40, 40],"
        " [-20, 470, 60, 20], [0, 0, 640, 480], [0, 0, 640, 480]].map((box) => ({box, w: 120, h: 24, gap: 4})),"
        " 640, 480)",
    )
    rects = [(r["x"], r["y"], r["w"], r["h"]) for r in placed]
    assert rects[:4] == [(98, 72, 120, 24), (108, 189, 120, 24), (118, 114, 120, 24), (520, 46, 120, 24)]
    for i, (x, y, w, h) in enumerate(rects):
        assert 0 <= x <= 640 - w and 0 <= y <= 480 - h, rects[i]
        for x2, y2, w2, h2 in rects[:i]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y, (rects[i], (x2, y2, w2, h2))

    # a job's status line: the epoch that runs, not the last one finished
    stages = with_module(
        driver,
        "personalise.js",
        "(m) => [[0, 0, 'training'], [3, 3, 'training'], [3, 4, 'training'], [6, 6, 'calibrating']]"
        ".map(([epoch, done, phase]) => m.jobStage({state: 'running', phase, epoch, epochs: 6,"
        " history: Array(done).fill({})})).concat(m.jobStage({state: 'done', epoch: 6, epochs: 6, history: []}))",
    )
    assert stages == [
        "training, epoch 1 of 6",
        "training, epoch 4 of 6",
        "training, epoch 5 of 6",
        "calibrating, 6 of 6 epochs done",
        "done",
    ]

    # the face panel says why its label is not the top bar: the smoothing margin of GET /api/info
    margin = driver.execute_script("return mimic.apiJson('api/info').then((i) => i.smoothing.margin)")
    notes = with_module(
        driver,
        "panels.js",
        "(m) => { const c = mimic.classes, face = (top) => ({id: 99, label: c[0], confidence: 0.4, probs: {},"
        " smoothed: Object.fromEntries(c.map((n, i) => [n, i === 0 ? 0.4 : i === 1 ? top : 0.2 / (c.length - 2)]))});"
        " const note = () => document.getElementById('face-note').textContent;"
        " m.showFace(face(0.45)); const held = note(); m.showFace(face(0.3)); return [held, note()]; }",
    )
    assert notes == [f"held until another class leads by {round(margin * 100)} points", ""], notes
    problems = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems


# ------------------------------------------------------------------------------------------------------ real server
class Server:
    """``python realtime.py ui=web`` in a subprocess: its printed address and its output lines."""

    def __init__(self, tmp_path: Path, ckpt: Path, *settings: str, host: str = "127.0.0.1") -> None:
        port = free_port(host)
        self.tmp_path = tmp_path
        args = [f"host={host}", f"port={port}", f"ckpt={ckpt}", f"log.path={tmp_path / 'logs'}",
                f"ui.models_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}", *settings]  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "realtime.py", "ui=web", *args], cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url, deadline = "", time.monotonic() + 120
        while not self.url:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            self.url = line.split(": ", 1)[1].strip() if line.startswith("mimic web page: ") else ""
        self.port = port

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(30)
        time.sleep(0.2)
        return "".join(self.output)


def test_a_loopback_host_serves_its_printed_address_and_its_token_stays_off_disk(tmp_path, tiny_checkpoint):
    """host=127.0.0.2 (loopback: its Host name is accepted, others still refused) with a given token: the printed
    address loads the page and the API, and the token is not in any file of the run folder."""
    token = "my-secret-token-4711"
    live = Server(tmp_path, tiny_checkpoint, f"ui.token={token}", host="127.0.0.2")
    try:
        base = live.url.split("?")[0]
        assert base.startswith("http://127.0.0.2:") and live.url == f"{base}?token={token}"
        page = urllib.request.urlopen(live.url, timeout=30)
        assert page.status == 200 and b"<html" in page.read().lower()
        info = urllib.request.urlopen(f"{base}api/info?token={token}", timeout=30)
        assert json.load(info)["classes"] == CLASSES
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/info", timeout=30)
        assert refused.value.code == 401
        request = urllib.request.Request(f"{base}api/info?token={token}", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:  # other names are still refused (DNS rebinding)
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400
    finally:
        live.stop()
    saved = list((tmp_path / "run").rglob("*"))
    assert any(p.name == "overrides.yaml" for p in saved)
    for path in saved:
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    overrides = (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text()
    assert "ui.token=<redacted>" in overrides and "ui=web" in overrides and "host=127.0.0.2" in overrides


@pytest.mark.slow  # 145 connections to a real server
def test_closed_connections_give_their_memory_back(tmp_path, tiny_checkpoint):
    """100 connections one after another, then three rounds of 15 open at once (each used to load its own detector:
    ~200 MB, most of it never given back), leave the server's memory within 100 MB of where the first left it."""
    from websockets.sync.client import connect

    live = Server(tmp_path, tiny_checkpoint)
    frame = jpeg()

    def connection(stack: contextlib.ExitStack) -> None:
        ws = stack.enter_context(connect(f"ws://127.0.0.1:{live.port}/ws/live", open_timeout=30))
        json.loads(ws.recv(timeout=30))
        ws.send(frame)
        assert "faces" in json.loads(ws.recv(timeout=30))

    try:
        with contextlib.ExitStack() as stack:
            connection(stack)
        warm = rss_mb(live.proc.pid)
        for _ in range(100):
            with contextlib.ExitStack() as stack:
                connection(stack)
        for _ in range(3):
            with contextlib.ExitStack() as stack:
                for _ in range(15):
                    connection(stack)
        time.sleep(1)
        assert rss_mb(live.proc.pid) < warm + 100
    finally:
        out = live.stop()
    assert "error in a request" not in out and "Traceback" not in out


@pytest.mark.slow  # two minutes of four clients against the real server
def test_soak_four_clients_at_once(tmp_path, tiny_checkpoint):
    bench = load_script("bench/benchmark_web")
    live = Server(tmp_path, tiny_checkpoint)
    try:
        start = rss_mb(live.proc.pid)
        frames = [jpeg(), jpeg(2)]
        results = bench.four_clients(live.port, frames, bench.big_frame(2048 * 2048), seconds=60)
        end = rss_mb(live.proc.pid)
    finally:
        out = live.stop()
    for r in results:
        assert r["sent"] > 0 and r["answers"] == r["sent"] and not r["errors"], r["kind"]
    paced = [r for r in results if r["kind"] == "paced"]
    assert all(r["answers"] >= 100 for r in paced)  # served all along, not starved
    assert "error in a request" not in out and "Traceback" not in out and " 500 " not in out
    assert end < start + 300
