"""The scale-out benchmark's CPU figures: per task, beside the rate, for the run's own processes."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import psutil
import pytest
import redis
from bench.private_nats import nats_binary, private_nats
from bench.private_redis import private_redis

from bench import cpu_meter, scale_out, transport_floor


def test_every_process_count_reports_cpu_per_task_beside_the_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 40,000 tasks in 2 s: 1.0 CPU second on the workers, 0.2 on the producer, 2.0 on the server
    spent = scale_out.Spent(workers=1.0, producer=0.2, server=2.0)
    figures = scale_out.figures(count=40_000, elapsed=2.0, busy=90.0, spent=spent)
    monkeypatch.setattr(scale_out, "one_run", lambda url, processes, server: figures)

    @contextmanager
    def no_server() -> Iterator[scale_out.Server]:
        yield scale_out.Server(port=6379, pid=None)

    monkeypatch.setattr(scale_out, "private_redis", no_server)
    rows = {r["name"]: r["median"] for r in scale_out.run(runs=1, progress=lambda _: None)}

    for broker in ("redis", "postgresql", "sqlite"):
        for processes in (1, 2, 4):
            label = f"{broker}, {processes} worker process(es)"
            assert rows[f"{label} (tasks/s)"] == 20_000
            assert rows[f"{label}: workers' CPU per task (µs)"] == pytest.approx(25.0)
            assert rows[f"{label}: producer's CPU per task (µs)"] == pytest.approx(5.0)
            assert rows[f"{label}: broker server's CPU per task (µs)"] == pytest.approx(50.0)
            assert rows[f"{label}: broker server's CPU (cores)"] == pytest.approx(1.0)


async def test_the_postgres_share_is_the_backends_serving_the_runs_own_connections() -> None:
    mine = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    other = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        pid = await mine.fetchval("SELECT pg_backend_pid()")
        other_pid = await other.fetchval("SELECT pg_backend_pid()")
        local_port = mine._transport.get_extra_info("sockname")[1]
        ours = cpu_meter.backends_of(5432, {local_port})
        assert ours == [pid]
        assert other_pid in cpu_meter.backends_of(5432, cpu_meter.client_ports(5432, [os.getpid()]))
        assert pid in cpu_meter.cpu_by_pid(ours)
    finally:
        await mine.close()
        await other.close()


def test_the_redis_server_of_a_run_is_its_own_and_ends_with_it() -> None:
    with private_redis() as server:
        assert server.pid is not None
        client = redis.Redis(port=server.port)
        assert client.ping()
        assert client.dbsize() == 0
        client.close()
        assert psutil.Process(server.pid).name().startswith("redis-server")
        before = cpu_meter.cpu_by_pid([server.pid])[server.pid]
        assert before >= 0.0
    assert not psutil.pid_exists(server.pid) or _zombie(server.pid)


def _zombie(pid: int) -> Any:
    return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_the_transport_floor_gives_server_and_client_cpu_per_phase() -> None:
    if nats_binary() is None:
        pytest.skip("no nats-server")
    with private_redis() as redis_server, private_nats() as nats_server:
        assert redis_server.pid is not None and nats_server.pid is not None
        runs = [
            await transport_floor.redis_streams(redis_server.port, redis_server.pid, 500),
            await transport_floor.jetstream(nats_server.port, nats_server.pid, 500),
            await transport_floor.redis_broker(redis_server.port, redis_server.pid, 500),
        ]
    for costs in runs:
        assert list(costs) == ["enqueue", "reserve", "settle"]
        assert all(server >= 0 and client >= 0 for server, client in costs.values())


def test_a_server_share_it_cannot_see_is_no_figure_rather_than_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # not root: the backends serving our connections belong to another user, their pids unseen
    monkeypatch.setattr(scale_out, "client_ports", lambda port, clients: {40001, 40002})
    monkeypatch.setattr(scale_out, "backends_of", lambda port, ports: [])
    window = scale_out._Window(os.getpid(), scale_out.POSTGRES)
    window.start()
    window.end()
    figures = window.figures(1_000)
    assert math.isnan(figures.server_us) and math.isnan(figures.server_cores)
    assert not math.isnan(figures.workers_us)
