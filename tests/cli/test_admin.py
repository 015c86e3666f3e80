"""`workers` (the registry) and `queues` (counts, pause, resume)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msgspec
import pytest

from taskengine.app import App
from taskengine.brokers import open_broker
from taskengine.cli import cli as cli_root
from taskengine.cli import client as loading
from taskengine.errors import BrokerUnavailable
from taskengine.model import WorkerInfo
from tests.cli.support import Cli, make_app


def record_workers(url: str, workers: list[WorkerInfo]) -> None:
    async def main() -> None:
        broker = open_broker(url)
        await broker.start()
        try:
            await broker.record_workers(workers)
        finally:
            await broker.close()

    asyncio.run(main())


def worker_info(number: int, *, task: str | None, now: float) -> WorkerInfo:
    return WorkerInfo(
        id=f"host:1:abc/w{number}",
        instance="host:1:abc",
        host="host",
        pid=1,
        state="busy" if task else "idle",
        current_task=task,
        processed=7 * number,
        busy_seconds=5.0,
        started_at=now - 11.0,
        last_seen=now - 1.0,
    )


def test_workers_table_and_json(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert "no workers" in cli.ok("workers").stdout
    now = time.time()
    task_id = "01TASKTASKTASKTASKTASKTASK"
    record_workers(
        cli.url, [worker_info(1, task=task_id, now=now), worker_info(2, task=None, now=now)]
    )

    out = cli.ok("workers").stdout
    for text in ("host:1:abc/w1", "host:1:abc/w2", "busy", "idle", task_id, "14", "50", "ago"):
        assert text in out, text

    found = cli.json("workers")["workers"]  # as GET /api/workers answers
    assert [item["id"] for item in found] == ["host:1:abc/w1", "host:1:abc/w2"]
    assert found[0]["current_task"] == task_id
    assert found[0]["busy_ratio"] == 0.5
    assert found[1]["processed"] == 14
    assert found[0]["last_heartbeat"].endswith("Z")


def test_workers_since_hides_old_workers(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    old = time.time() - 3600
    record_workers(cli.url, [worker_info(1, task=None, now=old)])
    assert cli.json("workers") == {"workers": []}
    assert len(cli.json("workers", "--since", "7200")["workers"]) == 1


def test_queues_counts_pause_and_resume(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert "no queues" in cli.ok("queues").stdout
    for priority in ("high", "high", "low"):
        cli.submit("time.sleep", {"seconds": 0}, "--queue", "mail", "--priority", priority)
    cancelled = cli.submit("time.sleep", {"seconds": 0}, "--queue", "reports")
    cli.ok("cancel", cancelled)

    summary = {item["name"]: item for item in cli.json("queues")["queues"]}
    assert set(summary) == {"mail", "reports"}
    assert summary["mail"]["states"]["queued"] == 3
    assert summary["mail"]["queued_by_priority"] == {"HIGH": 2, "LOW": 1}
    assert summary["mail"]["oldest_queued_at"] is not None
    assert summary["reports"]["states"]["cancelled"] == 1
    assert "queued" not in summary["reports"]["states"]
    assert not summary["mail"]["paused"]

    assert cli.ok("queues", "pause", "mail", "idle").stdout == "paused mail, idle\n"
    summary = {item["name"]: item for item in cli.json("queues")["queues"]}
    assert summary["mail"]["paused"]
    assert summary["idle"]["paused"]  # a paused queue shows even with no tasks
    assert not summary["reports"]["paused"]
    human = cli.ok("queues").stdout
    assert "mail" in human
    assert "2/0/1" in human
    assert "yes" in human

    assert cli.ok("queues", "resume", "mail", "idle").stdout == "resumed mail, idle\n"
    assert not any(item["paused"] for item in cli.json("queues")["queues"])


def test_queues_show_each_queue_rate_summed_over_the_instances(tmp_path: Path) -> None:
    from taskengine.telemetry.report import InstanceTelemetry
    from tests.cli.test_instances import record_report

    cli = Cli(tmp_path)
    cli.submit("time.sleep", {"seconds": 0}, "--queue", "mail")
    now = time.time()
    for name, rates in (("a:1:x", {"mail": 1.25, "gone": 0.5}), ("b:2:y", {"mail": 0.5})):
        report = InstanceTelemetry(
            instance=name, host="h", pid=1, version="0", started_at=now - 90, at=now
        )
        record_report(cli.url, msgspec.structs.replace(report, queue_rates=rates))

    summary = {item["name"]: item for item in cli.json("queues")["queues"]}
    assert summary["mail"]["rate_per_second"] == 1.75
    assert summary["mail"]["states"] == {"queued": 1}
    assert summary["gone"]["rate_per_second"] == 0.5  # ran lately, no task left: still shown
    rows = {
        cells[0]: cells
        for line in cli.ok("queues").stdout.splitlines()
        if (cells := [c.strip() for c in line.replace("┃", "│").strip("│ ").split("│")])
    }
    assert rows["mail"][rows["queue"].index("rate/s")] == "1.75"


def test_queues_json_before_the_command(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.submit("time.sleep", {"seconds": 0})
    result = cli.ok("--json", "queues")
    assert json.loads(result.stdout)["queues"][0]["name"] == "default"


def test_pause_needs_a_queue(tmp_path: Path) -> None:
    assert Cli(tmp_path).invoke("queues", "pause").exit_code == 2


def test_pause_and_resume_json(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli.json("queues", "pause", "q1") == {"paused": ["q1"]}
    assert cli.json("queues", "resume", "q1") == {"resumed": ["q1"]}


def test_migrate_creates_the_store_and_can_run_again(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    first = cli.ok("migrate")
    assert first.stdout == f"{cli.url}: storage is up to date\n"
    assert (tmp_path / "t.db").exists()
    cli.ok("migrate")  # idempotent
    assert cli.json("queues") == {"queues": []}  # the store it made is usable


def test_migrate_reports_an_unreachable_broker_and_refuses_api(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.url = "redis://:secret@127.0.0.1:1/0"
    down = cli.invoke("migrate")
    assert down.exit_code == 4, down.stderr
    assert "secret" not in down.stderr and down.stderr.startswith("error: ")
    remote = cli.runner.invoke(cli_root, ["--api", "http://127.0.0.1:1", "migrate"])
    assert remote.exit_code == 2
    assert "does not take --api" in remote.stderr


async def test_a_driver_error_names_the_broker_without_its_password() -> None:
    app = App("redis://:secret@127.0.0.1:1/0", builtins=False)

    async def refuse() -> None:
        raise RuntimeError("the driver said no")

    app.start = refuse  # type: ignore[method-assign]  # a driver error, not a typed one
    with pytest.raises(BrokerUnavailable) as raised:
        await loading._start(app)
    assert "secret" not in str(raised.value)
    assert "127.0.0.1:1" in str(raised.value) and "the driver said no" in str(raised.value)


def test_metrics_without_a_server_sum_the_instances_reports(tmp_path: Path) -> None:
    cli = Cli(tmp_path)

    async def run_three() -> str:
        app = make_app(cli.url)
        await app.start()
        engine = app.engine(workers=2)
        await engine.start()
        try:
            ids = [await app.submit("test.echo", n) for n in range(3)]
            for task_id in ids:
                await app.result(task_id, timeout=30)
            await engine.heartbeat_once()  # publishes the counts
        finally:
            await engine.stop()
            await app.close()
        return engine.instance

    instance = asyncio.run(run_three())
    figures = cli.json("metrics")
    assert figures["source"] == "broker"
    assert figures["outcomes"]["succeeded"] == 3
    assert [item["instance"] for item in figures["instances"]] == [instance]
    table = cli.ok("metrics").stdout
    assert "instances (1)" in table
