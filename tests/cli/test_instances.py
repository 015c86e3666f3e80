"""`taskengine instances`: the live instances, and drain/resume/resize/shutdown (ADR 0036)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from taskengine.brokers import Control, ControlCommand, open_broker
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


def test_an_unknown_instance_is_sent_nothing(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    result = cli.invoke("instances", "drain", "nobody:1:x")
    assert result.exit_code == 1
    assert "no live instance 'nobody:1:x'" in result.stderr
    assert taken(cli.url, "nobody:1:x") == []
    assert cli.invoke("instances", "resize", "nobody:1:x", "0").exit_code == 2
