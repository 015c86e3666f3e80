"""`status`, `list`, `cancel` and `retry` against a temporary SQLite broker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from tests.cli.support import Cli


def test_status_human_output(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit("cpu.primes", {"limit": 50}, "--priority", "low")
    out = cli.ok("status", task_id).stdout
    assert task_id in out
    assert "cpu.primes" in out
    assert "queued" in out
    assert "0/25" in out
    assert "low" in out


def test_status_of_an_unknown_id(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    for args in (["status", "01NOPE"], ["--json", "status", "01NOPE"]):
        result = cli.invoke(*args)
        assert result.exit_code == 1
        assert result.stderr == "error: no task '01NOPE'\n"
        assert result.stdout == ""


def test_list_filters(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    high = cli.submit("time.sleep", {"seconds": 0}, "--priority", "high", "--queue", "a")
    normal = cli.submit("time.sleep", {"seconds": 0}, "--queue", "b")
    fib = cli.submit("cpu.fibonacci", {"n": 5}, "--queue", "a")
    cli.ok("cancel", normal)

    def ids(*args: str) -> list[str]:
        return [item["id"] for item in cli.json("list", *args)["items"]]

    assert ids() == [fib, normal, high]  # newest first
    assert ids("--queue", "a") == [fib, high]
    assert ids("--type", "time.sleep") == [normal, high]
    assert ids("--priority", "high") == [high]
    assert ids("--state", "cancelled") == [normal]
    assert ids("--state", "queued", "--state", "cancelled") == [fib, normal, high]
    assert ids("--queue", "a", "--type", "time.sleep") == [high]
    assert ids("--state", "dead") == []


def test_list_pages_with_a_cursor(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    made = [cli.submit("cpu.fibonacci", {"n": n}) for n in range(5)]
    first = cli.json("list", "--limit", "2")
    assert [item["id"] for item in first["items"]] == made[:-3:-1]
    second = cli.json("list", "--limit", "2", "--cursor", first["next_cursor"])
    assert [item["id"] for item in second["items"]] == made[-3:-5:-1]
    human = cli.ok("list", "--limit", "2").stdout
    assert f"--cursor {first['next_cursor']}" in human


def test_list_json_before_or_after_the_command(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit("cpu.fibonacci", {"n": 3})
    after = json.loads(cli.ok("list", "--json").stdout)
    before = json.loads(cli.ok("--json", "list").stdout)
    assert after["items"][0]["id"] == before["items"][0]["id"] == task_id
    assert after["next_cursor"] is None


def test_list_human_output(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert "no tasks" in cli.ok("list").stdout
    task_id = cli.submit("cpu.fibonacci", {"n": 3})
    out = cli.ok("list").stdout
    assert task_id in out
    assert "cpu.fibonacci" in out


def test_cancel_and_retry(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit("time.sleep", {"seconds": 0}, "--delay", "3600")
    assert cli.ok("cancel", task_id).stdout == f"cancelled {task_id}\n"
    record = cli.json("status", task_id)
    assert record["state"] == "cancelled"
    assert record["result"]["status"] == "CANCELLED"

    again = cli.invoke("cancel", task_id)
    assert again.exit_code == 1
    assert "already finished" in again.stderr

    retried = cli.json("retry", task_id)  # the task queued again, as the API answers
    assert (retried["id"], retried["state"]) == (task_id, "queued")
    assert cli.json("status", task_id) == retried

    not_dead = cli.invoke("retry", task_id)
    assert not_dead.exit_code == 1
    assert "not dead or cancelled" in not_dead.stderr


def test_cancel_and_retry_unknown_ids(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    for command in ("cancel", "retry"):
        result = cli.invoke(command, "01NOPE")
        assert result.exit_code == 1
        assert result.stderr == "error: no task '01NOPE'\n"


def test_task_list_columns_align_and_keep_one_line_per_task() -> None:
    from taskengine.cli.output import columns

    text = click.unstyle(columns(("id", "error"), [("a", "line 1\nline 2\x1b[31m"), ("bbb", "")]))
    assert text.splitlines() == ["id   error", "a    line 1\\nline 2\\x1b[31m", "bbb"]


def test_a_long_list_is_one_line_per_task_with_its_id(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    ids = [cli.submit("time.sleep", {"seconds": 0}, "--delay", "60") for _ in range(3)]
    lines = cli.ok("list", "--limit", "10000").stdout.splitlines()
    assert lines[0] == "tasks (3)"
    assert lines[1].split() == [
        "id",
        "type",
        "state",
        "priority",
        "queue",
        "attempt",
        "created",
        "error",
    ]
    assert [line.split()[0] for line in lines[2:]] == ids[::-1]
    assert all(re.search(r" \d{4}-\d\d-\d\dT[\d:.]+Z", line) for line in lines[2:])


def _failed_then_running(url: str) -> str:
    """A task whose first attempt failed with a traceback and whose second reports progress."""
    import asyncio

    from msgspec.structs import replace

    from taskengine.brokers import open_broker
    from taskengine.model import OutcomeKind, Progress, ProgressReport, new_task
    from tests.brokers.support import outcome

    async def setup() -> str:
        broker = open_broker(url)
        await broker.start()
        try:
            now = 1_700_000_000.0
            task = new_task("test.echo", {}, now=now)
            await broker.enqueue([task], now)
            [lease] = await broker.reserve("w", 1, 30.0, now)
            failed = outcome(OutcomeKind.RETRY, lease, now, run_at=now, error="KeyError: 'pages'")
            trace = (
                "Traceback (most recent call last):\n  File \"h.py\", line 3\nKeyError: 'pages'\n"
            )
            await broker.settle([replace(failed, traceback=trace)], now)
            [lease] = await broker.reserve("w", 1, 30.0, now)
            progress = Progress(done=3, total=8, note="page 3", at=now, attempt=2)
            report = ProgressReport(task_id=task.id, token=lease.token, progress=progress)
            await broker.record_progress([report], now)
            return task.id
        finally:
            await broker.close()

    return asyncio.run(setup())


def test_status_shows_progress_and_the_failed_attempts_traceback(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = _failed_then_running(cli.url)

    out = cli.ok("status", task_id).stdout
    assert "3/8 (38%)" in out and "page 3" in out
    assert "traceback of attempt 1" in out and 'File "h.py", line 3' in out

    record = cli.json("status", task_id)
    assert record["progress"]["done"] == 3 and record["progress"]["fraction"] == 0.375
    assert record["history"][0]["traceback"].endswith("KeyError: 'pages'\n")
