"""`taskengine instances`: the live instances, and drain/resume/resize/shutdown (ADR 0036)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from taskengine.brokers import Control, ControlCommand, open_broker
from taskengine.telemetry.report import InstanceTelemetry, encode_report
from tests.cli.support import Cli
from tests.cli.test_admin import record_workers, worker_info


def taken(url: str, instance: str) -> list[Control]:
    async def main() -> list[Control]:
        broker = open_broker(url)
        await broker.start()
        try:
            return await broker.take_controls(instance)
        finally:
            await broker.close()

    return asyncio.run(main())


def test_instances_table_json_and_controls(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert "no live instances" in cli.ok("instances").stdout
    now = time.time()
    record_workers(
        cli.url, [worker_info(1, task="t1", now=now), worker_info(2, task=None, now=now)]
    )

    out = cli.ok("instances").stdout
    for text in ("host:1:abc", "taking tasks", "2"):
        assert text in out, text
    [view] = cli.json("instances")["instances"]  # as GET /api/instances answers
    assert view["instance"] == "host:1:abc"
    assert (view["workers"], view["busy"], view["processed"]) == (2, 1, 21)
    assert view["draining"] is False

    assert "drain sent to host:1:abc" in cli.ok("instances", "drain", "host:1:abc").stdout
    cli.ok("instances", "resize", "host:1:abc", "3")
    cli.ok("instances", "resume", "host:1:abc")
    cli.ok("instances", "shutdown", "host:1:abc")
    sent = taken(cli.url, "host:1:abc")
    assert [(c.command, c.size) for c in sent] == [
        (ControlCommand.DRAIN, None),
        (ControlCommand.RESIZE, 3),
        (ControlCommand.RESUME, None),
        (ControlCommand.SHUTDOWN, None),
    ]


def record_report(url: str, report: InstanceTelemetry) -> None:
    async def main() -> None:
        broker = open_broker(url)
        await broker.start()
        try:
            await broker.record_instance(report.instance, encode_report(report), report.at, 60.0)
        finally:
            await broker.close()

    asyncio.run(main())


def test_instances_show_version_and_rss_as_each_reports(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    now = time.time()
    first = worker_info(1, task=None, now=now)
    second = msgspec.structs.replace(first, id="other:2:def/w1", instance="other:2:def", pid=2)
    record_workers(cli.url, [first, second])
    report = InstanceTelemetry(
        instance="host:1:abc",
        host="host",
        pid=1,
        version="9.8.7",
        started_at=now - 11.0,
        at=now,
        rss_bytes=123 * 2**20,
    )
    record_report(cli.url, report)  # the other instance has not reported yet

    views = {v["instance"]: v for v in cli.json("instances")["instances"]}
    assert (views["host:1:abc"]["version"], views["host:1:abc"]["rss_bytes"]) == (
        "9.8.7",
        123 * 2**20,
    )
    assert (views["other:2:def"]["version"], views["other:2:def"]["rss_bytes"]) == (None, None)
    out = cli.ok("instances").stdout
    rows = {
        cells[0]: cells
        for line in out.splitlines()
        if (cells := [c.strip() for c in line.replace("┃", "│").strip("│ ").split("│")])
    }
    header = rows["instance"]
    reported, silent = rows["host:1:abc"], rows["other:2:def"]
    assert (reported[header.index("version")], reported[header.index("RSS")]) == (
        "9.8.7",
        "123 MiB",
    )
    assert (silent[header.index("version")], silent[header.index("RSS")]) == ("-", "-")


def test_an_unknown_instance_is_sent_nothing(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    result = cli.invoke("instances", "drain", "nobody:1:x")
    assert result.exit_code == 1
    assert "no live instance 'nobody:1:x'" in result.stderr
    assert taken(cli.url, "nobody:1:x") == []
    assert cli.invoke("instances", "resize", "nobody:1:x", "0").exit_code == 2
