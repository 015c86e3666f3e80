"""Telemetry sits above the runtime and reads the engine only through its status snapshot."""

from __future__ import annotations

import ast
from pathlib import Path

import taskengine

SRC = Path(taskengine.__file__).parent
ENGINE_VIEWS = {"taskengine.runtime.status", "taskengine.runtime.liveness"}


def _imports(package: str) -> dict[str, set[str]]:
    """taskengine modules imported by each module of `package` (path -> module names)."""
    found: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(SRC))] = {n for n in names if n.startswith("taskengine.")}
    return found


def test_telemetry_reads_the_runtime_only_through_the_status_and_liveness() -> None:
    for path, names in _imports("telemetry").items():
        runtime = {n for n in names if n.startswith("taskengine.runtime")}
        assert runtime <= ENGINE_VIEWS, f"{path} reaches into {sorted(runtime - ENGINE_VIEWS)}"


def test_nothing_below_telemetry_imports_it() -> None:
    for package in ("metrics", "runtime", "brokers", "policy", "model"):
        for path, names in _imports(package).items():
            above = {n for n in names if n.startswith(("taskengine.telemetry", "taskengine.api"))}
            assert not above, f"{path} imports {sorted(above)} from above it"
