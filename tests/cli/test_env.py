"""Unknown TASKENGINE_* variables: one warning each at start, naming the closest known one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskengine.settings import OTHER_ENV_NAMES, unknown_env_names

ROOT = Path(__file__).resolve().parents[2]


def run_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKENGINE_")}
    return subprocess.run(
        [sys.executable, "-m", "taskengine", "--broker", f"sqlite:///{tmp_path / 't.db'}", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_misspelt_variable_is_warned_about_once_with_the_closest_name(tmp_path: Path) -> None:
    env = {
        "TASKENGINE_WORKER": "3",
        "TASKENGINE_BROKR_URL": "sqlite:///elsewhere.db",
        "TASKENGINE_API_TOKNE": "x",
        "TASKENGINE_NOTHING_LIKE_IT": "1",
        "TASKENGINE_SHUTDOWN_GRACE": "5",  # known: no warning
    }
    result = run_cli(tmp_path, env, "queues")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: unknown environment variable TASKENGINE_API_TOKNE is ignored"
        " (did you mean TASKENGINE_API_TOKEN?)",
        "warning: unknown environment variable TASKENGINE_BROKR_URL is ignored"
        " (did you mean TASKENGINE_BROKER_URL?)",
        "warning: unknown environment variable TASKENGINE_NOTHING_LIKE_IT is ignored",
        "warning: unknown environment variable TASKENGINE_WORKER is ignored"
        " (did you mean TASKENGINE_WORKERS?)",
    ], result.stderr
    assert result.stderr.count("unknown environment variable") == 4  # once each, no repeat


def test_known_variables_are_not_warned_about(tmp_path: Path) -> None:
    env = dict.fromkeys(OTHER_ENV_NAMES, "1") | {
        "TASKENGINE_BROKER": f"sqlite:///{tmp_path / 't.db'}",  # the alias of BROKER_URL
        "TASKENGINE_WORKERS": "3",
        "TASKENGINE_SHUTDOWN_GRACE": "5",
        "TASKENGINE_LOG_LEVEL": "warning",
    }
    result = run_cli(tmp_path, env, "queues")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


@pytest.mark.parametrize("tree", ["src", "bench", "tests"])
def test_every_variable_the_project_reads_is_known(tree: str) -> None:
    mentioned: set[str] = set()
    for path in (ROOT / tree).rglob("*.py"):
        if path == Path(__file__):
            continue  # misspells on purpose
        mentioned |= set(re.findall(r"TASKENGINE_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    assert mentioned or tree == "bench"
    assert unknown_env_names(mentioned) == []
