"""The pool options of `worker` and `serve`: Celery's short flags, prefetch and the pools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from taskengine.cli import cli, worker_cmd
from tests.cli.support import Cli


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `worker` would start, captured instead of running a pool."""
    seen: dict[str, Any] = {}

    async def serve(app: Any, overrides: dict[str, Any], *, watch_fd: int | None = None) -> None:
        seen["settings"] = app.settings.with_changes(**overrides)

    def supervise(
        state: Any, args: list[str], count: int, ports: list[int | None] | None = None
    ) -> int:
        seen["child_args"], seen["count"], seen["ports"] = args, count, ports
        return 0

    monkeypatch.setattr(worker_cmd, "serve", serve)
    monkeypatch.setattr(worker_cmd, "supervise", supervise)
    monkeypatch.setattr(
        worker_cmd, "configure_logging", lambda level: seen.setdefault("log", level)
    )
    return seen


def test_celery_short_flags_and_pool_options_reach_the_settings(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    args = ["-b", url, "worker", "-c", "7", "-Q", "mail,reports", "-l", "WARNING"]
    args += ["--prefetch", "0", "--threads", "3", "--process-pool", "2", "--grace", "4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    settings = started["settings"]
    assert settings.broker_url == url
    assert (settings.workers, settings.queues) == (7, ("mail", "reports"))
    assert (settings.prefetch, settings.threads, settings.process_pool) == (0, 3, 2)
    assert settings.shutdown_grace == 4
    assert started["log"] == "warning"


def test_the_log_level_setting_applies_when_no_option_is_given(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    env = {"TASKENGINE_LOG_LEVEL": "debug"}
    result = Cli(tmp_path).invoke("worker", env=env)
    assert result.exit_code == 0, result.output
    assert started["log"] == "debug"  # --log-level used to default to info over the variable


def test_several_processes_pass_every_pool_option_on(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    options = ["-c", "2", "--prefetch", "5", "--process-pool", "1", "-Q", "a", "-l", "info"]
    result = Cli(tmp_path).invoke("worker", "--processes", "3", *options)
    assert result.exit_code == 0, result.output
    assert started["count"] == 3
    assert started["child_args"] == [
        "--workers", "2", "--queues", "a", "--prefetch", "5", "--process-pool", "1",
        "--log-level", "info", "--processes", "1",
    ]  # fmt: skip


def test_serve_takes_the_same_pool_options() -> None:
    help_text = CliRunner().invoke(cli, ["serve", "--help"]).stdout
    for flag in (
        "-c, --workers",
        "-Q, --queues",
        "--prefetch",
        "--process-pool",
        "-l, --log-level",
    ):
        assert flag in help_text, flag


def test_a_bad_queue_name_is_refused_before_anything_starts(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    result = Cli(tmp_path).invoke("worker", "--processes", "2", "-Q", "no spaces")
    assert result.exit_code == 2
    assert "count" not in started
