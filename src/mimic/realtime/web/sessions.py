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
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import HTTPException, WebSocket, WebSocketDisconnect
from omegaconf import DictConfig, OmegaConf

from mimic.detectors import load_detector
from mimic.errors import UserError
from mimic.faces import for_stream
from mimic.io import new_file
from mimic.models.predictor import Predictor
from mimic.realtime import overlay
from mimic.realtime.csvlog import CsvLog
from mimic.realtime.pipeline import Pipeline, run_dir
from mimic.realtime.result import FrameResult
from mimic.realtime.sources import open_source
from mimic.realtime.web.catalog import Catalog, ModelEntry
from mimic.realtime.web.errors import error_answer, parse_json
from mimic.realtime.web.frames import Decoded, decode
from mimic.realtime.web.inbox import Command, Frame, Inbox, Reply


def answer(n: int, result: FrameResult, names: list[str], model: str, shape: tuple[int, ...], ms: float) -> dict:
    """The JSON answer to frame ``n``: its faces and how long it took."""
    faces = [f.to_json(names) for f in result.faces]
    size = {"width": shape[1], "height": shape[0]}
    return {"frame": n, "faces": faces, "server_ms": round(ms, 2), **size, "model": model}


# ---- connections ---------------------------------------------------------------------------------------------------
@dataclass
class LogFile:
    csv: CsvLog  # the connection's log
    connection: int
    model: str  # the id of the model it started with (each row names the model that made it)
    started: str
    live: bool = True  # False once the connection closed or moved on to a model with other classes

    def to_json(self) -> dict[str, Any]:
        path = self.csv.path
        return {"name": path.name, "connection": self.connection, "rows": self.csv.rows, "model": self.model,
                "started": self.started, "live": self.live}  # fmt: skip


@dataclass
class Connection:
    id: int
    entry: ModelEntry | None = None
    pipeline: Pipeline | None = None
    log: LogFile | None = None
    inbox: Inbox = field(default_factory=Inbox)
    t0: float = field(default_factory=time.monotonic)


class Sessions:
    """The live connections, their logs and the reactions' files; ``default`` is the model new connections start
    with, ``worker`` the one thread all frames are processed on.

    Fair time: a connection has at most one frame on the worker or waiting for it (its answering loop awaits each),
    and the worker takes them in arrival order, so the connections are served in turn and one client's frame waits
    for at most one frame of each other client. A frame is decoded within ``ui.max_pixels`` and shrunk to
    ``ui.max_side`` first (`frames.decode`). At most ``ui.max_connections`` are open at once. Every connection shares
    the one detector's model (`mimic.faces.for_stream`) and the catalog's predictors, so a connection's memory is its
    tracker and log, given back when it closes. Logs: one CSV file per connection (another only when it switches to
    a model with other classes); the newest ``ui.max_logs`` are listed, the files of older ones stay on disk."""

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
        self.detector = load_detector(cfg.detector)
        # a model that cannot load stops the start, not the first page; and so do bad pipeline settings
        self.pipeline(catalog.predictor(self.default)).close()

    async def run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    # ---- pipelines
    def pipeline(self, predictor: Predictor, log_path: Path | None = None, model: str = "") -> Pipeline:
        """A connection's pipeline (reactions timed only: the page shows and plays them), the reactions' files noted
        for the /api/reactions endpoints."""
        detector = for_stream(self.detector)
        pipeline = Pipeline.from_config(self.cfg, predictor, detector, log_path, model, players=False)
        if pipeline.reactions is not None:
            for name in pipeline.class_names:
                self.assets[name] = (pipeline.reactions.images.get(name), pipeline.reactions.sounds.get(name))
        return pipeline

    def use(self, conn: Connection, entry: ModelEntry) -> dict:
        """Give ``conn`` a new pipeline for ``entry``'s model, logging to the connection's CSV log (a new one when
        the model's classes differ: a file has one header); on the worker. The model's predictor must be loaded
        already (`Catalog.predictor`, off the worker)."""
        predictor = self.catalog.predictor(entry)
        same = conn.pipeline is not None and conn.pipeline.class_names == list(predictor.class_names)
        keep = conn.log if same else None
        path = None
        if self.cfg.log.enabled and keep is None:
            path = new_file(self.log_dir / f"{self.log_stem}-{conn.id}.csv", "log.path", "faces.csv")
        pipeline = self.pipeline(predictor, path, entry.name)
        if keep is not None:
            pipeline.log, keep.csv.model = keep.csv, entry.name
            conn.pipeline.log = None  # the file goes on with the new pipeline
        elif pipeline.log is not None:
            started = datetime.now().astimezone().isoformat(timespec="seconds")
            self.finish_log(conn)
            conn.log = LogFile(pipeline.log, conn.id, entry.id, started)
            self.logs[pipeline.log.path.name] = conn.log
            self.prune_logs()
        self.close_pipeline(conn)
        conn.pipeline, conn.entry = pipeline, entry
        name = conn.log.csv.path.name if conn.log is not None else None
        return {"model": entry.to_json(), "classes": list(predictor.class_names), "log": name}

    def close_pipeline(self, conn: Connection) -> None:
        if conn.pipeline is not None:
            conn.pipeline.close()
            conn.pipeline = None

    def finish_log(self, conn: Connection) -> None:
        if conn.log is not None:
            conn.log.live = False
            conn.log = None

    def prune_logs(self) -> None:
        """Stop listing the oldest finished logs beyond ``ui.max_logs`` (their files stay on disk)."""
        over = len(self.logs) - int(self.ui.max_logs)
        for name in [name for name, entry in self.logs.items() if not entry.live][: max(0, over)]:
            del self.logs[name]

    def delete_log(self, name: str) -> dict:
        """Delete a listed, finished log's file: `KeyError` for a name not listed, 409 for a live one."""
        entry = self.logs[name]
        if entry.live:
            raise HTTPException(409, f"log {name} is still being written: close its connection first")
        entry.csv.path.unlink(missing_ok=True)
        del self.logs[name]
        return {"deleted": name}

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
        """A new connection with the default model; 503 when ``ui.max_connections`` are open."""
        limit = int(self.ui.max_connections)
        if len(self.connections) >= limit:
            raise HTTPException(
                503, f"the server has {limit} connections open (ui.max_connections): close a page and try again"
            )
        conn = Connection(next(self.ids))
        self.connections[conn.id] = conn  # counted from now: connections opened at once cannot pass the limit
        try:
            hello = await self.switch(conn, self.default)
        except BaseException:
            self.connections.pop(conn.id, None)
            raise
        return conn, {"hello": {"connection": conn.id, **hello}}

    async def close(self, conn: Connection) -> None:
        """Close a connection's pipeline and finish its log, on the worker: shielded, so that it happens even when
        the task closing it is cancelled."""
        self.connections.pop(conn.id, None)
        try:
            await asyncio.shield(self.run(self.end, conn))
        except RuntimeError:  # the worker has stopped (the server is shutting down)
            self.end(conn)

    def end(self, conn: Connection) -> None:
        self.close_pipeline(conn)
        self.finish_log(conn)
        self.prune_logs()

    async def shutdown(self) -> None:
        """Close every connection's pipeline and stop the worker."""
        for conn in list(self.connections.values()):
            await self.close(conn)
        self.worker.shutdown(wait=True)

    @staticmethod
    def step(conn: Connection, image: np.ndarray, t: float, n: int, t0: float, sent: Decoded | None = None) -> tuple:
        """Frame ``n`` through the connection's pipeline: the result and the answer (``t0``: when work on it began;
        ``sent``: the frame as the client sent it, of which ``image`` may be a shrunk copy)."""
        pipeline = conn.pipeline
        result = pipeline.step(image, t, scale=sent.scale if sent else 1.0)
        ms = (time.perf_counter() - t0) * 1000
        shape = (sent.height, sent.width) if sent else image.shape
        return result, answer(n, result, pipeline.class_names, conn.entry.id, shape, ms)

    def process(self, conn: Connection, frame: Frame) -> dict:
        """Decode and process a frame the client sent; on the worker."""
        t0 = time.perf_counter()
        try:
            sent = decode(frame.data, int(self.ui.max_pixels), int(self.ui.max_side))
        except ValueError as e:
            return {"frame": frame.n, "error": str(e)}
        frame.data = b""
        return self.step(conn, sent.image, frame.time, frame.n, t0, sent)[1]

    async def command(self, conn: Connection, text: str) -> dict:
        """A text message: ``{"model": id}`` switches the connection's model."""
        try:
            message = parse_json(text)
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
            while True:
                await conn.inbox.room()
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
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
            for item in items:
                if isinstance(item, Reply):
                    reply = item.message
                elif isinstance(item, Command):
                    reply = await self.command(conn, item.text)
                elif isinstance(item, Frame):
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
                for item in conn.inbox.drain():  # model switches sent meanwhile
                    if isinstance(item, Command):
                        await ws.send_text(json.dumps(await self.command(conn, item.text)))
                if period:
                    await asyncio.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))
            if not conn.inbox.closed:
                await ws.send_text(json.dumps({"end": True}))
        finally:
            await asyncio.to_thread(source.close)
