"""HTTP API figures against a real `taskengine serve` process: latency at a fixed offered load,
batch submission throughput, and idle memory of `serve` and `worker`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psutil

TASK = {"type": "time.sleep", "payload": {"seconds": 0}}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def engine(command: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    """Start `taskengine <command>` on a fresh SQLite file; SIGTERM it at the end."""
    folder = tempfile.mkdtemp(prefix="te-api-bench-")
    argv = [sys.executable, "-m", "taskengine", "--broker", f"sqlite:///{folder}/api.db"]
    process = subprocess.Popen(
        [*argv, command, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TASKENGINE_DATA_DIR": folder, **(env or {})},
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_healthy(base: str, timeout: float = 20.0) -> None:
    """Poll /healthz until the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base} did not come up")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB."""
    return psutil.Process(pid).memory_info().rss / 1e6


class RawClient:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: the load generator shares the
    machine's two cores with the server, so it must cost far less per request than httpx."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        self.host, self.port, self.size = host, port, connections
        self._free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        """Open every connection up front."""
        for _ in range(self.size):
            self._free.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def close(self) -> None:
        """Close every connection."""
        while not self._free.empty():
            _, writer = self._free.get_nowait()
            writer.close()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request on a free connection; return (status, body)."""
        reader, writer = await self._free.get()
        try:
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            header = await reader.readuntil(b"\r\n\r\n")
            status = int(header[9:12])
            length = 0
            for line in header.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            return status, await reader.readexactly(length)
        finally:
            self._free.put_nowait((reader, writer))


async def fixed_rate(base: str, rate: float, seconds: float) -> dict[str, list[float]]:
    """Offer `rate` requests/s for `seconds`, alternating POST /api/tasks and GET of a known
    id; latency counts from the scheduled send time, so client-side queueing is included."""
    import json

    latencies: dict[str, list[float]] = {"POST /api/tasks": [], "GET /api/tasks/{id}": []}
    host, port = base.removeprefix("http://").split(":")
    client = RawClient(host, int(port), 32)
    await client.open()
    body = json.dumps(TASK).encode()
    _, created = await client.request("POST", "/api/tasks", body)
    first = json.loads(created)["id"]
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, due: float) -> None:
        if index % 2 == 0:
            key, (status, answer) = (
                "POST /api/tasks",
                await client.request("POST", "/api/tasks", body),
            )
        else:
            key, (status, answer) = (
                "GET /api/tasks/{id}",
                await client.request("GET", f"/api/tasks/{first}"),
            )
        if status >= 400:
            raise RuntimeError(f"{key}: {status} {answer[:200]!r}")
        latencies[key].append((loop.time() - due) * 1000)

    for index in range(int(rate * seconds)):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    await client.close()
    return latencies


async def batch_throughput(base: str, batches: int, size: int, clients: int) -> float:
    """Tasks/s accepted through `POST /api/tasks` with `{"tasks": [...size...]}` bodies."""
    body = {"tasks": [TASK] * size}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(batches):
            queue.put_nowait(n)

        async def sender() -> None:
            while not queue.empty():
                queue.get_nowait()
                response = await client.post("/api/tasks", json=body)
                if response.status_code != 201:
                    raise RuntimeError(f"batch: {response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        return batches * size / (time.perf_counter() - started)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Every API figure, `runs` times each; returns rows of name, unit, values."""
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    for _ in range(runs):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with engine("serve", "--port", str(port)) as server:
            wait_healthy(base)
            time.sleep(3)
            add("serve idle RSS (MB)", rss_mb(server.pid))
            latencies = asyncio.run(fixed_rate(base, 1000, 10))
            for key, values in latencies.items():
                add(f"{key} p50 at 1,000 req/s (ms)", percentile(values, 0.50))
                add(f"{key} p99 at 1,000 req/s (ms)", percentile(values, 0.99))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with engine(
            "serve", "--port", str(port), "--no-workers", env={"TASKENGINE_MAX_DEPTH": "100000000"}
        ):
            wait_healthy(base)
            add(
                "batch submit over HTTP, 1,000 per request, 4 clients (tasks/s)",
                asyncio.run(batch_throughput(base, 60, 1000, 4)),
            )
        with engine("worker") as worker:
            time.sleep(4)
            add("worker idle RSS (MB)", rss_mb(worker.pid))
        progress(f"api run done: { {k: round(v[-1], 2) for k, v in rows.items()} }")
    return [
        {
            "name": name,
            "values": values,
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
        for name, values in rows.items()
    ]


def table(rows: list[dict[str, Any]]) -> str:
    """Medians with min and max."""
    lines = [f"{'figure':<66} {'median':>10} {'min':>10} {'max':>10}"]
    for row in rows:
        cells = " ".join(f"{row[k]:>10,.2f}" for k in ("median", "min", "max"))
        lines.append(f"{row['name']:<66} {cells}")
    return "\n".join(lines)
