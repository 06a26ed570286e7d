"""The web page's live connections (`Sessions`): the frame protocol, one pipeline per connection, and the one worker
thread every frame is processed on.

Each WebSocket connection gets its own `Pipeline` (tracker, smoothers, reactions' timing, CSV log), built from the
same config as the window's. A reader task puts what the client sends into the connection's `Inbox`; the answering
loop takes everything waiting, processes only the newest frame and answers each older one ``skipped``, so latency
never piles up, and every frame gets exactly one answer, in order. All processing (decoding, detection,
classification) runs on one worker thread, since detectors and predictors are not thread-safe; the event loop only
receives and sends. docs/api.md describes the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import struct
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import WebSocket, WebSocketDisconnect
from omegaconf import DictConfig, OmegaConf

from mimic.errors import UserError
from mimic.io import new_file
from mimic.models.predictor import Predictor
from mimic.realtime import overlay
from mimic.realtime.csvlog import CsvLog
from mimic.realtime.pipeline import Pipeline, run_dir
from mimic.realtime.result import FrameResult
from mimic.realtime.sources import open_source
from mimic.realtime.web.catalog import Catalog, ModelEntry
from mimic.realtime.web.errors import error_answer

MAX_PIXELS = 4096 * 4096  # a frame's header may not ask for more (a small file can decode to a huge image)


# ---- the frame protocol --------------------------------------------------------------------------------------------
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


def answer(n: int, result: FrameResult, names: list[str], model: str, shape: tuple[int, ...], ms: float) -> dict:
    """The JSON answer to frame ``n``: its faces and how long it took."""
    faces = [f.to_json(names) for f in result.faces]
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


# ---- connections ---------------------------------------------------------------------------------------------------
@dataclass
class LogFile:
    csv: CsvLog  # the connection's log
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


class Sessions:
    """The live connections, their logs and the reactions' files; ``default`` is the model new connections start
    with, ``worker`` the one thread all frames are processed on."""

    def __init__(self, cfg: DictConfig, catalog: Catalog) -> None:
        self.cfg, self.ui, self.catalog = cfg, cfg.ui, catalog
        self.default = catalog.default
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
            self.log_dir, self.log_stem = path or run_dir(), "faces-web"
        else:
            self.log_dir, self.log_stem = path.parent, path.stem
        # a model that cannot load stops the start, not the first page; and so do bad pipeline settings
        self.pipeline(catalog.predictor(self.default)).close()

    async def run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    # ---- pipelines
    def pipeline(self, predictor: Predictor, log_path: Path | None = None, model: str = "") -> Pipeline:
        """A connection's pipeline (reactions timed only: the page shows and plays them), the reactions' files noted
        for the /api/reactions endpoints."""
        pipeline = Pipeline.from_config(self.cfg, predictor, None, log_path, model, players=False)
        if pipeline.reactions is not None:
            for name in pipeline.class_names:
                self.assets[name] = (pipeline.reactions.images.get(name), pipeline.reactions.sounds.get(name))
        return pipeline

    def use(self, conn: Connection, entry: ModelEntry) -> dict:
        """Give ``conn`` a new pipeline (and a new CSV log) for ``entry``'s model; on the worker. The model's
        predictor must be loaded already (`Catalog.predictor`, off the worker)."""
        predictor = self.catalog.predictor(entry)
        path = None
        if self.cfg.log.enabled:
            path = new_file(self.log_dir / f"{self.log_stem}-{conn.id}.csv", "log.path", "faces.csv")
        pipeline = self.pipeline(predictor, path, entry.name)
        csv = pipeline.log
        if csv is not None:
            started = datetime.now().astimezone().isoformat(timespec="seconds")
            self.logs[csv.path.name] = LogFile(csv, conn.id, entry.id, started)
        self.close_pipeline(conn)
        conn.pipeline, conn.entry = pipeline, entry
        return {"model": entry.to_json(), "classes": list(predictor.class_names), "log": csv.path.name if csv else None}

    @staticmethod
    def close_pipeline(conn: Connection) -> None:
        if conn.pipeline is not None:
            conn.pipeline.close()
            conn.pipeline = None

    async def switch(self, conn: Connection, entry: ModelEntry) -> dict:
        await asyncio.to_thread(self.catalog.predictor, entry)  # a slow load keeps the worker free for the others
        return await self.run(self.use, conn, entry)

    async def choose(self, entry: ModelEntry, connection: int | None) -> dict:
        """Switch connection ``connection`` to ``entry``'s model, or (None) make it the model new connections start
        with; a model that cannot load is refused now. `KeyError` for a connection that is not live."""
        if connection is not None:
            return await self.switch(self.connections[connection], entry)
        await asyncio.to_thread(self.catalog.predictor, entry)
        self.default = entry
        return {"model": entry.to_json(), "classes": entry.classes}

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

    async def shutdown(self) -> None:
        """Close every connection's pipeline and stop the worker."""
        for conn in list(self.connections.values()):
            await self.close(conn)
        self.worker.shutdown(wait=True)

    @staticmethod
    def step(conn: Connection, image: np.ndarray, t: float, n: int, t0: float) -> tuple[FrameResult, dict]:
        """Frame ``n`` through the connection's pipeline: the result and the answer (``t0``: when work on it began)."""
        pipeline = conn.pipeline
        result = pipeline.step(image, t)
        ms = (time.perf_counter() - t0) * 1000
        return result, answer(n, result, pipeline.class_names, conn.entry.id, image.shape, ms)

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
            return await self.switch(conn, self.catalog.get(message["model"]))
        except Exception as e:
            return error_answer(e)[1]

    # ---- streams
    async def serve(self, ws: WebSocket, talk: Callable[[WebSocket, Connection], Awaitable[None]]) -> None:
        """Run an accepted WebSocket: say hello with the connection's model, ``talk`` until either side closes, then
        close the connection's pipeline."""
        try:
            conn, hello = await self.open()
        except Exception as e:
            await ws.send_text(json.dumps(error_answer(e)[1]))
            await ws.close()
            return
        reader = asyncio.create_task(self.receive(ws, conn))
        try:
            await ws.send_text(json.dumps(hello))
            await talk(ws, conn)
            await ws.close()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        except UserError as e:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await ws.send_text(json.dumps(error_answer(e)[1]))
                await ws.close()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await reader
            await self.close(conn)

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
