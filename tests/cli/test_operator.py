"""`bulk`, `scheduled`, `retrying` and `queues purge` against a broker (no server)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from tests.cli.support import Cli


def _states(cli: Cli, ids: list[str]) -> list[str | None]:
    found = []
    for task_id in ids:
        result = cli.invoke("status", task_id, "--json")
        found.append(None if result.exit_code != 0 else json.loads(result.stdout)["state"])
    return found


def test_queues_purge_asks_then_deletes_the_queued_tasks(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    ids = [cli.submit("cpu.primes", {"limit": 10}, "--queue", "gone") for _ in range(3)]
    kept = cli.submit("cpu.primes", {"limit": 10}, "--queue", "stays")

    refused = cli.invoke("queues", "purge", "gone", input="n\n")
    assert refused.exit_code == 1
    assert _states(cli, ids) == ["queued"] * 3

    assert "purged 3 queued tasks of gone" in cli.ok("queues", "purge", "gone", "--yes").stdout
    assert _states(cli, ids) == [None] * 3
    assert _states(cli, [kept]) == ["queued"]
    assert cli.json("queues", "purge", "gone", "--yes") == {"queue": "gone", "purged": 0}


def test_bulk_by_ids_and_by_filter(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    ids = [cli.submit("cpu.primes", {"limit": 10}, "--queue", "b") for _ in range(4)]

    assert "cancel: 2 tasks changed" in cli.ok("bulk", "cancel", *ids[:2]).stdout
    assert cli.json("bulk", "cancel", "--queue", "b", "--yes") == {"action": "cancel", "touched": 2}
    replayed = cli.ok("bulk", "replay", "--queue", "b", "--state", "cancelled", input="y\n")
    assert "replay: 4 tasks changed" in replayed.stdout
    cli.ok("bulk", "cancel", "--queue", "b", "--yes")
    assert "delete: 4 tasks changed" in cli.ok("bulk", "delete", "--queue", "b", "--yes").stdout
    assert _states(cli, ids) == [None] * 4
    assert cli.invoke("bulk", "cancel", ids[0], "--queue", "b").exit_code == 2


def test_scheduled_and_retrying_lists(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    later = cli.submit("cpu.primes", {"limit": 10}, "--delay", "3600")
    now = cli.submit("cpu.primes", {"limit": 10})

    listed = [item["id"] for item in cli.json("scheduled")["items"]]
    assert listed == [later]
    assert now not in cli.ok("scheduled").stdout
    assert cli.json("retrying") == {"items": [], "next_cursor": None}


def test_types_lists_the_registered_types(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    types = {view["name"]: view for view in cli.json("types")["types"]}
    assert types["cpu.primes"]["submittable"] is True
    assert types["cpu.primes"]["instances"] == []  # no engine runs: none live
    assert "cpu.primes" in cli.ok("types").stdout


def test_periodic_list_disable_enable(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    entry = {"name": "tick", "cron": "*/5 * * * *", "type": "time.sleep", "payload": {"seconds": 0}}
    env = {"TASKENGINE_CRON": json.dumps([entry])}

    listed = json.loads(cli.invoke("periodic", "--json", env=env).stdout)["periodic"]
    assert [(p["name"], p["enabled"], p["leader"]) for p in listed] == [("tick", True, None)]
    disabled = cli.invoke("periodic", "disable", "tick", env=env)
    assert disabled.exit_code == 0, disabled.stderr
    assert "disabled tick" in disabled.stdout
    listed = json.loads(cli.invoke("periodic", "--json", env=env).stdout)["periodic"]
    assert listed[0]["enabled"] is False
    assert "no" in cli.invoke("periodic", env=env).stdout
    assert cli.invoke("periodic", "enable", "tick", env=env).exit_code == 0
    missing = cli.invoke("periodic", "disable", "nope", env=env)
    assert missing.exit_code == 1
    assert "no periodic task 'nope'" in missing.stderr


def between(earlier: str, later: str) -> str:
    """The RFC 3339 time halfway between two shown times (a time shown to the microsecond may
    lie a rounding just after the instant it shows: not a safe bound)."""
    a, b = (datetime.fromisoformat(t) for t in (earlier, later))
    return (a + (b - a) / 2).isoformat().replace("+00:00", "Z")


def test_list_and_bulk_take_a_creation_time_range(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    first = cli.submit("cpu.primes", {"limit": 10}, "--queue", "t")
    second = cli.submit("cpu.primes", {"limit": 10}, "--queue", "t")
    boundary = between(*(cli.json("status", t)["created_at"] for t in (first, second)))

    def listed(*args: str) -> list[str]:
        return [item["id"] for item in cli.json("list", "--queue", "t", *args)["items"]]

    assert listed("--created-after", boundary) == [second]
    assert listed("--created-before", boundary) == [first]
    seconds = datetime.fromisoformat(boundary).timestamp()  # epoch seconds are taken too
    assert listed("--created-after", f"{seconds - 3600:.3f}") == [second, first]
    assert cli.invoke("list", "--created-after", "yesterday").exit_code == 2
    assert cli.json("bulk", "cancel", "--created-before", boundary, "--yes") == {
        "action": "cancel",
        "touched": 1,
    }
    assert _states(cli, [first, second]) == ["cancelled", "queued"]
