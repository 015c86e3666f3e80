"""`bench`: small runs on memory:// and SQLite; bad input and shared brokers are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from taskengine.cli import cli

SMALL = ["--tasks", "200", "--runs", "1", "--workers", "10"]
FIGURES = {
    (workload, figure)
    for workload in ("noop", "io")
    for figure in ("submit", "drain", "end-to-end")
}


def bench(broker: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--broker", broker, "bench", *args])


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_json_has_every_figure(tmp_path: Path, kind: str) -> None:
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'mine.db'}"
    result = bench(url, *SMALL, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    found = json.loads(result.stdout)
    assert found["broker"] == url
    assert found["settings"] == {
        "workloads": ["noop", "io"],
        "tasks": {"noop": 200, "io": 200},
        "runs": 1,
        "workers": 10,
    }
    assert found["machine"]["cpus"] >= 1
    assert found["machine"]["python"]
    assert {(item["workload"], item["figure"]) for item in found["figures"]} == FIGURES
    for item in found["figures"]:
        assert item["unit"] == "tasks/s"
        assert 0 < item["min"] <= item["median"] <= item["max"]
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    if kind == "sqlite":  # fresh files per run, removed after; the given file is not opened
        assert list(tmp_path.iterdir()) == []


def test_table_names_each_figure() -> None:
    result = bench("memory://", *SMALL, "--workload", "noop")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    for name in ("noop submit", "noop drain", "noop end-to-end", "median", "min", "max"):
        assert name in result.stdout, name
    assert "io " not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "0"], "'--tasks': 0 is not in the range"),
        (["--runs", "0"], "'--runs': 0 is not in the range"),
        (["--workload", "cpu"], "'--workload': 'cpu' is not one of"),
    ],
)
def test_bad_input_is_a_usage_error(args: list[str], message: str) -> None:
    result = bench("memory://", *args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "url", ["redis://:secret@localhost:6379/0", "postgresql://me:secret@localhost/tasks"]
)
def test_shared_broker_needs_yes(url: str) -> None:
    result = bench(url, *SMALL)
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert "secret" not in result.stderr


def test_refuses_api() -> None:
    result = CliRunner().invoke(cli, ["--api", "http://127.0.0.1:9", "bench"])
    assert result.exit_code == 2
    assert "does not take --api" in result.stderr
