"""Wake-ups between processes that share one SQLite file: a doorbell of datagram sockets.

Every process waiting for work binds a Unix datagram socket in a directory private to the user
and named after the store (its real path, hashed); a process that committed new work sends one
byte to each socket there. A ring is a hint, never a promise: waiters still poll
`data_version`, so a ring lost, refused or sent before a waiter appeared costs at most one poll
interval, as it did before the doorbell. SQLite is shared by the processes of one host, and so
is the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

RESCAN = 0.5  # seconds a ringer trusts its list of waiting processes before reading it again


def bell_directory(store: str) -> Path | None:
    """The directory of `store`'s doorbell, created private to this user; None if it cannot
    be (another user owns it or may write to it): then waiters rely on polling alone."""
    digest = hashlib.sha256(os.path.realpath(store).encode()).hexdigest()[:16]
    parent = Path(tempfile.gettempdir()) / f"taskengine-{os.getuid()}"
    directory = parent / digest
    try:
        for path in (parent, directory):
            path.mkdir(mode=0o700, exist_ok=True)
            info = path.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise PermissionError(f"{path} is not a directory of this user")
            if info.st_mode & 0o077:
                raise PermissionError(f"{path} is open to other users")
    except OSError as exc:
        log.warning("SQLite doorbell off, waiters poll only: %s", exc)
        return None
    return directory


class Doorbell:
    """This process's end of one store's doorbell: it listens once a wait begins, and rings
    after each commit that made work ready."""

    def __init__(self, store: str) -> None:
        self.directory = bell_directory(store)
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own: str | None = None
        self._sender: socket.socket | None = None
        self._peers: list[str] = []
        self._scanned = float("-inf")

    def listen(self, on_ring: Callable[[], None]) -> None:
        """Bind this process's socket (once) and call `on_ring` on the loop at each ring."""
        if self._listener is not None or self.directory is None:
            return
        path = str(self.directory / f"{os.getpid()}-{secrets.token_hex(4)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            self.directory.mkdir(mode=0o700, exist_ok=True)  # the last one out removed it
            sock.bind(path)
        except OSError as exc:
            sock.close()
            log.warning("SQLite doorbell: cannot listen at %s, polling only: %s", path, exc)
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), _drain, sock, on_ring)
        self._listener, self._own = sock, path

    def ring(self) -> None:
        """Tell every other waiting process that work was committed. Never blocks or raises."""
        if self.directory is None:
            return
        now = time.monotonic()
        if now - self._scanned > RESCAN:
            self._scanned = now
            try:
                self._peers = [e.path for e in os.scandir(self.directory) if e.path != self._own]
            except OSError:
                self._peers = []
        if not self._peers:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for path in self._peers:
            try:
                self._sender.sendto(b"!", path)
            except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                with contextlib.suppress(OSError):
                    os.unlink(path)
                self._scanned = float("-inf")
            except OSError:  # its queue is full: it has rings it has not read yet
                continue

    def close(self) -> None:
        """Stop listening and remove this process's socket."""
        listener, self._listener = self._listener, None
        if listener is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(listener.fileno())
            listener.close()
        if self._own is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._own)
                os.rmdir(os.path.dirname(self._own))  # only if no other process listens
            self._own = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None


def _drain(sock: socket.socket, on_ring: Callable[[], None]) -> None:
    """Read every pending ring (many commits may ring once for the waiter) and wake it."""
    with contextlib.suppress(OSError):
        while sock.recv(16):
            pass
    on_ring()


__all__ = ["Doorbell", "bell_directory"]
