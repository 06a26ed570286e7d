"""The web page's server: a FastAPI app around the realtime pipeline (`create_app`), and `serve`, which runs it on
uvicorn for ``python realtime.py ui=web``.

Each WebSocket connection gets its own `Pipeline` (tracker, smoothers, reactions' timing, CSV log), built from the
same config as the window's. A reader task puts what the client sends into the connection's `Inbox`; the answering
loop takes everything waiting, processes only the newest frame and answers each older one ``skipped``, so latency
never piles up, and every frame gets exactly one answer, in order. All processing (decoding, detection,
classification) runs on one worker thread, since detectors and predictors are not thread-safe; the event loop only
receives and sends. Predictors are loaded once per model file and shared; clients name models by the ids
`Models.scan` gave them, never by path. The endpoints and messages are documented in README.md's "Web page" section.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import struct
import threading
import time
import webbrowser
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.requests import HTTPConnection
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

import mimic
from mimic.errors import UserError
from mimic.faces import Detection
from mimic.io import new_file
from mimic.models.bundled import bundled_path, resolve_ckpt
from mimic.models.onnx_model import is_onnx, read_onnx_card
from mimic.realtime import overlay
from mimic.realtime.app import _build, _run_dir, load_predictor
from mimic.realtime.pipeline import FrameResult, Pipeline
from mimic.realtime.sources import open_source

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MODEL_SUFFIXES = (".ckpt", ".onnx")
SCAN_DEPTH, SCAN_FILES = 8, 500  # how deep and how many model files the picker looks for under ui.models_dir
PREDICTORS_KEPT = 4
MAX_PIXELS = 4096 * 4096  # a frame's header may not ask for more (a small file can decode to a huge image)
ID = re.compile(r"[0-9a-f]{12}")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


# ------------------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelEntry:
    """A model a client may choose: ``id`` a hash of its resolved path; ``path`` never leaves the server."""

    id: str
    name: str
    kind: str  # bundled, checkpoint or onnx
    classes: list[str]
    accuracy: float | None
    path_hint: str
    path: Path
    stamp: tuple[int, int]  # mtime and size: a rewritten file (last.ckpt) is read again

    def to_json(self) -> dict[str, Any]:
        keys = ("id", "name", "kind", "classes", "accuracy", "path_hint")
        return {k: getattr(self, k) for k in keys}


def _accuracy(path: Path, about: dict) -> float | None:
    """The test accuracy the card states (the bundled model), or the one the training run's test_metrics.json beside
    the checkpoint's folder states for this file."""
    test = about.get("test")
    if isinstance(test, dict) and isinstance(test.get("accuracy"), int | float):
        return float(test["accuracy"])
    for metrics in (path.parent / "test_metrics.json", path.parent.parent / "test_metrics.json"):
        try:
            report = json.loads(metrics.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or not isinstance(report.get("test/acc"), int | float):
            continue
        named = report.get("best_checkpoint") or report.get("checkpoint")
        if named and Path(str(named)).name == path.name:
            return round(float(report["test/acc"]), 4)
    return None


def _hint(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd().resolve()))
    with contextlib.suppress(ValueError):
        return str(Path("mimic") / path.relative_to(Path(mimic.__file__).resolve().parent))
    return path.name


class Models:
    """The models a client may choose: the run's ``ckpt=`` (the default), the bundled model and every ``*.ckpt`` /
    ``*.onnx`` under ``ui.models_dir``, rescanned by `scan`; each file's card is read once (again when it changes) and
    a file that is not a readable mimic model is skipped with a log line. `predictor` loads each model once."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        root = cfg.ui.get("models_dir")
        self.root = Path(str(root)).expanduser() if root else None
        self._cards: dict[Path, tuple[tuple[int, int], ModelEntry | None]] = {}
        self._predictors: OrderedDict[tuple[str, tuple[int, int]], Any] = OrderedDict()
        self._scan_lock = threading.Lock()
        # held while a model loads (a predictor, or a net personalise inspects): one thread at a time imports torch's
        # and onnxruntime's modules, which are not safe to import from two threads at once
        self.loading = threading.Lock()
        self.default = self.entry(resolve_ckpt(cfg.get("ckpt")), strict=True)
        self.entries: dict[str, ModelEntry] = {self.default.id: self.default}

    def entry(self, path: Path, strict: bool = False) -> ModelEntry | None:
        """The entry of a model file; None (logged) for one that cannot be read, unless ``strict``."""
        path = path.expanduser().resolve()
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if (cached := self._cards.get(path)) and cached[0] == stamp:
                return cached[1]
            if is_onnx(path):
                card = read_onnx_card(path)
            else:
                with self.loading:
                    from mimic.models.checkpoint import read_card  # imports torch: not for an ONNX model alone

                    card = read_card(path)[0]
        except OSError as e:
            if strict:
                raise UserError(f"ckpt={path}: {e.strerror}") from None
            log.info("model picker: skipping %s (%s)", path, e)
            return None
        except UserError as e:
            if strict:
                raise
            log.info("model picker: skipping %s (%s)", path, e)
            return None
        bundled = False
        with contextlib.suppress(UserError):
            bundled = path == bundled_path().resolve()
        kind = "bundled" if bundled else "onnx" if is_onnx(path) else "checkpoint"
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        name = f"{path.stem} (bundled)" if bundled else f"{folder.name}/{path.name}"
        model_id = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        accuracy = _accuracy(path, card.about)
        entry = ModelEntry(model_id, name, kind, list(card.class_names), accuracy, _hint(path), path, stamp)
        self._cards[path] = (stamp, entry)
        return entry

    def _files(self) -> list[Path]:
        if self.root is None or not self.root.is_dir():
            return []
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.root):  # symlinked folders are not followed
            depth = len(Path(folder).relative_to(self.root).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and depth < SCAN_DEPTH)
            found += [Path(folder, f) for f in sorted(files) if f.lower().endswith(MODEL_SUFFIXES)]
            if len(found) >= SCAN_FILES:
                log.warning("model picker: more than %d model files under %s; listing the first", SCAN_FILES, self.root)
                break
        stamps = {p: p.stat().st_mtime if p.exists() else 0 for p in found[:SCAN_FILES]}
        return sorted(stamps, key=stamps.get, reverse=True)  # the newest (a fresh fine-tune) first

    def scan(self) -> list[ModelEntry]:
        """Every model on offer now: the default first, the bundled model, then the newest files first."""
        with self._scan_lock:
            paths = []
            with contextlib.suppress(UserError):
                paths.append(bundled_path())
            entries: dict[str, ModelEntry] = {}
            for entry in [self.default] + [self.entry(p) for p in paths + self._files()]:
                if entry is not None:
                    entries.setdefault(entry.id, entry)
            self.entries = entries
            return list(entries.values())

    def get(self, model_id: Any) -> ModelEntry:
        """The entry of an id from `scan`: 400 for anything that is not an id (a path is never opened), 404 for an
        unknown one."""
        if not isinstance(model_id, str) or not ID.fullmatch(model_id):
            raise HTTPException(400, "a model is named by its id (12 hex digits, from GET /api/models), never a path")
        if model_id not in self.entries:
            self.scan()
        if model_id not in self.entries:
            raise HTTPException(404, f"no model has the id {model_id}: GET /api/models lists them")
        return self.entries[model_id]

    def predictor(self, entry: ModelEntry) -> Any:
        """The entry's predictor, loaded once (the last few used are kept)."""
        key = (entry.id, entry.stamp)
        with self.loading:
            if key not in self._predictors:
                log.info("loading %s", entry.path)
                self._predictors[key] = load_predictor(self.cfg, entry.path)
                while len(self._predictors) > PREDICTORS_KEPT:
                    self._predictors.popitem(last=False)
            self._predictors.move_to_end(key)
            return self._predictors[key]


# ------------------------------------------------------------------------------------------------------------ frames
def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's or a JPEG's header; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame: precision, height, width
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        else:
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def decode(data: bytes) -> np.ndarray:
    """A JPEG or PNG frame -> BGR image; `ValueError` saying why not. The header's size is checked first."""
    size = image_size(data)
    if size is None:
        raise ValueError("not a JPEG or PNG image")
    if size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"a {size[0]}x{size[1]} image is larger than the {MAX_PIXELS} pixels a frame may have")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the image does not decode (damaged or cut short?)")
    return image


def _probs(names: list[str], values: np.ndarray) -> dict[str, float]:
    return {name: round(float(v), 4) for name, v in zip(names, values, strict=True)}


def answer(n: int, result: FrameResult, detections: list[Detection], names: list[str], model: str, shape, ms) -> dict:
    """The JSON answer to frame ``n``: its faces (``detections`` are in the faces' order) and how long it took."""
    faces = [
        {
            "id": f.id,
            "box": [int(v) for v in f.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in d.landmarks] if d.landmarks else None,
            "label": f.label,
            "confidence": round(f.conf, 4),
            "raw_label": f.raw_label,
            "probs": _probs(names, f.probs),
            "smoothed": _probs(names, f.smoothed),
            "reaction": f.reaction,
        }
        for f, d in zip(result.faces, detections, strict=True)
    ]
    size = {"width": shape[1], "height": shape[0]}
    return {"frame": n, "faces": faces, "server_ms": round(ms, 2), **size, "model": model}


@dataclass
class Frame:
    n: int
    data: bytes
    time: float  # seconds since the connection opened, when it arrived: the reactions' clock


@dataclass
class Command:
    text: str


@dataclass
class Reply:
    message: dict


class Inbox:
    """What a connection received and has not answered yet, in arrival order; `take` empties it."""

    def __init__(self) -> None:
        self.items: list[Frame | Command | Reply] = []
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, item: Frame | Command | Reply) -> None:
        self.items.append(item)
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    async def take(self) -> list[Frame | Command | Reply]:
        """Everything waiting, once there is something; [] once the client is gone."""
        await self.ready.wait()
        items, self.items = self.items, []
        if not self.closed:
            self.ready.clear()
        return items


# ------------------------------------------------------------------------------------------------------- connections
@dataclass
class LogFile:
    csv: Any  # the connection's CsvLog
    connection: int
    model: str
    started: str

    def to_json(self) -> dict[str, Any]:
        path = self.csv.path
        return {"name": path.name, "connection": self.connection, "rows": self.csv.rows, "model": self.model,
                "started": self.started}  # fmt: skip


@dataclass
class Connection:
    id: int
    entry: ModelEntry | None = None
    pipeline: Pipeline | None = None
    inbox: Inbox = field(default_factory=Inbox)
    t0: float = field(default_factory=time.monotonic)


class ChooseModel(BaseModel):
    id: str
    connection: int | None = None


class WebApp:
    """The server's state: the models, the live connections, their logs and the reactions' files; ``worker`` is the
    one thread all frames are processed on."""

    def __init__(self, cfg: DictConfig, token: str | None) -> None:
        self.cfg, self.ui, self.token = cfg, cfg.ui, token
        self.models = Models(cfg)
        self.default = self.models.default
        self.connections: dict[int, Connection] = {}
        self.logs: dict[str, LogFile] = {}
        self.assets: dict[str, tuple[Path | None, Path | None]] = {}  # class -> (picture, sound)
        self.ids = itertools.count(1)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="mimic-web")
        self.source_busy = False
        self.source = None if str(cfg.source) == "browser" else cfg.source
        given = cfg.log.get("path")
        path = Path(str(given)).expanduser() if given else None
        if path is None or path.is_dir() or not path.suffix:
            self.log_dir, self.log_stem = path or _run_dir(), "faces-web"
        else:
            self.log_dir, self.log_stem = path.parent, path.stem
        self.reactions(self.default.classes)  # a bad reactions setting fails now, not at the first connection

    async def run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    # ----------------------------------------------------------------------------------------------- security
    def authorize(self, request: HTTPConnection) -> None:
        """Every /api and /ws request: a browser's Origin must be this server, and the token must come along when
        there is one (``?token=`` or ``Authorization: Bearer``)."""
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, f"requests from pages of other sites are refused (origin {origin})")
        if self.token is None:
            return
        given = request.query_params.get("token")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        given = given or (bearer.strip() if scheme.lower() == "bearer" else None)
        if not given:
            raise HTTPException(401, "this server needs its token: open the address it printed (…/?token=…)")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise HTTPException(403, "wrong token: open the address the server printed")

    async def admit(self, ws: WebSocket) -> bool:
        try:
            self.authorize(ws)
        except HTTPException as e:
            log.warning("WebSocket refused: %s", e.detail)
            await ws.close(code=1008, reason=e.detail[:120])
            return False
        return True

    # ----------------------------------------------------------------------------------------------- pipelines
    def reactions(self, names: list[str]) -> Any:
        """A connection's reactions (timing only: the page shows and plays them), their files noted for the
        /api/reactions endpoints; None when reactions are off."""
        r = self.cfg.reactions
        if not r.enabled:
            return None
        reactions = _build(r, class_names=names, players=False)
        for name in names:
            self.assets[name] = (reactions.images.get(name), reactions.sounds.get(name))
        return reactions

    def use(self, conn: Connection, entry: ModelEntry) -> dict:
        """Give ``conn`` a new pipeline (and a new CSV log) for ``entry``'s model; on the worker. The model's
        predictor must be loaded already (`Models.predictor`, off the worker)."""
        predictor = self.models.predictor(entry)
        names = list(predictor.class_names)
        reactions, csv = self.reactions(names), None
        if self.cfg.log.enabled:
            path = new_file(self.log_dir / f"{self.log_stem}-{conn.id}.csv", "log.path", "faces.csv")
            csv = _build(self.cfg.log, path=path, class_names=names, model=entry.name)
        try:
            pipeline = Pipeline.from_config(self.cfg, predictor, None, reactions, csv)
        except BaseException:
            if csv is not None:
                csv.close()
            raise
        if csv is not None:
            started = datetime.now().astimezone().isoformat(timespec="seconds")
            self.logs[csv.path.name] = LogFile(csv, conn.id, entry.id, started)
        self.close_pipeline(conn)
        conn.pipeline, conn.entry = pipeline, entry
        return {"model": entry.to_json(), "classes": names, "log": csv.path.name if csv else None}

    @staticmethod
    def close_pipeline(conn: Connection) -> None:
        if conn.pipeline is not None:
            for part in (conn.pipeline.log, conn.pipeline.reactions):
                if part is not None:
                    part.close()
            conn.pipeline = None

    async def switch(self, conn: Connection, entry: ModelEntry) -> dict:
        await asyncio.to_thread(self.models.predictor, entry)  # a slow load keeps the worker free for the others
        return await self.run(self.use, conn, entry)

    async def open(self) -> tuple[Connection, dict]:
        conn = Connection(next(self.ids))
        hello = await self.switch(conn, self.default)
        self.connections[conn.id] = conn
        return conn, {"hello": {"connection": conn.id, **hello}}

    async def close(self, conn: Connection) -> None:
        self.connections.pop(conn.id, None)
        try:
            await self.run(self.close_pipeline, conn)
        except RuntimeError:  # the worker has stopped (the server is shutting down)
            self.close_pipeline(conn)

    @staticmethod
    def step(conn: Connection, image: np.ndarray, t: float, n: int, t0: float) -> tuple[FrameResult, dict]:
        """Frame ``n`` through the connection's pipeline: the result and the answer (``t0``: when work on it began)."""
        pipeline = conn.pipeline
        detections = pipeline.detect(image)
        result = pipeline.step(image, t, detections)
        ms = (time.perf_counter() - t0) * 1000
        return result, answer(n, result, detections, pipeline.class_names, conn.entry.id, image.shape, ms)

    def process(self, conn: Connection, frame: Frame) -> dict:
        """Decode and process a frame the client sent; on the worker."""
        t0 = time.perf_counter()
        try:
            image = decode(frame.data)
        except ValueError as e:
            return {"frame": frame.n, "error": str(e)}
        return self.step(conn, image, frame.time, frame.n, t0)[1]

    async def command(self, conn: Connection, text: str) -> dict:
        """A text message: ``{"model": id}`` switches the connection's model."""
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict) or "model" not in message:
            return {"error": 'a text message is JSON: {"model": "<id from GET /api/models>"}'}
        try:
            return await self.switch(conn, self.models.get(message["model"]))
        except HTTPException as e:
            return {"error": e.detail}
        except UserError as e:
            return {"error": str(e)}

    # ----------------------------------------------------------------------------------------------- streams
    async def receive(self, ws: WebSocket, conn: Connection) -> None:
        """Put what the client sends into the connection's inbox until it goes; frames are numbered from 0."""
        limit, n = int(self.ui.max_frame_bytes), 0
        try:
            while (message := await ws.receive())["type"] != "websocket.disconnect":
                data = message.get("bytes")
                if data is None:
                    conn.inbox.put(Command(message.get("text") or ""))
                    continue
                if len(data) > limit:
                    error = f"a frame of {len(data)} bytes is over the limit of {limit} (ui.max_frame_bytes)"
                    conn.inbox.put(Reply({"frame": n, "error": error}))
                else:
                    conn.inbox.put(Frame(n, data, time.monotonic() - conn.t0))
                n += 1
        finally:
            conn.inbox.close()

    async def answer_frames(self, ws: WebSocket, conn: Connection) -> None:
        """Answer everything in the inbox, in order: the newest frame processed, the older ones skipped."""
        while items := await conn.inbox.take():
            newest = next((i for i in reversed(items) if isinstance(i, Frame)), None)
            for item in items:
                if isinstance(item, Reply):
                    reply = item.message
                elif isinstance(item, Command):
                    reply = await self.command(conn, item.text)
                elif item is newest:
                    reply = await self.run(self.process, conn, item)
                else:
                    reply = {"frame": item.n, "skipped": True}
                await ws.send_text(json.dumps(reply))

    def annotate(self, conn: Connection, image: np.ndarray, t: float, n: int) -> tuple[bytes, dict]:
        """Process a frame the server read, draw the overlay on it; the JPEG and the answer. On the worker."""
        result, reply = self.step(conn, image, t, n, time.perf_counter())
        overlay.draw(image, result.faces, conn.pipeline.class_names, None, bool(self.cfg.overlay.bars))
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(self.ui.jpeg_quality)])[1].tobytes()
        return jpeg, reply

    async def stream_source(self, ws: WebSocket, conn: Connection) -> None:
        """Read the server's own source and send each processed frame: the annotated JPEG, then its answer."""
        camera = OmegaConf.to_container(self.cfg.camera, resolve=True)
        source = await asyncio.to_thread(open_source, self.source, camera, self.cfg.folder_fps)
        try:
            period = 1.0 / source.fps if self.cfg.pace and source.fps else 0.0
            start = time.monotonic()
            for n in itertools.count():
                image = await asyncio.to_thread(source.read)
                if image is None or conn.inbox.closed:
                    break
                jpeg, reply = await self.run(self.annotate, conn, image, source.time, n)
                await ws.send_bytes(jpeg)
                await ws.send_text(json.dumps(reply))
                items, conn.inbox.items = conn.inbox.items, []
                for item in items:  # model switches sent meanwhile
                    if isinstance(item, Command):
                        await ws.send_text(json.dumps(await self.command(conn, item.text)))
                if period:
                    await asyncio.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))
            if not conn.inbox.closed:
                await ws.send_text(json.dumps({"end": True}))
        finally:
            await asyncio.to_thread(source.close)


# ---------------------------------------------------------------------------------------------------------- the app
def create_app(cfg: DictConfig, token: str | None = None) -> FastAPI:
    """The FastAPI app of a composed conf/realtime.yaml (``ui=web``); ``token``: required on every /api and /ws
    request (default: ``ui.token``). The app's `WebApp` is ``app.state.web``."""
    if cfg.get("cv_threads") is not None:
        cv2.setNumThreads(int(cfg.cv_threads))
    token = token if token is not None else cfg.ui.get("token")
    web = WebApp(cfg, str(token) if token is not None else None)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        for conn in list(web.connections.values()):
            await web.close(conn)
        web.worker.shutdown(wait=True)

    app = FastAPI(title="mimic", version=mimic.__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.web = web
    guard = [Depends(web.authorize)]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in err['loc'][1:]) or 'body'}: {err['msg']}" for err in e.errors())
        return JSONResponse({"error": f"bad request: {where}"}, 422)

    @app.exception_handler(UserError)
    async def user_error(_, e: UserError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, 400)

    @app.exception_handler(Exception)
    async def bug(_, e: Exception) -> JSONResponse:
        log.exception("error in a request", exc_info=e)
        return JSONResponse({"error": "internal error: the server's log has the details"}, 500)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        if not (STATIC / "index.html").is_file():
            raise HTTPException(404, f"the page's files are missing from {STATIC}: reinstall mimic")
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/api/info", dependencies=guard)
    async def info() -> dict:
        r, s = cfg.reactions, cfg.smoothing
        reactions = {"enabled": bool(r.enabled), "hold_s": r.hold_s, "cooldown_s": r.cooldown_s,
                     "popup_s": r.popup_s, "skip": list(r.skip), "popups": bool(r.popups), "sound": bool(r.sound),
                     "volume": r.volume}  # fmt: skip
        return {
            "version": mimic.__version__,
            "model": web.default.to_json(),
            "classes": web.default.classes,
            "source": "browser" if web.source is None else "server",
            "reactions": reactions,
            "max_frame_bytes": int(web.ui.max_frame_bytes),
            "jpeg_quality": int(web.ui.jpeg_quality),
            "smoothing": {"enabled": bool(s.enabled), "half_life": s.half_life, "margin": s.margin},
        }

    @app.get("/api/models", dependencies=guard)
    async def models() -> dict:
        entries = await asyncio.to_thread(web.models.scan)
        return {"models": [e.to_json() for e in entries], "default": web.default.id}

    @app.post("/api/model", dependencies=guard)
    async def choose_model(choice: ChooseModel) -> dict:
        entry = await asyncio.to_thread(web.models.get, choice.id)
        if choice.connection is None:
            await asyncio.to_thread(web.models.predictor, entry)  # a model that cannot load is refused now
            web.default = entry
            return {"model": entry.to_json(), "classes": entry.classes}
        conn = web.connections.get(choice.connection)
        if conn is None:
            raise HTTPException(404, f"no live connection {choice.connection}")
        return await web.switch(conn, entry)

    def csv_response(entry: LogFile) -> Response:
        data = entry.csv.path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]  # whole rows only, should a frame's write be under way
        disposition = f'attachment; filename="{entry.csv.path.name}"'
        return Response(data, media_type="text/csv", headers={"Content-Disposition": disposition})

    @app.get("/api/log.csv", dependencies=guard)
    async def latest_log() -> Response:
        if not web.logs:
            raise HTTPException(404, "no log yet: a log starts with each connection (and log.enabled=true)")
        return csv_response(list(web.logs.values())[-1])

    @app.get("/api/logs", dependencies=guard)
    async def logs() -> dict:
        return {"logs": [entry.to_json() for entry in web.logs.values()]}

    @app.get("/api/logs/{name}", dependencies=guard)
    async def one_log(name: str) -> Response:
        if name not in web.logs:
            raise HTTPException(404, f"no log named {name!r}: GET /api/logs lists them")
        return csv_response(web.logs[name])

    @app.get("/api/reactions/{label}/{part}", dependencies=guard)
    async def reaction_file(label: str, part: str) -> FileResponse:
        parts = {"image": 0, "sound": 1}
        path = web.assets.get(label, (None, None))[parts[part]] if part in parts else None
        if path is None:
            raise HTTPException(404, f"no reaction {part} for {label!r}")
        return FileResponse(path)

    @app.websocket("/ws/live")
    async def live(ws: WebSocket) -> None:
        if not await web.admit(ws):
            return
        await ws.accept()
        await serve_connection(ws, web.answer_frames)

    @app.websocket("/ws/source")
    async def server_source(ws: WebSocket) -> None:
        if not await web.admit(ws):
            return
        await ws.accept()
        if web.source is None or web.source_busy:
            why = "source=browser: the page sends the frames" if web.source is None else "another page shows it"
            await ws.send_text(json.dumps({"error": f"the server reads no source here ({why})"}))
            await ws.close()
            return
        web.source_busy = True
        try:
            await serve_connection(ws, web.stream_source)
        finally:
            web.source_busy = False

    async def serve_connection(ws: WebSocket, talk: Callable) -> None:
        try:
            conn, hello = await web.open()
        except UserError as e:
            await ws.send_text(json.dumps({"error": str(e)}))
            await ws.close()
            return
        reader = asyncio.create_task(web.receive(ws, conn))
        try:
            await ws.send_text(json.dumps(hello))
            await talk(ws, conn)
            await ws.close()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        except UserError as e:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await ws.send_text(json.dumps({"error": str(e)}))
                await ws.close()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await reader
            await web.close(conn)

    from mimic.realtime.web.personalise import personalise_router  # captures and fine-tuning jobs (issue 13)

    app.include_router(personalise_router(cfg, web.models, lambda: web.default), dependencies=guard)
    return app


# ------------------------------------------------------------------------------------------------------------ serve
def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Listening:
    """Where and how the server listens: checked settings and the page's address."""

    host: str
    port: int
    token: str | None
    certfile: str | None
    keyfile: str | None

    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token else ""
        return f"{'https' if self.certfile else 'http'}://{host}:{self.port}/{query}"


def listening(cfg: DictConfig) -> Listening:
    """The server's settings, checked (`UserError` naming the setting): TLS files both or neither and loadable; a
    host other than loopback gets a random token unless ``ui.token`` sets one."""
    ui = cfg.ui
    host, port = str(ui.host), int(ui.port)
    cert, key = ui.get("ssl_certfile"), ui.get("ssl_keyfile")
    if bool(cert) != bool(key):
        raise UserError(
            "ui.ssl_certfile and ui.ssl_keyfile go together: set both (the certificate and its private key, PEM "
            "files) for HTTPS, or neither"
        )
    if cert:
        cert, key = str(Path(str(cert)).expanduser()), str(Path(str(key)).expanduser())
        for setting, path in (("ui.ssl_certfile", cert), ("ui.ssl_keyfile", key)):
            if not Path(path).is_file():
                raise UserError(f"{setting}={path}: no such file")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise UserError(
                f"ui.ssl_certfile={cert}, ui.ssl_keyfile={key}: not a usable certificate and key ({e})"
            ) from None
    token = ui.get("token")
    token = str(token) if token is not None else None
    if token is None and not _loopback(host):
        token = secrets.token_urlsafe(24)
    if not _loopback(host) and not cert:
        log.warning(
            "host=%s without TLS: browsers on other machines open the camera only over HTTPS (set "
            "ui.ssl_certfile and ui.ssl_keyfile), and the token travels unencrypted",
            host,
        )
    return Listening(host, port, token, cert, key)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UserError(f"host={host}: not an address of this machine ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror}): choose another port with port=<number>"
        ) from None
    sock.listen(2048)  # connections made as soon as the address is printed wait for uvicorn to accept them
    return sock


def serve(cfg: DictConfig) -> None:
    """Serve the page until Ctrl-C or SIGTERM; the address goes to stdout before serving. Every CSV log is closed
    on the way out (and its rows were flushed frame by frame anyway)."""
    import uvicorn
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    where = listening(cfg)
    app = create_app(cfg, where.token)
    web: WebApp = app.state.web
    predictor = web.models.predictor(web.default)  # a model that cannot load stops the start, not the first page
    Pipeline.from_config(cfg, predictor)  # and so do bad detector, tracker or smoothing settings
    if where.token is None:  # loopback without a token: refuse other Host names (DNS rebinding)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["localhost", "127.0.0.1", "[::1]"])
    sock = _bind(where.host, where.port)
    config = uvicorn.Config(
        app,
        ssl_certfile=where.certfile,
        ssl_keyfile=where.keyfile,
        ws_max_size=4 * int(cfg.ui.max_frame_bytes) + 65536,
        log_config=None,  # keep Hydra's logging
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    print(f"mimic web page: {where.url}", flush=True)
    print(f"logs: {web.log_dir}", flush=True)
    if cfg.ui.open_browser:
        threading.Timer(1.0, webbrowser.open, [where.url]).start()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
    rows = sum(entry.csv.rows for entry in web.logs.values())
    print(f"mimic web page stopped: {len(web.logs)} logs, {rows} face rows in {web.log_dir}", flush=True)
