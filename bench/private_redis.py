"""A redis-server of the benchmark's own, so its CPU time is the run's and nobody else's.

Started on a free loopback port with the persistence of `.ci/run` (no RDB, no AOF) and the
stock single-threaded configuration; stopped by its pid when the block ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import redis


class Server(NamedTuple):
    """Where a broker server listens, and its pid when the benchmark may read its CPU."""

    port: int
    pid: int | None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis(timeout: float = 20.0) -> Iterator[Server]:
    """Run a redis-server for the block; RuntimeError if none is installed or it never answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        command += ["--appendonly", "no", "--dir", directory, "--loglevel", "warning"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_it_answers(port, process, timeout)
            yield Server(port, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_it_answers(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} exited ({process.returncode})")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} never answered") from None
            time.sleep(0.05)
    finally:
        client.close()
