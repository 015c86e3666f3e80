"""The client commands with `--api`: a real `taskengine serve` subprocess driven over HTTP.

One server per module (with tokens, so auth is exercised too), stopped with SIGTERM at the end.
Where it matters, the remote answer is compared with the direct mode's on the same database.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from taskengine.app import App
from taskengine.cli import cli
from taskengine.cli.errors import EXIT_FAILURE, EXIT_QUEUE_FULL, EXIT_UNAVAILABLE, EXIT_USAGE
from taskengine.cli.remote import http_error
from tests.cli.support import register
from tests.cli.test_operator import between

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-token-0123456789abcdef"
READER = "read-token-0123456789abcdef"


def server_app() -> App:
    """The served App: the built-in types plus the test ones (test.echo, test.fail)."""
    return register(App(builtins=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    broker: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("remote")
    broker = f"sqlite:///{tmp / 'r.db'}"
    port = free_port()
    log = tmp / "serve.log"
    env = {
        **os.environ,
        "TASKENGINE_API_TOKENS": f"admin:{ADMIN},read:{READER}",
        "TASKENGINE_DATA_DIR": str(tmp / "data"),
    }
    env.pop("TASKENGINE_API_URL", None)
    command = [
        sys.executable,
        "-m",
        "taskengine",
        "--broker",
        broker,
        "--app",
        "tests.cli.test_remote:server_app",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--grace",
        "5",
        "--log-level",
        "warning",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.05)
    yield Server(url, broker, process, log)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the server did not stop on SIGTERM:\n{log.read_text()}")
    assert code == 0, log.read_text()


class Remote:
    """Runs `taskengine --api <server> --token <admin> ...` in-process."""

    def __init__(self, server: Server, token: str | None = ADMIN) -> None:
        self.server = server
        self.token = token
        self.runner = CliRunner()

    def invoke(self, *args: str, env: dict[str, str] | None = None) -> Result:
        prefix = ["--api", self.server.url]
        if self.token is not None:
            prefix += ["--token", self.token]
        return self.runner.invoke(cli, [*prefix, *args], env=env)

    def ok(self, *args: str) -> Result:
        result = self.invoke(*args)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok("--json", *args).stdout)

    def direct(self, *args: str) -> Result:
        """The same command in direct mode, on the server's database."""
        return self.runner.invoke(
            cli,
            ["--broker", self.server.broker, "--app", "tests.cli.test_remote:server_app", *args],
        )

    def rest(self, path: str, **params: Any) -> Any:
        """The REST API's own JSON answer for `path`."""
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.get(f"{self.server.url}{path}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def direct_json(self, *args: str) -> Any:
        """The same command's --json in direct mode."""
        result = self.direct("--json", *args)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)

    def submit(self, task_type: str, payload: Any = None, *options: str) -> str:
        args = ["submit", task_type, *options]
        if payload is not None:
            args += ["--payload", json.dumps(payload)]
        task_id = self.ok(*args).stdout.strip()
        assert len(task_id) == 26, task_id
        return task_id

    def wait_state(self, task_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record: dict[str, Any] = self.json("status", task_id)
            if record["state"] == state or time.monotonic() > deadline:
                assert record["state"] == state, record
                return record
            time.sleep(0.05)


@pytest.fixture
def remote(server: Server) -> Remote:
    return Remote(server)


def test_submit_and_wait(remote: Remote) -> None:
    result = remote.ok("submit", "test.echo", "--payload", '{"hello": "remote"}', "--wait")
    assert "SUCCESS" in result.stdout
    assert '{"hello":"remote"}' in result.stdout
    answer = remote.json("submit", "test.echo", "--payload", "[1, 2]", "--wait")
    assert answer["status"] == "SUCCESS"
    assert answer["data"] == [1, 2]


def test_submit_options_and_status_match_the_direct_mode(remote: Remote) -> None:
    options = ["--priority", "HIGH", "--queue", "later", "--delay", "3600", "--timeout", "5"]
    options += ["--max-attempts", "3", "--idempotency-key", "remote-k1"]
    task_id = remote.submit("time.sleep", {"seconds": 0.01}, *options)
    record = remote.json("status", task_id)
    assert record["priority"] == "HIGH"
    assert record["queue"] == "later"
    run_at, created_at = (datetime.fromisoformat(record[k]) for k in ("run_at", "created_at"))
    assert (run_at - created_at).total_seconds() == pytest.approx(3600, abs=0.01)
    assert (record["timeout"], record["max_attempts"]) == (5, 3)
    assert record["idempotency_key"] == "remote-k1"
    assert remote.submit("time.sleep", {"seconds": 0.01}, *options) == task_id
    # the server refuses the same key with another request (409: exit 1)
    conflict = remote.invoke(
        "submit", "time.sleep", "--payload", '{"seconds": 1}', "--idempotency-key", "remote-k1"
    )
    assert conflict.exit_code == EXIT_FAILURE
    assert "was already used for another task" in conflict.stderr
    whole = ["submit", "time.sleep", "--delay", "3600", "--idempotency-key", "remote-k2"]
    kept = remote.submit("time.sleep", {"seconds": 0}, *whole[2:])
    again = remote.invoke(*whole, "--payload", '{"seconds": 0.0}')  # == in Python, not in JSON
    assert again.exit_code == EXIT_FAILURE and kept in again.stderr

    direct = remote.direct("--json", "status", task_id)
    assert direct.exit_code == 0, direct.stderr
    assert json.loads(direct.stdout) == record  # the same record, field for field
    human = remote.ok("status", task_id).stdout
    assert human == remote.direct("status", task_id).stdout  # the same table
    assert "later" in human and "high" in human and "0/3" in human
    remote.ok("cancel", task_id)


def test_cli_json_is_the_rest_json_for_tasks_in_both_modes(remote: Remote) -> None:
    queued = remote.submit("test.echo", {"k": [1]}, "--queue", "same", "--delay", "3600")
    dead = remote.submit("test.fail", None, "--queue", "same", "--priority", "low")
    remote.wait_state(dead, "dead")  # a result and a history, both with times
    for task_id in (queued, dead):
        served = remote.rest(f"/api/tasks/{task_id}")
        assert remote.json("status", task_id) == served
        assert remote.direct_json("status", task_id) == served
    assert served["priority"] == "LOW" and served["created_at"].endswith("Z")
    assert served["history"][0]["finished_at"].endswith("Z")

    listed = remote.rest("/api/tasks", queue="same")
    assert [item["id"] for item in listed["items"]] == [dead, queued]
    assert remote.json("list", "--queue", "same") == listed
    assert remote.direct_json("list", "--queue", "same") == listed
    submit = ["submit", "test.echo", "--payload", "1", "--delay", "3600"]
    first = remote.json(*submit, "--idempotency-key", "same-json")
    assert first == {"id": first["id"], "created": True, "location": f"/api/tasks/{first['id']}"}
    body = {"type": "test.echo", "payload": 1, "delay": 3600, "idempotency_key": "same-json"}
    served_submit = httpx.post(
        f"{remote.server.url}/api/tasks", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert served_submit == {**first, "created": False}
    assert remote.direct_json(*submit, "--idempotency-key", "same-json") == served_submit
    remote.ok("cancel", first["id"])
    dead_letters = remote.rest("/api/dead-letters", limit=1)
    assert remote.json("dlq", "list", "--limit", "1") == dead_letters
    assert remote.direct_json("dlq", "list", "--limit", "1") == dead_letters
    remote.ok("cancel", queued)


def test_cli_json_is_the_rest_json_for_queues_in_both_modes(remote: Remote) -> None:
    remote.submit("test.echo", 1, "--queue", "sameq", "--priority", "high", "--delay", "3600")
    remote.ok("queues", "pause", "sameq", "emptyq")
    try:
        served = remote.rest("/api/queues")
        assert set(served) == {"queues"}
        # other tests' queues may still change while the server's workers run: compare these
        ours = {"sameq", "emptyq"}

        def mine(answer: Any) -> list[Any]:
            return [view for view in answer["queues"] if view["name"] in ours]

        assert len(mine(served)) == 2
        assert mine(remote.json("queues")) == mine(served)
        assert mine(remote.direct_json("queues")) == mine(served)
        assert mine(served)[1]["queued_by_priority"] == {"HIGH": 1}
    finally:
        remote.ok("queues", "resume", "sameq", "emptyq")


def test_list_and_bulk_by_creation_time_in_both_modes(remote: Remote) -> None:
    first, second = (
        remote.submit("test.echo", n, "--queue", "range", "--delay", "3600") for n in range(2)
    )
    boundary = between(*(remote.json("status", t)["created_at"] for t in (first, second)))
    after = ["list", "--queue", "range", "--created-after", boundary]
    assert (
        remote.json(*after)
        == remote.direct_json(*after)
        == remote.rest("/api/tasks", queue="range", created_after=boundary)
    )
    assert [item["id"] for item in remote.json(*after)["items"]] == [second]
    cancel = ["bulk", "cancel", "--queue", "range", "--created-before", boundary, "--yes"]
    assert remote.json(*cancel) == {"action": "cancel", "touched": 1}
    assert remote.json("status", first)["state"] == "cancelled"


def test_list_json_filters_and_pages(remote: Remote, monkeypatch: pytest.MonkeyPatch) -> None:
    made = [remote.submit("test.echo", n, "--queue", "pages", "--delay", "3600") for n in range(3)]
    page = remote.json("list", "--queue", "pages")
    assert [item["id"] for item in page["items"]] == made[::-1]
    assert page["next_cursor"] is None
    assert remote.json("list", "--queue", "pages", "--state", "succeeded")["items"] == []

    first = remote.json("list", "--queue", "pages", "--limit", "2")
    assert [item["id"] for item in first["items"]] == made[:0:-1]
    rest = remote.json("list", "--queue", "pages", "--cursor", first["next_cursor"])
    assert [item["id"] for item in rest["items"]] == made[:1]
    assert (
        f"--cursor {first['next_cursor']}"
        in remote.ok("list", "--queue", "pages", "--limit", "2").stdout
    )

    # --limit beyond the API's page size is fetched page by page
    monkeypatch.setattr("taskengine.cli.remote.MAX_PAGE", 2)
    assert [item["id"] for item in remote.json("list", "--queue", "pages")["items"]] == made[::-1]
    for task_id in made:
        remote.ok("cancel", task_id)
    assert len(remote.json("list", "--queue", "pages", "--state", "cancelled")["items"]) == 3


def test_cancel(remote: Remote) -> None:
    task_id = remote.submit("test.echo", 1, "--delay", "3600")
    assert remote.ok("cancel", task_id).stdout == f"cancelled {task_id}\n"
    assert remote.json("status", task_id)["state"] == "cancelled"
    again = remote.invoke("cancel", task_id)
    assert again.exit_code == EXIT_FAILURE
    assert again.stderr == f"error: task {task_id} already finished: nothing to cancel\n"


def test_cancel_and_retry_unknown_ids(remote: Remote) -> None:
    for command in ("cancel", "retry", "status"):
        result = remote.invoke(command, "01NOPE")
        assert result.exit_code == EXIT_FAILURE, (command, result.stderr)
        assert result.stderr == "error: no task '01NOPE'\n", command
        assert result.stdout == ""


def test_dead_task_dlq_and_retry(remote: Remote) -> None:
    dead = remote.invoke("submit", "test.fail", "--wait")
    assert dead.exit_code == EXIT_FAILURE
    assert "FAILURE" in dead.stdout and "boom" in dead.stdout
    task_id = remote.json("list", "--type", "test.fail", "--limit", "1")["items"][0]["id"]
    record = remote.json("status", task_id)
    assert record["state"] == "dead"
    assert "RuntimeError: boom" in record["history"][0]["traceback"]
    human = remote.ok("status", task_id).stdout  # over HTTP, as in the direct mode
    assert "traceback of attempt 1" in human and "in always_fail" in human

    listed = remote.json("dlq", "list")
    assert task_id in [item["id"] for item in listed["items"]]
    table = remote.ok("dlq", "list").stdout
    assert "dead letters" in table and task_id in table and "boom" in table

    assert remote.ok("retry", task_id).stdout == f"queued {task_id} again\n"
    record = remote.wait_state(task_id, "dead")
    assert len(record["history"]) == 2

    refused = remote.invoke("retry", remote.submit("test.echo", 1, "--delay", "3600"))
    assert refused.exit_code == EXIT_FAILURE
    assert "is not dead or cancelled: nothing to retry" in refused.stderr

    replay = remote.invoke("--json", "dlq", "replay", task_id, "01NOPE")
    assert replay.exit_code == EXIT_FAILURE
    assert json.loads(replay.stdout) == {"results": {task_id: "replayed", "01NOPE": "not_found"}}
    assert replay.stderr == "error: 01NOPE: no such task\n"
    remote.wait_state(task_id, "dead")


def test_workers(remote: Remote) -> None:
    deadline = time.monotonic() + 15
    while not (found := remote.json("workers")["workers"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(found) == 2
    assert {item["id"].rsplit("/", 1)[1] for item in found} == {"w1", "w2"}
    assert all(0 <= item["busy_ratio"] <= 1 for item in found)
    table = remote.ok("workers").stdout
    assert found[0]["id"] in table and "ago" in table
    assert "no workers" in remote.ok("workers", "--since", "0").stdout


def test_queues_pause_and_resume(remote: Remote) -> None:
    remote.submit("test.echo", 1, "--queue", "remoteq", "--priority", "low", "--delay", "3600")
    assert remote.ok("queues", "pause", "remoteq", "other").stdout == "paused remoteq, other\n"
    summary = {item["name"]: item for item in remote.json("queues")["queues"]}
    assert summary["remoteq"]["paused"] is True
    assert summary["other"]["paused"] is True
    assert summary["remoteq"]["states"]["queued"] == 1
    assert summary["remoteq"]["queued_by_priority"] == {"LOW": 1}
    assert summary["remoteq"]["oldest_queued_at"] is not None
    table = remote.ok("queues").stdout
    assert "remoteq" in table and "0/0/1" in table and "yes" in table
    assert remote.json("queues", "resume", "remoteq", "other") == {"resumed": ["remoteq", "other"]}
    assert not any(item["paused"] for item in remote.json("queues")["queues"])
    bad = remote.invoke("queues", "pause", "no spaces")
    assert bad.exit_code == EXIT_USAGE
    assert bad.stderr.startswith("error: ")


def test_metrics_from_the_server_and_from_the_broker(remote: Remote) -> None:
    remote.ok("submit", "test.echo", "--payload", "1", "--wait")
    served = remote.json("metrics")
    assert served["source"] == "server"
    assert served["submitted"] >= 1 and served["outcomes"]["succeeded"] >= 1
    assert served["pool"]["size"] == 2
    table = remote.ok("metrics").stdout
    assert "metrics (server)" in table and "throughput.per_second_10s" in table
    direct = remote.direct("metrics", "--json")
    assert direct.exit_code == 0, direct.stderr
    assert json.loads(direct.stdout)["source"] == "broker"


def test_metrics_without_api_are_the_servers_broker_figures(remote: Remote) -> None:
    remote.ok("queues", "pause", "metricsq")  # queued tasks that stay queued while we compare
    try:
        for _ in range(3):
            remote.ok("submit", "test.echo", "--payload", "1", "--queue", "metricsq")
        direct = remote.direct("metrics", "--json")
        assert direct.exit_code == 0, direct.stderr
        held = json.loads(direct.stdout)
        served = remote.json("metrics")
        assert held.pop("source") == "broker"
        assert set(held) < set(served)  # the same names: a part of /api/metrics
        counted = ("queue_depth", "queued", "running")  # the broker's own; the rest: reports
        assert {name: served[name] for name in counted} == {name: held[name] for name in counted}
        assert held["queue_depth"]["metricsq:queued"] == 3 and held["queued"] >= 3
        table = remote.direct("metrics").stdout
        assert "metrics (broker)" in table and "queue_depth.metricsq:queued" in table
    finally:
        remote.ok("queues", "resume", "metricsq")


def test_invalid_input_is_the_servers_422(remote: Remote) -> None:
    payload = remote.invoke("submit", "cpu.fibonacci", "--payload", '{"x": 1}')
    assert payload.exit_code == EXIT_USAGE
    assert payload.stderr.startswith("error: invalid payload for cpu.fibonacci")
    assert len(payload.stderr.splitlines()) == 1
    unknown = remote.invoke("submit", "no.such.type")
    assert unknown.exit_code == EXIT_USAGE
    assert unknown.stderr == "error: unknown task type 'no.such.type'\n"
    local = remote.invoke("submit", "test.echo", "--payload", "{not json")
    assert local.exit_code == EXIT_USAGE
    assert local.stderr.startswith("error: invalid JSON payload")


def test_tokens(server: Server) -> None:
    missing = Remote(server, token=None).invoke("list")
    assert missing.exit_code == EXIT_USAGE
    assert "token" in missing.stderr
    wrong = Remote(server, token="wrong-token-0123456789").invoke("status", "01NOPE")
    assert wrong.exit_code == EXIT_USAGE
    assert wrong.stderr.startswith("error: the token is not valid")
    assert "TASKENGINE_API_TOKEN" in wrong.stderr

    reader = Remote(server, token=READER)
    assert reader.invoke("list").exit_code == 0
    refused = reader.invoke("submit", "test.echo")
    assert refused.exit_code == EXIT_USAGE
    assert "admin scope" in refused.stderr and "token" in refused.stderr

    from_env = Remote(server, token=None).invoke("list", env={"TASKENGINE_API_TOKEN": ADMIN})
    assert from_env.exit_code == 0, from_env.stderr


def test_api_url_from_the_environment(server: Server) -> None:
    env = {"TASKENGINE_API_URL": server.url, "TASKENGINE_API_TOKEN": ADMIN}
    result = CliRunner().invoke(cli, ["--json", "queues"], env=env)
    assert result.exit_code == 0, result.stderr
    assert isinstance(json.loads(result.stdout)["queues"], list)


def test_unreachable_api() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["status", "01NOPE"], ["submit", "test.echo", "--wait"]):
        result = CliRunner().invoke(cli, ["--api", url, *args])
        assert result.exit_code == EXIT_UNAVAILABLE, (args, result.stderr)
        assert result.stderr.startswith(f"error: cannot reach {url}: "), result.stderr
        assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--api", "http://127.0.0.1:1", "worker"],
        ["--api", "http://127.0.0.1:1", "serve"],
        ["--api", "http://127.0.0.1:1", "--broker", "sqlite:///x.db", "list"],
        ["--token", "t" * 20, "list"],
        ["--api", "127.0.0.1:8080", "list"],
    ],
)
def test_api_option_misuse(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_USAGE, result.stderr
    assert result.stderr.startswith("error: ")


def test_broker_option_wins_over_the_api_url_in_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["--broker", f"sqlite:///{tmp_path / 'w.db'}", "list"],
        env={"TASKENGINE_API_URL": "http://127.0.0.1:1"},
    )
    assert result.exit_code == 0, result.stderr  # --broker on the command line wins
    assert "no tasks" in result.stdout


@pytest.mark.parametrize(
    ("status", "code", "exit_code", "text"),
    [
        (404, "task_not_found", EXIT_FAILURE, "no task 'x'"),
        (422, "validation_error", EXIT_USAGE, "no task 'x'"),
        (400, "invalid_json", EXIT_USAGE, "no task 'x'"),
        (429, "queue_full", EXIT_QUEUE_FULL, "no task 'x'"),
        (401, "unauthorized", EXIT_USAGE, "token"),
        (403, "forbidden", EXIT_USAGE, "token"),
        (503, "broker_unavailable", EXIT_UNAVAILABLE, "cannot reach http://h"),
        (502, None, EXIT_UNAVAILABLE, "cannot reach http://h"),
        (404, "not_found", EXIT_UNAVAILABLE, "cannot reach the Task Engine API at http://h"),
        (409, "idempotency_conflict", EXIT_FAILURE, "no task 'x'"),
        (500, "internal_error", EXIT_FAILURE, "the server at http://h failed"),
    ],
)
def test_http_errors_map_to_the_direct_modes_exit_codes(
    status: int, code: str | None, exit_code: int, text: str
) -> None:
    error = http_error("http://h", status, code, "no task 'x'")
    assert error.exit_code == exit_code
    assert text in error.message


@pytest.mark.parametrize(
    "payload", ['{"items": [100000000000000000000000000000]}', '{"items": ["\\ud800"]}']
)
def test_unstorable_payload_value_is_the_servers_422(remote: Remote, payload: str) -> None:
    result = remote.invoke("submit", "time.batch", "--payload", payload)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr.startswith("error: payload $.items[0]: "), result.stderr
    assert "cannot be stored" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["queues", "pause", "bad queue"],
        ["queues", "pause", "ok", "bad!"],
        ["queues", "resume", "q" * 129],
        ["queues", "resume", "trailing\n"],
        ["list", "--cursor", "nonsense"],
        ["list", "--cursor", "01ARZ3NDEKTSV4RRFFQ69G5FA!"],
        ["dlq", "list", "--cursor", "01234"],
    ],
    ids=lambda args: " ".join(args)[:40],
)
def test_direct_mode_refuses_what_the_api_refuses(remote: Remote, args: list[str]) -> None:
    over_api, direct = remote.invoke(*args), remote.direct(*args)
    assert over_api.exit_code == EXIT_USAGE, over_api.output
    assert direct.exit_code == EXIT_USAGE, (direct.exit_code, direct.stdout, direct.stderr)
    assert direct.stdout == ""
    assert len(direct.stderr.splitlines()) == 1, direct.stderr
    # the same words as the server's 422 (which may name the URL around them)
    assert direct.stderr.removeprefix("error: ").strip() in over_api.stderr, (
        direct.stderr,
        over_api.stderr,
    )


def test_operator_commands_over_the_api(remote: Remote) -> None:
    """instances, queues purge, bulk, scheduled, retrying, types, periodic with --api."""
    deadline = time.monotonic() + 15
    while not (found := remote.json("instances")["instances"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    [instance] = found
    # the same as the API lists, but for a heartbeat that may land between the two reads
    listed = remote.rest("/api/instances")["instances"]
    assert [{**i, "last_heartbeat": None} for i in found] == [
        {**i, "last_heartbeat": None} for i in listed
    ]
    name = instance["instance"]
    assert "resize sent" in remote.ok("instances", "resize", name, "2").stdout
    assert remote.invoke("instances", "drain", "nobody:1:x").exit_code == EXIT_FAILURE

    later = [remote.submit("test.echo", i, "--queue", "opq", "--delay", "3600") for i in range(3)]
    scheduled = [item["id"] for item in remote.json("scheduled", "--queue", "opq")["items"]]
    assert scheduled == sorted(later, reverse=True)  # newest first: by id
    assert remote.json("retrying", "--queue", "opq") == {"items": [], "next_cursor": None}
    assert remote.json("bulk", "cancel", later[0]) == {"action": "cancel", "touched": 1}
    assert remote.json("bulk", "delete", "--queue", "opq", "--yes")["touched"] == 1
    assert remote.json("queues", "purge", "opq", "--yes") == {"queue": "opq", "purged": 2}

    types = {item["name"] for item in remote.json("types")["types"]}
    assert "test.echo" in types
    assert remote.json("periodic") == {"periodic": []}
    missing = remote.invoke("periodic", "disable", "nope")
    assert missing.exit_code == EXIT_FAILURE
    assert "no periodic task 'nope'" in missing.stderr
