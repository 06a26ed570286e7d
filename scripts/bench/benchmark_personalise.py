"""Does teaching it your face from the web page work, and how long does it take? (issue 13)

    python scripts/bench/benchmark_personalise.py [ckpt=model.ckpt] [fer2013=../shared/data/fer2013/fer2013.csv.gz]
        [classes=happy,sad,surprise] [photos=20] [epochs=N] [seed=0] [out=DIR] [json=result.json] [save_frames=true]

Simulates one user making three expressions: one synthetic person (`mimic.data.synthetic`, face shape, skin tone,
hair and glasses fixed, only the expression and its strength varying) pasted into 640x480 frames of a plain wall, with
head pose (tilt, size, place) and lighting (brightness, contrast, a light gradient across the frame, sensor noise)
changing from photo to photo. ``photos`` frames per class go through the real server's API
(``POST /api/captures``, in-process through FastAPI's test client), a fine-tuning job with the page's defaults
(FER2013 merged) is started with ``POST /api/finetune`` and runs in its own process as on the page; the script prints
the job's report, the old and the new model's accuracy on the held-out photos and on FER2013's test split restricted
to the run's classes, and the job's wall time (from the request until the report is there). Run it alone on the
machine: the wall time is the figure.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from mimic.args import Key, boolean, parse, strings
from mimic.cli import user_errors
from mimic.data.synthetic import draw_face
from mimic.realtime.web.main import create_app

REPO = Path(__file__).resolve().parents[2]
WALL = 165.0  # the wall's gray level behind the person
PERSON = {  # one face shape, skin, hair; draw_face's fixed variations
    "face_aspect": 1.05,
    "eye_dx": 0.02,
    "eye_dy": -0.01,
    "mouth_dy": 0.02,
    "hair": 2,
    "grin": False,
    "skin": 150.0,
    "skin_tint": (0.8, 0.95, 1.15),
    "hair_level": 40.0,
    "hair_tint": (0.9, 0.95, 1.1),
    "background": WALL,
    "background_tint": (1.0, 1.0, 1.0),
    "flip": False,
    "rotation": 0.0,
    "shift": (0.0, 0.0),
    "scale": 1.0,
    "contrast": 1.0,
    "brightness": 0.0,
    "gradient": (0.0, 0.0),
    "noise": 0.0,
    "blur": 0.0,
}


def glasses(face: np.ndarray, person: dict) -> np.ndarray:
    """Draw the person's glasses on a canonical `draw_face` image (eyes at ±0.37, -0.18 head half-widths)."""
    size = face.shape[0]
    unit, cx, cy = 0.35 * size, (size - 1) / 2, size * 0.49
    eye_y = cy + (-0.18 + person["eye_dy"]) * unit
    out = face.copy()
    thick = max(2, size // 90)
    for side in (-1, 1):
        x = cx + side * (0.37 + person["eye_dx"]) * unit
        cv2.ellipse(out, (round(x), round(eye_y)), (round(0.27 * unit), round(0.2 * unit)), 0, 0, 360, (30, 30, 30),
                    thick, cv2.LINE_AA)  # fmt: skip
    inner, x, y = round((0.37 + person["eye_dx"] - 0.27) * unit), round(cx), round(eye_y)
    cv2.line(out, (x - inner, y), (x + inner, y), (30, 30, 30), thick, cv2.LINE_AA)
    return out


def frame(expression: str, rng: np.random.Generator, width: int = 640, height: int = 480) -> np.ndarray:
    """One webcam frame: the person showing ``expression`` (at a random strength) at a random pose and lighting."""
    size = int(rng.uniform(0.45, 0.7) * height)
    face = draw_face(expression, size, rng, bgr=True, intensity=rng.uniform(0.8, 1.15), **PERSON)
    face = glasses(face, PERSON)
    img = np.full((height, width, 3), WALL, np.uint8)
    x, y = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
    m = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), rng.uniform(-12, 12), 1.0)
    m[:, 2] += (x, y)
    img = cv2.warpAffine(face, m, (width, height), dst=img, borderMode=cv2.BORDER_TRANSPARENT)
    out = img.astype(np.float32) * rng.uniform(0.7, 1.2) + rng.uniform(-30, 30)
    gx, gy = rng.uniform(-50, 50, 2)
    out += gx * np.linspace(-0.5, 0.5, width)[None, :, None] + gy * np.linspace(-0.5, 0.5, height)[:, None, None]
    out += rng.standard_normal(out.shape, dtype=np.float32) * rng.uniform(2, 6)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_client(out: Path, ckpt: str | None, fer2013: Path) -> TestClient:
    """The real web app (``realtime.py ui=web``) in-process, its captures and jobs under ``out``."""
    overrides = [
        "ui=web",
        f"ui.models_dir={out / 'outputs'}",
        f"paths.data_dir={out / 'data'}",
        f"++ui.personalise.fer2013={fer2013.resolve()}",
        f"log.path={out}",
        "display=false",
        "reactions.sound=false",
        *([f"ckpt={Path(ckpt).resolve()}"] if ckpt else []),
    ]
    GlobalHydra.instance().clear()
    with initialize_config_module("mimic.conf", version_base="1.3"):
        cfg = compose("realtime", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out / "run")
        cfg.hydra.runtime.cwd = str(Path.cwd())
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return TestClient(create_app(cfg))


def run(args: SimpleNamespace) -> dict:
    out = Path(args.out or tempfile.mkdtemp(prefix="mimic-personalise-")).expanduser()
    rng = np.random.default_rng(args.seed)
    with make_client(out, args.ckpt, Path(args.fer2013)) as client:
        saved = {}
        for label in args.classes:
            saved[label] = 0
            tries = 0
            while saved[label] < args.photos:
                tries += 1
                data = cv2.imencode(".jpg", frame(label, rng), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                r = client.post("/api/captures", data={"class": label}, files={"file": ("f.jpg", data, "image/jpeg")})
                if r.status_code == 200:
                    saved[label] += 1
                elif r.status_code != 422 or tries > 5 * args.photos:
                    raise SystemExit(f"capture failed: {r.status_code} {r.text}")
            print(f"{label}: {saved[label]} photos saved of {tries} frames (the rest had no face found)")
        if args.save_frames:
            for label in args.classes:
                cv2.imwrite(str(out / f"frame_{label}.jpg"), frame(label, rng))
        options = client.get("/api/finetune/options").json()
        if "error" in options:
            raise SystemExit(f"options: {options['error']}")
        print(f"base model {options['model']}: FER2013 on disk: {options['fer2013']['found']}")
        settings = {"epochs": args.epochs} if args.epochs else {}
        start = time.perf_counter()
        r = client.post("/api/finetune", json=settings)
        if r.status_code != 200:
            raise SystemExit(f"fine-tune: {r.status_code} {r.text}")
        job = r.json()["id"]
        while (status := client.get(f"/api/finetune/{job}").json())["state"] == "running":
            time.sleep(0.5)
        wall = time.perf_counter() - start
    if status["state"] != "done":
        raise SystemExit(f"the job ended {status['state']}: {status.get('error')} (log: {out})")
    report = status["report"]
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    print(f"\njob {job}: {status['settings']}, classes {status['classes']}")
    epochs = ", ".join(f"{h['time'] - status['created']:.0f}" for h in status["history"])
    phases = ", ".join(f"{name} {t - status['created']:.0f}" for name, t in status["phases"])
    print(f"wall time {wall:.1f} s; seconds from the request: {phases}; epochs ended {epochs}")
    print(f"job folder: {out / 'outputs' / 'personalise' / job}")
    print(f"  {'accuracy on':<44}{'before':>8}{'after':>8}")
    rows = [("held_out", f"held-out photos ({report['after']['held_out']['n']})")]
    if "fer2013" in report["after"]:
        rows.append(("fer2013", f"FER2013 PrivateTest ({report['after']['fer2013']['n']}, run's classes)"))
    for key, name in rows:
        print(f"  {name:<44}{fmt(report['before'][key]['accuracy']):>8}{fmt(report['after'][key]['accuracy']):>8}")
    result = {"wall_s": round(wall, 1), "job": job, "settings": status["settings"], "classes": status["classes"],
              "photos": saved, "report": report, "folder": str(out)}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


KEYS = {
    "ckpt": Key(str, None, "the model to start from (default: the server's default, the bundled model)"),
    "fer2013": Key(str, str(REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"), "FER2013"),
    "classes": Key(strings, ["happy", "sad", "surprise"], "the expressions the user makes"),
    "photos": Key(int, 20, "photos per class"),
    "epochs": Key(int, None, "fine-tuning epochs (default: the page's, src/mimic/conf/finetune/webcam.yaml)"),
    "seed": Key(int, 0, "seed of the frames"),
    "out": Key(str, None, "where captures, the job and its model go (default: a new temporary folder)"),
    "json": Key(str, None, "also write the figures to this JSON file"),
    "save_frames": Key(boolean, False, "also save one example frame per class in out"),
}


def main(argv: list[str] | None = None) -> None:
    with user_errors():
        run(parse(argv, KEYS, __doc__))


if __name__ == "__main__":
    main()
