"""A loopback TCP proxy to a real server that a test can freeze: a half-open network on demand.

`freeze()` stops forwarding on every connection, open or new, in both directions, while the
sockets stay open: the client's bytes go nowhere and nothing comes back, which is what a
half-open connection (a dead peer, a dropped route) looks like. `stall_replies()` holds only
the replies on the connections open now (requests still reach the server; new connections are
unaffected): a call that ran on the server but whose answer never came. `thaw()` ends either;
connections that saw it are cut (the bytes held are lost, as in a real partition), unless
`deliver=True` forwards what was held.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, frozen: bool) -> None:
        self.up = asyncio.Event()  # client -> server may flow
        self.down = asyncio.Event()  # server -> client may flow
        if not frozen:
            self.up.set()
            self.down.set()
        self.stalled = frozen
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()


class StallProxy:
    """Forwards 127.0.0.1:<port> to `host:port` until told to stall."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.target_port = port
        self.port = 0
        self.accepted = 0  # client connections accepted so far
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._frozen = False

    @classmethod
    async def to_url(cls, url: str) -> tuple[StallProxy, str]:
        """Start a proxy to the server a URL names; return it and the URL through it."""
        parts = urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 0)
        await proxy.start()
        auth = f"{parts.username}@" if parts.username else ""
        through = urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{proxy.port}"))
        return proxy, through

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.cut()
            for task in link.tasks:
                task.cancel()
        for link in list(self._links):
            for task in link.tasks:
                with contextlib.suppress(BaseException):
                    await task
        self._links.clear()

    def freeze(self) -> None:
        """Stop forwarding on every connection, open or new, both ways; sockets stay open."""
        self._frozen = True
        for link in self._links:
            link.up.clear()
            link.down.clear()
            link.stalled = True

    def stall_replies(self) -> None:
        """Hold every reply on the connections open now; their requests still go through."""
        for link in self._links:
            link.down.clear()
            link.stalled = True

    def thaw(self, *, deliver: bool = False) -> None:
        """Forward again. Connections that were stalled are cut, or with `deliver` get what was
        held."""
        self._frozen = False
        for link in list(self._links):
            if link.stalled and not deliver:
                link.cut()
            link.stalled = False
            link.up.set()
            link.down.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(self._frozen)
        link.writers.append(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            self._links.discard(link)
            return
        link.writers.append(up_writer)
        link.tasks = [
            asyncio.create_task(_pump(reader, up_writer, link.up)),
            asyncio.create_task(_pump(up_reader, writer, link.down)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        link.cut()
        self._links.discard(link)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event
) -> None:
    """Copy bytes (and the end of the stream) from `reader` to `writer` while `gate` is open."""
    try:
        while True:
            data = await reader.read(CHUNK)
            await gate.wait()
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        return
    finally:
        writer.transport.abort()
