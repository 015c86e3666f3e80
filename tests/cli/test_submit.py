"""`taskengine submit`: options reach the task, and every bad input is one line and an exit code."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.support import Cli

SLEEP = json.dumps({"seconds": 0})


def test_submit_prints_the_id_and_stores_the_task(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit("cpu.primes", {"limit": 100})
    record = cli.json("status", task_id)
    assert record["type"] == "cpu.primes"
    assert record["state"] == "queued"
    assert record["payload"] == {"limit": 100}


def test_submit_options_reach_the_task(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit(
        "time.sleep",
        {"seconds": 0.01},
        "--priority",
        "HIGH",
        "--queue",
        "fast",
        "--delay",
        "60",
        "--timeout",
        "5",
        "--max-attempts",
        "3",
    )
    record = cli.json("status", task_id)
    assert record["priority"] == "HIGH"
    assert record["queue"] == "fast"
    run_at, created_at = (datetime.fromisoformat(record[k]) for k in ("run_at", "created_at"))
    assert (run_at - created_at).total_seconds() == pytest.approx(60, abs=0.01)
    assert record["timeout"] == 5
    assert record["max_attempts"] == 3


@pytest.mark.parametrize("when", ["2030-01-02T03:04:05+00:00", "1893553445"])
def test_submit_run_at_accepts_iso_and_epoch(tmp_path: Path, when: str) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit("time.sleep", {"seconds": 0.01}, "--run-at", when)
    expected = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    run_at = cli.json("status", task_id)["run_at"]
    assert run_at == "2030-01-02T03:04:05Z"  # ISO 8601 in UTC, as the API shows it
    assert datetime.fromisoformat(run_at).timestamp() == pytest.approx(expected)


def test_submit_json_and_idempotency_key(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    first = cli.json("submit", "cpu.fibonacci", "--payload", '{"n": 10}', "--idempotency-key", "k1")
    again = cli.json("submit", "cpu.fibonacci", "--payload", '{"n": 10}', "--idempotency-key", "k1")
    # as POST /api/tasks answers: the second submission found the first task
    assert first == {"id": first["id"], "created": True, "location": f"/api/tasks/{first['id']}"}
    assert again == {**first, "created": False}


def test_submit_payload_file_and_stdin(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    path = tmp_path / "payload.json"
    path.write_text('{"n": 12}')
    from_file = cli.submit("cpu.fibonacci", None, "--payload-file", str(path))
    assert cli.json("status", from_file)["payload"] == {"n": 12}
    from_stdin = cli.ok("submit", "cpu.fibonacci", "--payload-file", "-", input='{"n": 13}')
    assert cli.json("status", from_stdin.stdout.strip())["payload"] == {"n": 13}


def test_invalid_json_payload(tmp_path: Path) -> None:
    result = Cli(tmp_path).invoke("submit", "cpu.primes", "--payload", "{not json")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid JSON payload")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_unknown_task_type_lists_the_known_ones(tmp_path: Path) -> None:
    result = Cli(tmp_path).invoke("submit", "no.such.type")
    assert result.exit_code == 2
    assert "unknown task type 'no.such.type'" in result.stderr
    assert "cpu.primes" in result.stderr
    assert "time.sleep" in result.stderr


def test_invalid_payload_shows_the_validation_message(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    result = cli.invoke("submit", "cpu.primes", "--payload", '{"limit": -1}')
    assert result.exit_code == 2
    assert "invalid payload for cpu.primes" in result.stderr
    assert "$.limit" in result.stderr
    assert "Traceback" not in result.output
    # Nothing was stored.
    assert cli.json("list")["items"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delay", "5", "--run-at", "1893553445"], "run_at or delay"),
        (["--run-at", "next tuesday"], "invalid --run-at"),
        (["--max-attempts", "0"], "--max-attempts"),
        (["--timeout", "0"], "--timeout"),
        (["--wait-timeout", "1"], "--wait-timeout needs --wait"),
        (["--payload", "{}", "--payload-file", "x"], "not both"),
        (["--payload-file", "/no/such/file.json"], "cannot read payload file"),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    if not any(arg.startswith("--payload") for arg in args):
        args = [*args, "--payload", '{"seconds": 0}']
    result = Cli(tmp_path).invoke("submit", "time.sleep", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_bad_broker_url_exits_2(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.url = "redis-nope://localhost"
    result = cli.invoke("submit", "time.sleep", "--payload", '{"seconds": 0}')
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no broker serves")


def test_unreachable_broker_exits_4(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cli = Cli(tmp_path)
    cli.url = f"sqlite:///{blocker / 't.db'}"  # a directory that is a file: cannot be opened
    result = cli.invoke("list")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: cannot open SQLite store")
    assert "t.db" in result.stderr
    assert "Traceback" not in result.output


def test_queue_full_exits_3(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    full = {"TASKENGINE_MAX_DEPTH": "1"}
    assert cli.invoke("submit", "time.sleep", "--payload", SLEEP, env=full).exit_code == 0
    result = cli.invoke("submit", "time.sleep", "--payload", SLEEP, env=full)
    assert result.exit_code == 3
    assert result.stderr.startswith("error: queue full")


def test_wait_timeout_without_a_worker(tmp_path: Path) -> None:
    result = Cli(tmp_path).invoke(
        "submit", "time.sleep", "--payload", '{"seconds": 0}', "--wait", "--wait-timeout", "0.2"
    )
    assert result.exit_code == 1
    assert "did not finish within 0.2s" in result.stderr


def test_a_key_used_for_another_request_is_refused(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    first = cli.submit("time.batch", {"items": [1]}, "--idempotency-key", "k1")
    for payload in ('{"items": [2]}', '{"items": [1.0]}', '{"items": [true]}'):
        args = ["submit", "time.batch", "--payload", payload, "--idempotency-key", "k1"]
        result = cli.invoke(*args)
        assert result.exit_code == 1, (payload, result.output)
        assert result.stderr.startswith("error: idempotency key 'k1' was already used")
        assert first in result.stderr
    assert cli.submit("time.batch", {"items": [1]}, "--idempotency-key", "k1") == first


def test_wait_on_a_cancelled_task_exits_1(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit("time.sleep", {"seconds": 0}, "--idempotency-key", "same")
    cli.ok("cancel", task_id)
    result = cli.invoke(
        "--json",
        "submit",
        "time.sleep",
        "--payload",
        '{"seconds": 0}',
        "--idempotency-key",
        "same",
        "--wait",
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "CANCELLED"


UNSTORABLE = [
    ('{"items": [1, 100000000000000000000000000000]}', "$.items[1]", "the integer"),
    ('{"items": [{"n": -9223372036854775809}]}', "$.items[0].n", "the integer"),
    ('{"items": ["\\ud800"]}', "$.items[0]", "lone surrogate \\ud800"),
]


@pytest.mark.parametrize(("payload", "where", "what"), UNSTORABLE)
def test_unstorable_payload_value_is_one_line_and_exit_2(
    tmp_path: Path, payload: str, where: str, what: str
) -> None:
    cli = Cli(tmp_path)
    result = cli.invoke("submit", "time.batch", "--payload", payload)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: payload {where}: "), result.stderr
    assert "cannot be stored" in result.stderr and what in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert cli.json("list")["items"] == []  # nothing was stored


def test_wait_table_shows_the_task_id_and_times_with_their_zone(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    task_id = cli.submit("time.sleep", {"seconds": 0}, "--idempotency-key", "shown")
    cli.ok("cancel", task_id)
    again = ["submit", "time.sleep", "--payload", '{"seconds": 0}', "--idempotency-key", "shown"]
    table = cli.invoke(*again, "--wait").stdout
    assert task_id in table  # which task the result is of
    completed = next(line for line in table.splitlines() if "completed" in line)
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", completed), completed
    as_json = json.loads(cli.invoke("--json", *again, "--wait").stdout)
    assert as_json["task_id"] == task_id and as_json["completed_at"].endswith("Z")
