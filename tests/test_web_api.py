"""The web page's server (`python realtime.py ui=web`) through its HTTP and WebSocket API, as the page and other
clients use it: answered frames, bad frames, two connections, skipping, the model picker, the token and origin checks,
the logs, the reactions' files, the settings' errors, and the real server over a real socket."""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, compose, train_tiny_checkpoint
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mimic.cli import user_errors
from mimic.data.synthetic import draw_scene
from mimic.models.onnx_export import export
from mimic.realtime.result import columns
from mimic.realtime.web.main import create_app
from mimic.realtime.web.server import _bind, listening
from mimic.settings import check_settings

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def jpeg(n_faces: int = 1, width: int = 640, height: int = 480) -> bytes:
    """A real JPEG of a 640x480 scene with ``n_faces`` synthetic faces YuNet finds."""
    boxes = [(40, 120, 240, 240), (360, 120, 240, 240)] if n_faces == 2 else [(200, 120, 240, 240)]
    frame = draw_scene([("happy", box) for box in boxes[:n_faces]], width, height)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def web_cfg(tmp_path: Path, ckpt: Path, *overrides: str):
    return compose(
        "realtime",
        [
            "ui=web",
            f"ckpt={ckpt}",
            f"log.path={tmp_path / 'logs'}",
            f"ui.models_dir={tmp_path / 'models'}",
            f"reactions.assets_dir={tmp_path / 'assets'}",
            *overrides,
        ],
        output_dir=tmp_path / "run",
    )


@pytest.fixture
def client(tmp_path, tiny_checkpoint):
    with TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint))) as c:
        yield c


def rows_of(data: bytes | str) -> list[dict]:
    text = data.decode() if isinstance(data, bytes) else data
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------------------------------------------ frames
def test_a_frame_is_answered_with_its_faces_and_logged(client):
    info = client.get("/api/info").json()
    assert info["source"] == "browser" and info["classes"] == CLASSES and info["max_frame_bytes"] == 4_000_000
    assert set(info["reactions"]) >= {"enabled", "hold_s", "cooldown_s", "popup_s", "skip", "sound", "volume"}
    with client.websocket_connect("/ws/live") as ws:
        hello = ws.receive_json()["hello"]
        assert hello["classes"] == CLASSES and hello["model"]["id"] == info["model"]["id"]
        assert hello["log"].endswith(".csv") and isinstance(hello["connection"], int)
        for n in range(2):
            ws.send_bytes(jpeg())
            answer = ws.receive_json()
            assert answer["frame"] == n and answer["width"] == 640 and answer["height"] == 480
            assert answer["model"] == hello["model"]["id"] and answer["server_ms"] > 0
            (face,) = answer["faces"]
            assert face["id"] == 0 and set(face) == {
                "id", "box", "landmarks", "label", "confidence", "raw_label", "probs", "smoothed", "reaction",
            }  # fmt: skip
            x, y, w, h = face["box"]
            assert 150 < x + w / 2 < 450 and 100 < y + h / 2 < 400 and all(isinstance(v, int) for v in face["box"])
            assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
            assert list(face["probs"]) == CLASSES and abs(sum(face["probs"].values()) - 1) < 1e-3
            assert list(face["smoothed"]) == CLASSES and face["label"] in CLASSES
            assert face["confidence"] == pytest.approx(face["smoothed"][face["label"]], abs=1e-3)
            assert face["raw_label"] == max(face["probs"], key=face["probs"].get)
    rows = rows_of(client.get("/api/log.csv").content)  # the connection is closed: every row is there
    assert list(rows[0]) == columns(CLASSES) and len(rows) == 2
    assert {r["model"] for r in rows} == {hello["model"]["name"]} and [r["frame"] for r in rows] == ["0", "1"]
    (entry,) = client.get("/api/logs").json()["logs"]
    assert entry["name"] == hello["log"] and entry["rows"] == 2 and entry["connection"] == hello["connection"]
    assert client.get(f"/api/logs/{hello['log']}").content == client.get("/api/log.csv").content


def test_bad_frames_get_an_error_and_the_connection_carries_on(tmp_path, tiny_checkpoint):
    app = create_app(web_cfg(tmp_path, tiny_checkpoint, "ui.max_frame_bytes=100000"))
    huge_png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 60000, 60000) + bytes(40)
    with TestClient(app) as client, client.websocket_connect("/ws/live") as ws:
        ws.receive_json()
        for n, (data, message) in enumerate(
            [
                (b"this is not an image", "not a JPEG or PNG"),
                (jpeg()[:3000], "does not decode"),
                (os.urandom(150_000), "over the limit of 100000"),
                (huge_png, "60000x60000"),
            ]
        ):
            ws.send_bytes(data)
            answer = ws.receive_json()
            assert answer["frame"] == n and message in answer["error"]
        ws.send_bytes(jpeg())
        answer = ws.receive_json()
        assert answer["frame"] == 4 and len(answer["faces"]) == 1


def test_two_connections_each_have_their_own_faces_and_log(client):
    with client.websocket_connect("/ws/live") as a, client.websocket_connect("/ws/live") as b:
        hello_a, hello_b = a.receive_json()["hello"], b.receive_json()["hello"]
        assert hello_a["connection"] != hello_b["connection"] and hello_a["log"] != hello_b["log"]
        for _ in range(3):
            a.send_bytes(jpeg(2))
            b.send_bytes(jpeg(1))
            faces_a, faces_b = a.receive_json()["faces"], b.receive_json()["faces"]
            assert sorted(f["id"] for f in faces_a) == [0, 1] and [f["id"] for f in faces_b] == [0]
        b.send_bytes(jpeg(1))
        assert b.receive_json()["frame"] == 3
    logs = {entry["name"]: entry for entry in client.get("/api/logs").json()["logs"]}
    assert logs[hello_a["log"]]["rows"] == 6 and logs[hello_b["log"]]["rows"] == 4
    rows_b = rows_of(client.get(f"/api/logs/{hello_b['log']}").content)
    assert [r["frame"] for r in rows_b] == ["0", "1", "2", "3"] and {r["face_id"] for r in rows_b} == {"0"}


def test_frames_arriving_faster_than_processed_are_skipped_but_all_answered_in_order(client):
    state = client.app.state.web
    predictor = state.catalog.predictor(state.sessions.default)
    predict = predictor.predict

    def slow(*args):
        time.sleep(0.15)
        return predict(*args)

    predictor.predict = slow
    try:
        with client.websocket_connect("/ws/live") as ws:
            ws.receive_json()
            frame = jpeg()
            for _ in range(8):
                ws.send_bytes(frame)
            answers = [ws.receive_json() for _ in range(8)]
    finally:
        predictor.predict = predict
    assert [a["frame"] for a in answers] == list(range(8))
    skipped = [a for a in answers if a.get("skipped")]
    assert skipped and all(set(a) == {"frame", "skipped"} for a in skipped)
    assert "faces" in answers[-1], "the newest frame is always processed"


# ------------------------------------------------------------------------------------------------------ models
@pytest.fixture
def models(tmp_path, tiny_checkpoint) -> dict[str, Path]:
    """Under ui.models_dir: a copy of the tiny model with its run's test metrics, a three-class model, and junk."""
    root = tmp_path / "models" / "train"
    one = root / "run1" / "checkpoints" / "best.ckpt"
    one.parent.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, one)
    (root / "run1" / "test_metrics.json").write_text(json.dumps({"best_checkpoint": str(one), "test/acc": 0.5}))
    three = train_tiny_checkpoint(root / "run2" / "checkpoints" / "best.ckpt", classes=["happy", "sad", "neutral"])
    (root / "junk").mkdir()
    (root / "junk" / "junk.ckpt").write_bytes(b"not a checkpoint")
    return {"one": one, "three": three}


def test_model_list_and_switch_by_id(client, models, tiny_checkpoint):
    listing = client.get("/api/models").json()
    entries = {Path(e["path_hint"]).name if e["kind"] != "bundled" else "bundled": e for e in listing["models"]}
    by_name = {e["name"]: e for e in listing["models"]}
    assert listing["models"][0]["id"] == listing["default"] and listing["models"][0]["name"].endswith("tiny.ckpt")
    assert "junk/junk.ckpt" not in by_name and "run1/best.ckpt" in by_name and "run2/best.ckpt" in by_name
    assert by_name["run1/best.ckpt"]["accuracy"] == 0.5 and by_name["run2/best.ckpt"]["accuracy"] is None
    assert by_name["run2/best.ckpt"]["classes"] == ["happy", "sad", "neutral"]
    assert all(e["kind"] in ("bundled", "checkpoint", "onnx") and len(e["id"]) == 12 for e in entries.values())
    three = by_name["run2/best.ckpt"]["id"]

    for bad in ("0123456789ab", str(models["one"]), "../../etc/passwd"):
        response = client.post("/api/model", json={"id": bad})
        assert response.status_code in (400, 404) and "error" in response.json()
    assert client.post("/api/model", json={"id": "0123456789ab"}).status_code == 404
    assert client.post("/api/model", json={"id": str(tiny_checkpoint)}).status_code == 400

    with client.websocket_connect("/ws/live") as ws:
        hello = ws.receive_json()["hello"]
        switched = client.post("/api/model", json={"id": three, "connection": hello["connection"]}).json()
        assert switched["classes"] == ["happy", "sad", "neutral"] and switched["log"] != hello["log"]
        ws.send_bytes(jpeg())
        answer = ws.receive_json()
        assert answer["model"] == three and list(answer["faces"][0]["probs"]) == ["happy", "sad", "neutral"]
        ws.send_text(json.dumps({"model": hello["model"]["id"]}))
        assert ws.receive_json()["classes"] == CLASSES
        ws.send_text(json.dumps({"model": "/etc/passwd"}))
        assert "never a path" in ws.receive_json()["error"]
        ws.send_bytes(jpeg())
        assert ws.receive_json()["model"] == hello["model"]["id"]
    logs = {e["name"]: e for e in client.get("/api/logs").json()["logs"]}
    assert logs[switched["log"]]["model"] == three and logs[switched["log"]]["rows"] == 1
    assert rows_of(client.get(f"/api/logs/{switched['log']}").content)[0]["model"] == "run2/best.ckpt"

    assert client.post("/api/model", json={"id": three}).json()["classes"] == ["happy", "sad", "neutral"]
    assert client.get("/api/models").json()["default"] == three
    with client.websocket_connect("/ws/live") as ws:
        assert ws.receive_json()["hello"]["model"]["id"] == three
    assert client.post("/api/model", json={"id": three, "connection": 999}).status_code == 404


# ------------------------------------------------------------------------------------------------------ security
def test_a_token_is_required_when_set(tmp_path, tiny_checkpoint):
    with TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint), token="s3cret")) as client:
        assert client.get("/api/info").status_code == 401 and "token" in client.get("/api/info").json()["error"]
        assert client.get("/api/info?token=wrong").status_code == 403
        assert client.get("/api/info?token=s3cret").status_code == 200
        assert client.get("/api/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/log.csv").status_code == 401
        assert client.get("/api/reactions/happy/image").status_code == 401
        assert client.get("/").status_code in (200, 404)  # the page itself carries no data: it passes the token on
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws/live") as ws:
            ws.receive_json()
        with client.websocket_connect("/ws/live?token=s3cret") as ws:
            assert "hello" in ws.receive_json()


def test_other_origins_are_refused(client):
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws/live", headers={"origin": "http://evil.example"}) as ws:  # fmt: skip  # noqa: E501
        ws.receive_json()
    with client.websocket_connect("/ws/live", headers={"origin": "http://testserver"}) as ws:
        assert "hello" in ws.receive_json()
    response = client.post("/api/model", json={"id": "0123456789ab"}, headers={"origin": "http://evil.example"})
    assert response.status_code == 403


def test_reaction_files_are_served_and_fire_on_the_server(tmp_path, tiny_checkpoint):
    cfg = web_cfg(tmp_path, tiny_checkpoint, "reactions.hold_s=0", "reactions.cooldown_s=0", "reactions.skip=[sad]")
    with TestClient(create_app(cfg)) as client:
        image = client.get("/api/reactions/happy/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR).shape == (240, 240, 3)
        sound = client.get("/api/reactions/happy/sound")
        assert sound.status_code == 200 and sound.content[:4] == b"RIFF"
        for path in ("/api/reactions/sad/image", "/api/reactions/joy/sound", "/api/reactions/happy/script"):
            assert client.get(path).status_code == 404
        with client.websocket_connect("/ws/live") as ws:
            ws.receive_json()
            faces = []
            for _ in range(2):  # the label changes, then holds: the reaction fires
                ws.send_bytes(jpeg())
                faces.append(ws.receive_json()["faces"][0])
        assert faces[0]["reaction"] is None
        assert faces[1]["reaction"] == (faces[1]["label"] if faces[1]["label"] != "sad" else None)


# ------------------------------------------------------------------------------------------------------ settings
def test_settings_errors_are_one_line_and_exit_2(tmp_path, tiny_checkpoint, capsys):
    def error_of(fn, *args) -> str:
        with pytest.raises(SystemExit) as stop, user_errors():
            fn(*args)
        assert stop.value.code == 2
        return capsys.readouterr().err

    for override, message in (("port=abc", "ui.port=abc: expected a port number"), ("ui.port=70000", "ui.port=70000")):
        assert message in error_of(check_settings, web_cfg(tmp_path, tiny_checkpoint, override), "realtime")
    cert_only = web_cfg(tmp_path, tiny_checkpoint, f"ui.ssl_certfile={tmp_path / 'cert.pem'}")
    assert "ui.ssl_certfile and ui.ssl_keyfile go together" in error_of(listening, cert_only)
    both = web_cfg(tmp_path, tiny_checkpoint, f"ui.ssl_certfile={tmp_path}/c.pem", f"ui.ssl_keyfile={tmp_path}/k.pem")
    assert f"ui.ssl_certfile={tmp_path}/c.pem: no such file" in error_of(listening, both)
    (tmp_path / "c.pem").write_text("junk")
    (tmp_path / "k.pem").write_text("junk")
    assert "not a usable certificate" in error_of(listening, both)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert "cannot listen on 127.0.0.1:" in error_of(_bind, "127.0.0.1", taken.getsockname()[1])
    bad_ckpt = web_cfg(tmp_path, tmp_path / "missing.ckpt")
    assert "missing.ckpt" in error_of(create_app, bad_ckpt)


def test_another_host_works_without_tls_but_needs_a_token(tmp_path, tiny_checkpoint):
    open_to_all = listening(web_cfg(tmp_path, tiny_checkpoint, "host=0.0.0.0", "port=8123"))
    assert open_to_all.token and len(open_to_all.token) >= 24 and open_to_all.certfile is None
    assert open_to_all.url.startswith("http://") and open_to_all.url.endswith(f":8123/?token={open_to_all.token}")
    assert listening(web_cfg(tmp_path, tiny_checkpoint, "ui.host=0.0.0.0", "ui.token=mine")).token == "mine"
    local = listening(web_cfg(tmp_path, tiny_checkpoint))
    assert local.token is None and local.url == "http://127.0.0.1:8000/"


@pytest.mark.slow  # exports the model, then builds the app in a fresh process
def test_a_server_of_an_onnx_model_runs_without_torch(tmp_path, tiny_checkpoint):
    """The app of an exported model, built, asked for the page's settings, photos, jobs and model list, and sent a
    frame, leaves torch and Lightning unimported: the model picker reads the cards of the bundled checkpoint and of a
    training run's checkpoint without torch (`mimic.models.ckpt_reader`)."""
    onnx = tmp_path / "tiny.onnx"
    export(tiny_checkpoint, onnx)
    (tmp_path / "models" / "run").mkdir(parents=True)
    shutil.copy(tiny_checkpoint, tmp_path / "models" / "run" / "last.ckpt")
    code = (
        "import json, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from conftest import compose\n"
        "from mimic.realtime.web.main import create_app\n"
        "cfg = compose('realtime', json.loads(sys.argv[1]), output_dir=sys.argv[2])\n"
        "heavy = lambda: sorted({'torch', 'lightning', 'torchmetrics'} & set(sys.modules))\n"
        "with TestClient(create_app(cfg)) as client:\n"
        "    for path in ('/api/info', '/api/captures', '/api/finetune', '/api/logs'):\n"
        "        assert client.get(path).status_code == 200, path\n"
        "    with client.websocket_connect('/ws/live') as ws:\n"
        "        assert 'hello' in ws.receive_json()\n"
        "        ws.send_bytes(open(sys.argv[3], 'rb').read())\n"
        "        assert len(ws.receive_json()['faces']) == 1\n"
        "    listed = client.get('/api/models')\n"
        "    assert listed.status_code == 200, listed.text\n"
        "    kinds = sorted(m['kind'] for m in listed.json()['models'])\n"
        "    assert kinds == ['bundled', 'checkpoint', 'onnx'], kinds\n"
        "    assert not heavy(), f'imported {heavy()}'\n"
    )
    overrides = [
        "ui=web",
        f"ckpt={onnx}",
        f"log.path={tmp_path / 'logs'}",
        f"ui.models_dir={tmp_path / 'models'}",
        f"reactions.assets_dir={tmp_path / 'assets'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    (tmp_path / "frame.jpg").write_bytes(jpeg())
    run = [sys.executable, "-c", code, json.dumps(overrides), str(tmp_path / "run"), str(tmp_path / "frame.jpg")]
    subprocess.run(run, check=True, cwd=REPO / "tests", timeout=120)


def imports_in_functions(path: Path) -> list[str]:
    """The imports inside functions of a module that have no ``# start-up:`` reason on the line above them."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import | ast.ImportFrom):
                reason = lines[inner.lineno - 1] + lines[inner.lineno - 2]
                if "# start-up:" not in reason:
                    found.append(f"{path.name}:{inner.lineno}: {lines[inner.lineno - 1].strip()}")
    return found


def test_the_web_modules_import_everything_when_the_server_starts(tmp_path):
    """No request imports a module: everything a handler can need is imported with the app, but for the imports
    kept for start-up time, each with its one-line ``# start-up:`` reason."""
    web = REPO / "src" / "mimic" / "realtime" / "web"
    found = [line for path in sorted(web.rglob("*.py")) for line in imports_in_functions(path)]
    assert not found, "imports inside functions: " + "; ".join(found)
    bad = tmp_path / "bad.py"
    bad.write_text("def handler():\n    import torch\n\n\ndef lazy():\n    # start-up: why\n    import torch\n")
    assert imports_in_functions(bad) == ["bad.py:2: import torch"]


# ------------------------------------------------------------------------------------------------------ sources
def test_a_server_side_video_is_streamed_annotated(tmp_path, tiny_checkpoint):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for _ in range(5):
        writer.write(cv2.imdecode(np.frombuffer(jpeg(), np.uint8), cv2.IMREAD_COLOR))
    writer.release()
    with TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint, f"source={video}", "pace=false"))) as client:
        assert client.get("/api/info").json()["source"] == "server"
        with client.websocket_connect("/ws/source") as ws:
            assert "hello" in ws.receive_json()
            for n in range(5):
                picture = cv2.imdecode(np.frombuffer(ws.receive_bytes(), np.uint8), cv2.IMREAD_COLOR)
                answer = ws.receive_json()
                assert picture.shape == (480, 640, 3) and answer["frame"] == n and len(answer["faces"]) == 1
            assert ws.receive_json() == {"end": True}
        assert len(rows_of(client.get("/api/log.csv").content)) == 5
    with TestClient(create_app(web_cfg(tmp_path, tiny_checkpoint))) as client, client.websocket_connect("/ws/source") as ws:  # fmt: skip  # noqa: E501
        assert "source=browser" in ws.receive_json()["error"]


# ------------------------------------------------------------------------------------------------------ real server
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_the_real_server_answers_over_a_real_websocket_and_stops_on_sigterm(tmp_path, tiny_checkpoint):
    from websockets.sync.client import connect

    port = free_port()
    logs = tmp_path / "logs"
    settings = [f"port={port}", f"ckpt={tiny_checkpoint}", f"log.path={logs}", f"ui.models_dir={tmp_path}",
                f"reactions.assets_dir={tmp_path / 'assets'}", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "realtime.py", "ui=web", *settings], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url, deadline = "", time.monotonic() + 120
        while not url.startswith("http://127.0.0.1:"):  # Hydra's log lines go to stdout too
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            url = line.split(": ", 1)[1].strip() if line.startswith("mimic web page: ") else ""
        assert json.load(urllib.request.urlopen(url + "api/info", timeout=30))["classes"] == CLASSES
        with connect(f"ws://127.0.0.1:{port}/ws/live", origin=f"http://127.0.0.1:{port}") as ws:
            hello = json.loads(ws.recv(timeout=30))["hello"]
            ws.send(jpeg())
            answer = json.loads(ws.recv(timeout=30))
            assert answer["frame"] == 0 and len(answer["faces"]) == 1
            proc.send_signal(signal.SIGTERM)  # mid-connection
            assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    out = "".join(lines.get() for _ in range(lines.qsize()))
    assert "mimic web page stopped" in out and "Traceback" not in proc.stderr.read()
    rows = rows_of((logs / hello["log"]).read_text())
    assert len(rows) == 1 and rows[0]["frame"] == "0"
