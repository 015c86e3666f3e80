"""Dead letters: a test App's always-failing task dies, then `dlq list`, `dlq replay`, `retry`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.support import APP_PATH, Cli, run_worker_until_idle


def make_dead(cli: Cli, count: int) -> list[str]:
    ids = [cli.submit("test.fail", {"n": n}) for n in range(count)]
    run_worker_until_idle(cli.url)
    for task_id in ids:
        assert cli.json("status", task_id)["state"] == "dead"
    return ids


def test_app_option_loads_the_test_app(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP_PATH)
    bad = cli.invoke("submit", "cpu.primes", "--payload", '{"limit": 5}')
    assert bad.exit_code == 2
    assert "known types: test.echo, test.fail" in bad.stderr


def test_bad_app_option(tmp_path: Path) -> None:
    for path, message in [
        ("nocolon", "use module:attribute"),
        ("no_such_module_xyz:app", "cannot import"),
        ("tests.cli.support:nothing", "has no attribute"),
        ("tests.cli.support:APP_PATH", "expected a taskengine App"),
    ]:
        result = Cli(tmp_path, app_path=path).invoke("list")
        assert result.exit_code == 2, path
        assert message in result.stderr, (path, result.stderr)


def test_dead_task_in_status_and_dlq_list(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP_PATH)
    (task_id,) = make_dead(cli, 1)
    record = cli.json("status", task_id)
    assert record["result"]["status"] == "FAILURE"
    assert "boom" in record["result"]["error"]
    assert [line["status"] for line in record["history"]] == ["FAILURE"]

    human = cli.ok("status", task_id).stdout
    assert "history" in human
    assert "boom" in human

    page = cli.json("dlq", "list")
    assert [item["id"] for item in page["items"]] == [task_id]
    listed = cli.ok("dlq", "list").stdout
    assert task_id in listed
    assert "boom" in listed


def test_dlq_replay_by_id_and_all(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP_PATH)
    first, second, third = make_dead(cli, 3)

    out = cli.ok("dlq", "replay", first).stdout
    assert out == "replayed 1 task\n"
    replayed = cli.json("status", first)
    assert replayed["state"] == "queued"
    assert replayed["attempt"] == 0

    assert cli.ok("dlq", "replay", "--all").stdout == "replayed 2 tasks\n"
    assert cli.json("dlq", "list")["items"] == []
    for task_id in (second, third):
        assert cli.json("status", task_id)["state"] == "queued"


def test_dlq_replay_reports_refusals(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP_PATH)
    (dead,) = make_dead(cli, 1)
    queued = cli.submit("test.echo", {"x": 1}, "--delay", "3600")
    result = cli.invoke("--json", "dlq", "replay", dead, queued, "01NOPE")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["results"] == {
        dead: "replayed",
        queued: "not_replayable",
        "01NOPE": "not_found",
    }
    assert f"error: {queued}: not dead or cancelled" in result.stderr
    assert "error: 01NOPE: no such task" in result.stderr


def test_dlq_replay_needs_ids_or_all(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli.invoke("dlq", "replay").exit_code == 2
    assert cli.invoke("dlq", "replay", "--all", "01X").exit_code == 2


def test_retry_a_dead_task(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP_PATH)
    (task_id,) = make_dead(cli, 1)
    assert cli.ok("retry", task_id).stdout == f"queued {task_id} again\n"
    assert cli.json("status", task_id)["state"] == "queued"


def test_wait_on_a_dead_task_prints_the_failure_and_exits_1(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP_PATH)
    cli.submit("test.fail", {}, "--idempotency-key", "k")
    run_worker_until_idle(cli.url)
    # The same key returns the dead task, so --wait finds it finished at once.
    result = cli.invoke(
        "submit", "test.fail", "--payload", "{}", "--idempotency-key", "k", "--wait"
    )
    assert result.exit_code == 1
    assert "FAILURE" in result.stdout
    assert "boom" in result.stdout
