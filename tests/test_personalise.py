"""The web page's personalise API (issue 13) through FastAPI's test client on the real app: photos saved through the
capture path with counts and no overwrite, names from a client that never leave the captures folder, typed job
settings, and real fine-tuning jobs in their own process: the report and the switch to the new model, a job cancelled
mid-run that leaves no half-written checkpoint, and a restarted server that finds its jobs again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import compose
from fastapi.testclient import TestClient
from test_folders import write_fer2013_csv

from mimic.data.synthetic import draw_scene
from mimic.jobs import process_runs
from mimic.models.checkpoint import read_card
from mimic.realtime.web.main import create_app

CLASSES = ["happy", "sad"]


def jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def face_frames(label: str, n: int, seed: int = 0) -> list[bytes]:
    """``n`` 640x480 webcam frames of one synthetic face showing ``label``, moving a little."""
    rng = np.random.default_rng([seed, len(label)])
    return [jpeg(draw_scene([(label, (180 + 12 * i, 90 + 5 * i, 230, 230))], 640, 480, rng=rng)) for i in range(n)]


def make_app(tmp: Path, ckpt: Path):
    cfg = compose(
        "realtime",
        [
            "ui=web",
            f"ckpt={ckpt}",
            f"ui.models_dir={tmp / 'outputs'}",
            f"paths.data_dir={tmp / 'data'}",
            "display=false",
            "reactions.sound=false",
            f"log.path={tmp / 'logs'}",
        ],
        output_dir=tmp / "run",
    )
    return create_app(cfg)


@pytest.fixture
def client(tmp_path, tiny_checkpoint):
    """A server of the tiny model (exported for onnxruntime once per session, into the session's cache folder)."""
    with TestClient(make_app(tmp_path, tiny_checkpoint)) as c:
        yield c


def post_photo(client: TestClient, label: str, data: bytes):
    return client.post("/api/captures", data={"class": label}, files={"file": ("frame.jpg", data, "image/jpeg")})


def test_photos_are_cropped_numbered_counted_and_never_overwrite(client, tmp_path):
    webcam = tmp_path / "data" / "webcam"
    for data in face_frames("happy", 2):
        r = post_photo(client, "Happiness", data)  # a synonym: the canonical class
        assert r.status_code == 200, r.text
    assert r.json() == {"saved": "0001.png", "class": "happy", "folder": "0_happy", "face": True,
                        "counts": {"happy": 2}}  # fmt: skip
    mine = webcam / "0_happy" / "0002.png"
    mine.write_bytes(b"my own photo")  # a file that came meanwhile keeps its bytes
    assert post_photo(client, "happy", face_frames("happy", 1)[0]).json()["saved"] == "0003.png"
    assert mine.read_bytes() == b"my own photo"
    assert post_photo(client, "sad", face_frames("sad", 1)[0]).json()["folder"] == "1_sad"
    crop = cv2.imread(str(webcam / "0_happy" / "0000.png"))
    assert crop.shape == (128, 128, 3)  # the capture script's eye-framed crop, not the frame

    listing = client.get("/api/captures").json()
    assert [(c["name"], c["folder"], c["count"]) for c in listing["classes"]] == [("happy", "0_happy", 4),
                                                                                  ("sad", "1_sad", 1)]  # fmt: skip
    assert listing["classes"][0]["files"] == ["0000.png", "0001.png", "0002.png", "0003.png"]
    r = client.get("/api/captures/happy/0000.png")
    assert r.status_code == 200 and r.content == (webcam / "0_happy" / "0000.png").read_bytes()

    r = client.delete("/api/captures/happy/0001.png")
    assert r.status_code == 200 and r.json()["counts"] == {"happy": 3, "sad": 1}
    assert not (webcam / "0_happy" / "0001.png").exists()


def test_a_photo_without_a_face_or_not_an_image_is_not_saved(client, tmp_path):
    r = post_photo(client, "happy", jpeg(np.full((480, 640, 3), 90, np.uint8)))
    assert r.status_code == 422 and r.json()["face"] is False and "no face found" in r.json()["error"]
    r = post_photo(client, "happy", b"not a picture")
    assert r.status_code == 400 and "not a JPEG or PNG" in r.json()["error"]
    assert client.post("/api/captures", data={"class": "happy"}).status_code == 400  # no file
    assert not (tmp_path / "data" / "webcam").exists()


@pytest.mark.parametrize("label", ["../escape", "..", "a/b", "a\\b", ".hidden", "unsorted", "", "x" * 40, "Ünï"])
def test_a_class_name_never_leads_out_of_the_captures_folder(client, tmp_path, label):
    r = post_photo(client, label, face_frames("happy", 1)[0])
    assert r.status_code == 400 and "is not a class name" in r.json()["error"]
    assert not (tmp_path / "data").exists() and not [p for p in tmp_path.parent.rglob("*escape*")]


@pytest.mark.parametrize(
    "path", ["happy/..%2F..%2Fsecret.png", "happy/.0000.png", "happy/0000.txt", "..%2Fhappy/0000.png", "happy/nope.png"]
)
def test_a_file_name_never_leads_out_of_its_class_folder(client, tmp_path, path):
    post_photo(client, "happy", face_frames("happy", 1)[0])
    secret = tmp_path / "data" / "secret.png"
    secret.write_bytes(b"not yours")
    for method in (client.get, client.delete):
        r = method(f"/api/captures/{path}")
        assert r.status_code in (400, 404) and "error" in r.json(), r.text
    assert secret.read_bytes() == b"not yours" and (tmp_path / "data" / "webcam" / "0_happy" / "0000.png").is_file()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"epochs": "6"}, "epochs: Input should be a valid integer"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
        ({"epochs": 1000}, "epochs: Input should be less than or equal to 100"),
        ({"epochs": 2.5}, "epochs: Input should be a valid integer"),
        ({"freeze": "conv1"}, "freeze: Input should be a valid list"),
        ({"freeze": ["conv9"]}, "freeze: ['conv9'] are not parts of this model; choose from ['conv1', 'conv2'"),
        ({"fer2013": "yes"}, "fer2013: Input should be a valid boolean"),
        ({"fer2013": True}, "FER2013 is not on disk"),
        ({"lr": 1}, "lr: Extra inputs are not permitted"),
        ({"model": "../../etc/passwd"}, "a model is named by its id"),
        ({"model": "0123456789ab"}, "no model has the id 0123456789ab"),
        ([1, 2], "Input should be a valid dictionary"),
        ({}, "at least 2 different photos: take some first"),
    ],
)
def test_job_settings_are_typed_and_checked_before_anything_starts(client, tmp_path, body, message):
    r = client.post("/api/finetune", json=body)
    assert r.status_code in (400, 404) and message in r.json()["error"], r.text
    assert client.get("/api/finetune").json() == {"jobs": []}


def test_too_few_photos_of_a_class_is_refused(client):
    for data in face_frames("happy", 4):
        post_photo(client, "happy", data)
    post_photo(client, "sad", face_frames("sad", 1)[0])
    r = client.post("/api/finetune", json={})
    assert r.status_code == 400 and "these have fewer: sad (1)" in r.json()["error"]
    options = client.get("/api/finetune/options").json()
    assert options["freeze"] == {"choices": ["conv1", "conv2", "conv3"], "default": ["conv1", "conv2"]}
    assert options["fer2013"]["found"] is False and options["classes"][3] == "happy"


def wait(client: TestClient, job: str, done, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/finetune/{job}").json()
        if done(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"job {job} did not get there in {timeout} s: {status}")


@pytest.mark.slow
def test_jobs_report_switch_cancel_and_are_found_after_a_restart(tmp_path, tiny_checkpoint, monkeypatch):
    """Two real jobs in their own processes (tiny model, synthetic FER2013 merged): one runs to its report and its model
    goes live; one is cancelled mid-run and leaves no model and no half-written file; a new server finds both."""
    monkeypatch.setenv("MIMIC_CACHE_DIR", str(tmp_path / "cache"))
    write_fer2013_csv(tmp_path / "data" / "fer2013" / "fer2013.csv", {"Training": 6, "PublicTest": 2, "PrivateTest": 2})
    with TestClient(make_app(tmp_path, tiny_checkpoint)) as client:
        for label in CLASSES:
            for data in face_frames(label, 6):
                assert post_photo(client, label, data).status_code == 200
        assert client.get("/api/finetune/options").json()["fer2013"]["found"] is True
        r = client.post("/api/finetune", json={"epochs": 2, "freeze": ["conv1"]})
        assert r.status_code == 200, r.text
        first = r.json()["id"]
        assert client.post("/api/finetune", json={}).status_code == 409  # one job at a time
        done = wait(client, first, lambda s: s["state"] != "running")
        assert done["state"] == "done", done
        assert done["classes"] == read_card(tiny_checkpoint)[0].class_names  # the model's classes, FER2013 merged
        assert done["settings"] == {"epochs": 2, "freeze": ["conv1"], "fer2013": True}
        assert [h["epoch"] for h in done["history"]] == [1, 2] and "acc" in done["metrics"]
        assert done["captured"] == {c: {"test": 2, "val": 1, "train": 3} for c in CLASSES}
        report = done["report"]
        for when in ("before", "after"):
            held = report[when]["held_out"]
            assert held["n"] == 4 and sum(map(sum, held["confusion"])) == 4 and 0 <= held["accuracy"] <= 1
            assert report[when]["fer2013"]["n"] == 14  # PrivateTest: 2 faces of each of the 7 classes
        new = done["model"]
        assert new["classes"] == done["classes"]
        assert new["id"] in {m["id"] for m in client.get("/api/models").json()["models"]}
        r = client.post("/api/model", json={"id": new["id"]})
        assert r.status_code == 200 and r.json()["model"]["id"] == new["id"]

        second = client.post("/api/finetune", json={"epochs": 100}).json()["id"]
        wait(client, second, lambda s: s["step"] >= 2 or s["state"] != "running")
        r = client.delete(f"/api/finetune/{second}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert client.delete(f"/api/finetune/{second}").status_code == 409
        folder = tmp_path / "outputs" / "personalise" / second
        pid = json.loads((folder / "job.json").read_text())["pid"]
        deadline = time.monotonic() + 60
        while process_runs(pid, folder) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # the server's clean-up after the process
        assert not (folder / "personalised.ckpt").exists()
        for ckpt in folder.rglob("*.ckpt"):  # what was written is whole
            read_card(ckpt)
        assert not [p for p in folder.rglob("*") if p.name.endswith(".part")]
        listed = {m["path_hint"] for m in client.get("/api/models").json()["models"]}
        assert not [h for h in listed if second in h]

    with TestClient(make_app(tmp_path, tiny_checkpoint)) as client:  # a restarted server
        jobs = client.get("/api/finetune").json()["jobs"]
        assert [(j["id"], j["state"]) for j in jobs] == [(second, "cancelled"), (first, "done")]
        assert jobs[1]["model"]["id"] == new["id"] and jobs[1]["report"] == report
        assert client.post("/api/model", json={"id": new["id"]}).status_code == 200


def test_the_users_mistakes_are_400_and_what_is_not_there_404(client, tmp_path):
    """One error convention with the rest of the server: a `UserError` (here the captures folder's layout) is 400,
    a job or photo that does not exist 404."""
    webcam = tmp_path / "data" / "webcam"
    (webcam / "0_happy").mkdir(parents=True)
    (webcam / "1_happy").mkdir()
    r = client.get("/api/captures")
    assert r.status_code == 400 and "name the same class" in r.json()["error"]
    for method in (client.get, client.delete):
        assert method("/api/finetune/20240101-000000").status_code == 404
        assert method("/api/finetune/..%2F..%2Fetc").status_code == 404
