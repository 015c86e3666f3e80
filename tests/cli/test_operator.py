"""`bulk`, `scheduled`, `retrying` and `queues purge` against a broker (no server)."""

from __future__ import annotations

import json
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
