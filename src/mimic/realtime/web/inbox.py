"""What a WebSocket connection of the web page received and has not answered yet (`Inbox`): frames, text commands
and the error answers of frames refused on arrival, in arrival order (`mimic.realtime.web.sessions` fills and empties
it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

INBOX_ITEMS = 8  # a connection's frames, commands and error answers not answered yet


@dataclass
class Frame:
    n: int
    data: bytes
    time: float  # seconds since the connection opened, when it arrived: the reactions' clock


@dataclass
class Skipped:
    n: int  # a frame that a newer one replaced before the worker got to it: answered ``skipped``


@dataclass
class Command:
    text: str


@dataclass
class Reply:
    message: dict


class Inbox:
    """What a connection received and has not answered yet, in arrival order; `take` empties it. Only the newest
    frame keeps its bytes: a frame put while another waits turns that one into a `Skipped` number, so a client that
    floods the server holds one frame's memory. It holds at most `INBOX_ITEMS`: the reader waits for `room` before
    it reads more, and a client sending faster than its answers go out waits on its own socket."""

    def __init__(self) -> None:
        self.items: list[Frame | Skipped | Command | Reply] = []
        self.waiting: int | None = None  # the index in items of the frame that waits, if one does
        self.ready = asyncio.Event()
        self.space = asyncio.Event()
        self.space.set()
        self.closed = False

    def put(self, item: Frame | Command | Reply) -> None:
        if isinstance(item, Frame):
            if self.waiting is not None:
                self.items[self.waiting] = Skipped(self.items[self.waiting].n)
            self.waiting = len(self.items)
        self.items.append(item)
        self.ready.set()
        if len(self.items) >= INBOX_ITEMS:
            self.space.clear()

    async def room(self) -> None:
        """Return once the inbox has room for another item."""
        await self.space.wait()

    def close(self) -> None:
        self.closed = True
        self.ready.set()

    async def take(self) -> list[Frame | Skipped | Command | Reply]:
        """Everything waiting, once there is something; [] once the client is gone."""
        await self.ready.wait()
        return self.drain()

    def drain(self) -> list[Frame | Skipped | Command | Reply]:
        """Everything waiting now."""
        items, self.items, self.waiting = self.items, [], None
        if not self.closed:
            self.ready.clear()
        self.space.set()
        return items
