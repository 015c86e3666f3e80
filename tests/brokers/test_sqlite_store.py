"""The SQLite store's files under a running broker: removed, replaced or corrupted.

The broker must never acknowledge what is not stored: once its files are gone or another file
has their name, writes (and reads, which would answer from the unlinked file) raise
BrokerUnavailable naming the store, and one error line says so. Corruption found while serving
is BrokerUnavailable naming the store too, not a bare sqlite3.DatabaseError.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskengine.brokers.sqlite import SqliteBroker
from taskengine.errors import BrokerUnavailable
from taskengine.model import Task, new_task
from tests.brokers.support import T0

SUFFIXES = ("", "-wal", "-shm")


def make_tasks(count: int, start: int = 0) -> list[Task]:
    return [new_task("demo.echo", {"n": start + i}, now=T0) for i in range(count)]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


@pytest.fixture
async def broker(db: str) -> AsyncIterator[SqliteBroker]:
    b = SqliteBroker(db)
    await b.start()
    yield b
    await b.close()


def remove_store(db: str) -> None:
    for suffix in SUFFIXES:
        os.unlink(db + suffix)


def store_errors(caplog: pytest.LogCaptureFixture, db: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and db in r.getMessage()
    ]


async def test_main_db_is_not_memory_mapped(broker: SqliteBroker) -> None:
    """mmap I/O on the main db turns an I/O error into SIGBUS: it stays off on both connections."""
    writer = broker._write()
    mapped = await writer.submit(
        lambda conn: conn.execute("PRAGMA mmap_size").fetchone()[0], in_transaction=False
    )
    read = await broker._read().run(lambda conn: conn.execute("PRAGMA mmap_size").fetchone()[0])
    assert (mapped, read) == (0, 0)


async def test_a_removed_store_refuses_writes_and_reads_and_says_so(
    broker: SqliteBroker, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    kept = make_tasks(2)
    await broker.enqueue(kept, T0)
    remove_store(db)
    with caplog.at_level(logging.ERROR):
        for attempt in range(3):  # refused every time, not only the first
            with pytest.raises(BrokerUnavailable, match="removed") as refused:
                await broker.enqueue(make_tasks(1, start=10 + attempt), T0)
            assert db in str(refused.value)
        with pytest.raises(BrokerUnavailable, match="removed"):
            await broker.reserve("w", 10, 30.0, T0)
        with pytest.raises(BrokerUnavailable, match="removed"):
            await broker.get([kept[0].id])
        with pytest.raises(BrokerUnavailable, match="removed"):
            await broker.paused()  # what /readyz asks
    errors = store_errors(caplog, db)
    assert len(errors) == 1, errors  # said once, not once per refusal
    assert not await asyncio.to_thread(os.path.exists, db)  # no empty store made in its place


async def test_a_replaced_store_is_detected(
    broker: SqliteBroker, db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await broker.enqueue(make_tasks(1), T0)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    replacement = other.read_bytes()
    os.replace(other, db)  # the main file now has another inode; -wal and -shm are unchanged
    with caplog.at_level(logging.ERROR):
        with pytest.raises(BrokerUnavailable, match="replaced") as refused:
            await broker.enqueue(make_tasks(1, start=1), T0)
        assert db in str(refused.value)
        with pytest.raises(BrokerUnavailable, match="replaced"):
            await broker.counts()
    assert store_errors(caplog, db)
    assert await asyncio.to_thread(Path(db).read_bytes) == replacement  # left alone


def corrupt_tasks_pages(db: str) -> None:
    """Overwrite the root pages of `tasks` and its indexes in the main file, then make every
    connection drop its page cache (another connection commits an unrelated change)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the checkpoint did not complete"
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [
            row[0]
            for row in conn.execute(
                "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'tasks' AND rootpage > 0"
            )
        ]
        with open(db, "r+b") as f:
            for root in roots:
                f.seek((root - 1) * page_size)
                f.write(b"\xa5" * page_size)
            f.flush()
            os.fsync(f.fileno())
        conn.execute("INSERT INTO paused_queues (queue) VALUES ('x')")
        conn.execute("DELETE FROM paused_queues WHERE queue = 'x'")
    finally:
        conn.close()


async def test_corruption_found_while_serving_is_unavailable_naming_the_store(
    broker: SqliteBroker, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    kept = make_tasks(3)
    await broker.enqueue(kept, T0)
    corrupt_tasks_pages(db)
    with caplog.at_level(logging.ERROR):
        with pytest.raises(BrokerUnavailable, match="malformed") as refused:
            await broker.enqueue(make_tasks(1, start=5), T0)
        assert db in str(refused.value)
        with pytest.raises(BrokerUnavailable, match="malformed") as refused:
            await broker.get([kept[0].id])
        assert db in str(refused.value)
    assert store_errors(caplog, db)
