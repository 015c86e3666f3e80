"""`taskengine limits`: list, set and clear rate and concurrency limits (ADR 0038)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.support import Cli


def test_limits_set_list_and_clear(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli.json("limits") == {"limits": []}

    cli.ok("limits", "set", "type", "mail.send", "--rate", "100/s", "--max-concurrency", "4")
    cli.ok("limits", "set", "queue", "bulk", "--max-concurrency", "2")
    assert cli.json("limits") == {
        "limits": [
            {"scope": "queue", "name": "bulk", "max_concurrency": 2, "rate": None, "burst": None},
            {
                "scope": "type",
                "name": "mail.send",
                "max_concurrency": 4,
                "rate": 100.0,
                "burst": 10,
            },
        ]
    }
    assert "mail.send" in cli.ok("limits").stdout

    cli.ok("limits", "clear", "queue", "bulk")
    assert [item["name"] for item in cli.json("limits")["limits"]] == ["mail.send"]


def test_a_bad_limit_is_a_usage_error(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    result = cli.invoke("limits", "set", "type", "t", "--rate", "fast")
    assert result.exit_code == 2
    assert "rate" in result.stderr
    assert cli.invoke("limits", "set", "host", "t", "--max-concurrency", "1").exit_code == 2
