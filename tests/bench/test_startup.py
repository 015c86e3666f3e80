"""The start-up benchmark: one spawn of `taskengine worker`, its first task, the idle engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import startup

pytestmark = pytest.mark.slow


def test_one_spawn_reports_its_first_task_and_an_idle_engine_without_children(
    tmp_path: Path,
) -> None:
    seconds, rss, pss, children = startup.one_run(f"sqlite:///{tmp_path}/s.db", 1, startup.APP)
    assert 0 < seconds < startup.DEADLINE
    assert 0 < pss <= rss  # a process's PSS never exceeds its RSS
    assert children == 0


def test_the_quick_start_also_times_its_first_and_second_process_task(tmp_path: Path) -> None:
    *_, children, first, second = startup.one_run(f"sqlite:///{tmp_path}/s.db", 1, None)
    assert children == 0  # measured idle, before the process tasks
    assert first > 0 and second > 0


def test_every_case_gives_its_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(url: str, processes: int, app: str | None, *, otel_sdk: bool = True) -> tuple:
        return (0.5, 30.0, 20.0, processes - 1) + (() if app else (0.4, 0.01))

    monkeypatch.setattr(startup, "one_run", fake)
    rows = {r["name"]: r["median"] for r in startup.run(runs=2, progress=lambda _: None)}
    assert rows["sqlite, worker: spawn to first task completed (s)"] == 0.5
    assert rows["redis, worker --processes 2: child processes"] == 1.0
    quick = "sqlite, worker (quick start: built-ins, no --app)"
    assert rows[f"{quick}: first process task, queued to done (s)"] == 0.4
    assert (
        "redis, worker (OpenTelemetry SDK not installed): idle RSS per engine process (MB)" in rows
    )
