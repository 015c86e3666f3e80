"""A redis-server of a test's own: on a free loopback port, its files in a directory the test
owns, ended by its PID. For tests that crash a server or change its configuration, which they
must never do to the shared server on 6379 (other tests, and other pytest-xdist workers, use it
at the same time)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.nats_server import free_port


class RedisServer:
    """A private redis-server (AOF, fsync on every write) in the directory `root`."""

    def __init__(self, root: Path) -> None:
        if shutil.which("redis-server") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is missing; CI must provide it")
            pytest.skip("redis-server is missing")
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The server's redis:// URL, without a namespace."""
        return f"redis://127.0.0.1:{self.port}/0"

    def url(self, namespace: str) -> str:
        """The broker URL of `namespace` on this server."""
        return f"{self.address}?namespace={namespace}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (again: same port, same files) and wait until it answers PING."""
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--dir", str(self.root), "--logfile", str(self.root / "redis.log")]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self._pong():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"redis-server did not start:\n{self.log()}")
            time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL: what was acknowledged is in the AOF (appendfsync always)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Kill the server (its files go with the test's directory)."""
        self.crash()

    def log(self) -> str:
        """The end of the server's log."""
        path = self.root / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
