"""`taskengine --help` and every subcommand's --help work; the module entry point works."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from taskengine.cli import cli

COMMANDS = [
    ["worker"],
    ["submit"],
    ["status"],
    ["list"],
    ["cancel"],
    ["retry"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["workers"],
    ["queues"],
    ["queues", "pause"],
    ["queues", "resume"],
    ["bench"],
]


def test_root_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in (
        "worker",
        "submit",
        "status",
        "list",
        "cancel",
        "retry",
        "dlq",
        "workers",
        "queues",
    ):
        assert name in result.stdout
    assert "--broker" in result.stdout
    assert "--app" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_subcommand_help(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_python_dash_m_help_is_fast_and_lazy() -> None:
    # rich and the runtime are imported by commands only, never by --help.
    code = (
        "import sys\n"
        "sys.argv = ['taskengine', '--help']\n"
        "from taskengine.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = [m for m in ('rich', 'taskengine.app', 'taskengine.runtime.engine')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "HEAVY []" in done.stdout


def test_module_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskengine", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert "Usage: taskengine" in done.stdout


def test_unknown_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["list", "--bogus"])
    assert result.exit_code == 2
