"""`submit --depends-on` and `workflow show|cancel|replay` against a temporary SQLite broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from taskengine.app import App
from taskengine.workflows import chain, signature
from tests.cli.support import Cli


def _chain(url: str) -> tuple[str, dict[str, str]]:
    """Submit a two-step chain of time.sleep tasks directly; its id and task ids."""

    async def main() -> tuple[str, dict[str, str]]:
        async with App(url, builtins=True) as app:
            flow = chain(
                signature("time.sleep", {"seconds": 0}, delay=3600.0),
                signature("time.sleep", {"seconds": 0}),
            )
            submitted = await app.submit_workflow(flow)
            return submitted.id, submitted.tasks

    return asyncio.run(main())


def test_submit_depends_on_leaves_the_task_blocked(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    parent = cli.submit("time.sleep", {"seconds": 0})
    child = cli.submit("time.sleep", {"seconds": 0}, "--depends-on", parent)

    view = cli.json("status", child)
    assert view["state"] == "blocked"
    assert view["depends_on"] == [parent]
    assert "blocked" in cli.ok("status", child).stdout
    assert [i["id"] for i in cli.json("list", "--state", "blocked")["items"]] == [child]


def test_submit_depends_on_an_unknown_task_is_refused(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    result = cli.invoke(
        "submit",
        "time.sleep",
        "--payload",
        '{"seconds": 0}',
        "--depends-on",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    )
    assert result.exit_code != 0
    assert "depends on unknown tasks: 01ARZ3NDEKTSV4RRFFQ69G5FAV" in result.stderr


def test_workflow_show_cancel_and_replay(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    workflow_id, tasks = _chain(cli.url)

    shown = cli.json("workflow", "show", workflow_id)
    assert shown["state"] == "running"
    assert [n["state"] for n in shown["nodes"]] == ["queued", "blocked"]
    assert shown["edges"] == [[tasks["0"], tasks["1"]]]
    assert f"workflow {workflow_id}: running" in cli.ok("workflow", "show", workflow_id).stdout

    assert cli.json("workflow", "cancel", workflow_id)["tasks"] == {
        tasks["0"]: "cancelled",
        tasks["1"]: "cancelled",
    }
    assert cli.invoke("workflow", "cancel", workflow_id).exit_code == 1  # nothing left

    assert cli.json("workflow", "replay", workflow_id)["tasks"] == {
        tasks["0"]: "replayed",
        tasks["1"]: "replayed",
    }
    nodes = cli.json("workflow", "show", workflow_id)["nodes"]
    assert [n["state"] for n in nodes] == ["queued", "blocked"]


def test_workflow_show_of_an_unknown_id(tmp_path: Path) -> None:
    result = Cli(tmp_path).invoke("workflow", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert result.exit_code == 1
    assert "no workflow" in result.stderr
