"""Back-pressure (429 queue_full) and an unwritable store (503 broker_unavailable)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, running

PRIMES = {"type": "cpu.primes", "payload": {"limit": 10}}


@pytest.fixture(scope="module")
def full_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("api-full"),
        name="full",
        args=("--no-workers",),
        env={"TASKENGINE_MAX_DEPTH": "5"},
    ) as srv:
        yield srv


def _count(client: httpx.Client) -> int:
    return len(client.get("/api/tasks", params={"limit": 500}).json()["items"])


def test_queue_full_is_429_with_retry_after_and_stores_nothing(full_server: Server) -> None:
    with full_server.client() as c:
        for _ in range(3):
            assert c.post("/api/tasks", json=PRIMES).status_code == 201
        refused = c.post("/api/tasks", json={"tasks": [PRIMES] * 3})  # 3 + 3 > 5: all refused
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full"
        assert _count(c) == 3
        assert c.post("/api/tasks", json={"tasks": [PRIMES] * 2}).status_code == 201
        assert _count(c) == 5
        sixth = c.post("/api/tasks", json=PRIMES)
        assert sixth.status_code == 429
        assert sixth.json()["error"]["code"] == "queue_full"
        assert int(sixth.headers["retry-after"]) >= 1
        assert _count(c) == 5
        # room again once one leaves the queue
        first = c.get("/api/tasks", params={"limit": 1}).json()["items"][0]["id"]
        assert c.delete(f"/api/tasks/{first}").status_code == 200
        assert c.post("/api/tasks", json=PRIMES).status_code == 201


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def test_locked_store_answers_503_and_never_a_201(tmp_path: Path) -> None:
    """Another process holds an exclusive lock longer than the busy timeout (0.5 s x 3 tries)."""
    db = tmp_path / "locked.db"
    broker = f"sqlite:///{db}?busy_timeout_ms=500"
    with running(tmp_path, name="locked", broker=broker, args=("--no-workers",)) as srv:
        with srv.client() as c:
            stored = c.post("/api/tasks", json=PRIMES)
            assert stored.status_code == 201
            locker = subprocess.Popen(
                [sys.executable, "-c", LOCKER, str(db), "6"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert locker.stdout is not None
                assert locker.stdout.readline().strip() == "locked"
                started = time.monotonic()
                one = c.post("/api/tasks", json={**PRIMES, "queue": "while-locked"})
                batch = c.post(
                    "/api/tasks", json={"tasks": [{**PRIMES, "queue": "while-locked"}] * 3}
                )
                took = time.monotonic() - started
                # reads still work in WAL mode while a writer holds the lock
                listed = c.get("/api/tasks", params={"limit": 500})
                assert listed.status_code == 200
            finally:
                assert locker.wait(15) == 0
            for response in (one, batch):
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "broker_unavailable"
                assert int(response.headers["retry-after"]) >= 1
            assert took < 12, f"two refused writes took {took:.1f} s"
            # nothing was stored for the refused requests; the store works again
            after = c.get("/api/tasks", params={"queue": "while-locked"}).json()["items"]
            assert after == []
            assert c.post("/api/tasks", json=PRIMES).status_code == 201
            assert len(c.get("/api/tasks").json()["items"]) == 2
        assert "Traceback" not in srv.stdout_path.read_text()
