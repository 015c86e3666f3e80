"""The typing promise of task handles, checked: mypy must find exactly the marked errors and
reveal the marked types in handles_snippet.py (a wrong payload is a type error, not a 422)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

SNIPPET = Path(__file__).with_name("handles_snippet.py")
ROOT = Path(__file__).parents[2]


def _expected() -> tuple[dict[int, str], dict[int, str]]:
    """(line -> error code, line -> revealed type) as the snippet's comments say."""
    errors: dict[int, str] = {}
    reveals: dict[int, str] = {}
    for number, line in enumerate(SNIPPET.read_text().splitlines(), start=1):
        if match := re.search(r"# E: ([\w-]+)$", line):
            errors[number] = match.group(1)
        elif match := re.search(r"# R: (.+)$", line):
            reveals[number] = match.group(1).strip()
    return errors, reveals


def test_mypy_checks_a_handles_payload_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the project's mypy settings (strict, mypy_path) apply
    stdout, stderr, _ = api.run(
        [
            "--config-file=pyproject.toml",
            "--no-error-summary",
            "--show-error-codes",
            f"--cache-dir={tmp_path / 'cache'}",
            str(SNIPPET.relative_to(ROOT)),
        ],
    )
    assert not stderr, stderr
    line_of = re.compile(
        rf"{re.escape(str(SNIPPET.relative_to(ROOT)))}:(\d+): (\w+): (.*?)(?:  \[([\w-]+)\])?$"
    )
    found_errors: dict[int, set[str]] = {}
    found_reveals: dict[int, str] = {}
    for line in stdout.splitlines():
        match = line_of.match(line)
        if match is None:
            continue
        number, kind, message, code = int(match[1]), match[2], match[3], match[4]
        if kind == "note" and message.startswith("Revealed type is"):
            found_reveals[number] = message.removeprefix("Revealed type is ").strip('"')
        elif kind == "error":
            found_errors.setdefault(number, set()).add(code or "")
    errors, reveals = _expected()
    assert found_reveals == reveals, stdout
    assert {n: {code} for n, code in errors.items()} == found_errors, stdout
