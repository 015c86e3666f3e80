"""The layers of ARCHITECTURE.md hold: every import points down, and no modules import in a circle.

The layer of a module is decided by its package (`taskengine/<package>/...`) or, for a module at
the top of `taskengine/`, by the explicit table `TOP_LEVEL` (documented in ARCHITECTURE.md). A
new top-level module or package fails here until it is placed. Every import counts, including
those inside functions and under `if TYPE_CHECKING:`: a type from above is still an arrow up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskengine

SRC = Path(taskengine.__file__).parent

# layer -> the layers its modules may import (a layer may always import itself)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "model": frozenset({"base"}),
    "policy": frozenset({"model", "base"}),
    "brokers": frozenset({"model", "base"}),
    "support": frozenset({"model", "base"}),
    "settings": frozenset({"brokers", "policy", "model", "base"}),
    "runtime": frozenset({"brokers", "policy", "support", "settings", "model", "base"}),
    "builtins": frozenset({"policy", "support", "model", "base"}),
    "telemetry": frozenset({"runtime", "brokers", "policy", "support", "model", "base"}),
    "app": frozenset(
        {
            "telemetry",
            "runtime",
            "builtins",
            "brokers",
            "policy",
            "support",
            "settings",
            "model",
            "base",
        }
    ),
    "api": frozenset({"app", "settings", "model", "base"}),
    "cli": frozenset({"api", "app", "settings", "model", "base"}),
    "tools": frozenset(
        {
            "cli",
            "api",
            "app",
            "telemetry",
            "runtime",
            "builtins",
            "brokers",
            "policy",
            "support",
            "settings",
            "model",
            "base",
        }
    ),
}

PACKAGES = {
    "model": "model",
    "policy": "policy",
    "brokers": "brokers",
    "metrics": "support",
    "runtime": "runtime",
    "builtins": "builtins",
    "telemetry": "telemetry",
    "api": "api",
    "cli": "cli",
}

TOP_LEVEL = {
    "errors": "base",
    "clock": "base",
    "logging": "base",
    "process_stats": "base",
    "registry": "support",
    "tracing": "support",
    "settings": "settings",
    "__init__": "app",  # the public surface: re-exports from app, model, errors, brokers
    "app": "app",
    "inspector": "app",
    "feed": "app",
    "request": "app",
    "handles": "app",
    "workflows": "app",
    "sync": "app",
    "views": "app",
    "testing": "app",
    "benchmark": "app",
    "settings_table": "tools",
    "__main__": "tools",
}

# Value types of the broker contract that the faces may name (they are model types that still
# live in brokers/): results of cancel and replay, a page and its filter, a count row, a
# remote-control command (ADR 0036).
CONTRACT_VALUES = frozenset(
    {
        "CancelResult",
        "ReplayResult",
        "EnqueueResult",
        "Page",
        "TaskFilter",
        "CountRow",
        "ControlCommand",
    }
)
# Telemetry reads the engine only through its status snapshot and the liveness rule.
TELEMETRY_READS = frozenset({"taskengine.runtime.status", "taskengine.runtime.liveness"})
# Names the faces take from the runtime, each for a reason: the type of the engine `App.engine()`
# builds, which the serve process runs and its readiness reads; the exit code of a process its
# watchdog ended, which `worker --processes` restarts.
FACE_NAMES = {
    "taskengine.runtime.engine": frozenset({"Engine"}),
    "taskengine.runtime.watchdog": frozenset({"EXIT_WATCHDOG"}),
}


def module_of(path: Path) -> str:
    """The dotted module name of a source file."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The layer of `taskengine.<...>`: by its package, or by TOP_LEVEL for a top module."""
    parts = module.split(".")
    if len(parts) == 1:
        return TOP_LEVEL["__init__"]
    if len(parts) > 2 or (SRC / parts[1]).is_dir():
        return PACKAGES[parts[1]]
    return TOP_LEVEL[parts[1]]


def _sources() -> dict[str, Path]:
    return {module_of(path): path for path in sorted(SRC.rglob("*.py"))}


def imports(modules: dict[str, Path]) -> Iterator[tuple[str, str, frozenset[str], int]]:
    """Every taskengine import of every module: (importer, imported module, names, line)."""
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "taskengine":
                        yield module, alias.name, frozenset(), node.lineno
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                if base.split(".")[0] != "taskengine":
                    continue
                names = frozenset(alias.name for alias in node.names)
                submodules = {name for name in names if f"{base}.{name}" in modules}
                for name in submodules:  # `from taskengine import logging`: the module itself
                    yield module, f"{base}.{name}", frozenset(), node.lineno
                if names - submodules:
                    yield module, base, names - submodules, node.lineno


def layer_violations(edges: list[tuple[str, str, frozenset[str], int]]) -> list[str]:
    """Every import that points against the layers, as `importer:line -> imported`."""
    found = []
    for importer, imported, names, line in edges:
        mine, theirs = layer_of(importer), layer_of(imported)
        if theirs == mine or theirs in MAY_IMPORT[mine]:
            if mine == "telemetry" and theirs == "runtime" and imported not in TELEMETRY_READS:
                found.append(f"{importer}:{line} -> {imported} (telemetry reads only the status)")
            continue
        if mine in ("api", "cli") and names:
            if theirs == "brokers" and names <= CONTRACT_VALUES:
                continue
            if names <= FACE_NAMES.get(imported, frozenset()):
                continue
        found.append(f"{importer}:{line} ({mine}) -> {imported} ({theirs})")
    return found


def circles(edges: list[tuple[str, str, frozenset[str], int]]) -> list[list[str]]:
    """The modules that import one another in a circle (each strongly connected set of 2+)."""
    graph: dict[str, set[str]] = {}
    for importer, imported, _, _ in edges:
        if importer != imported and not importer.startswith(f"{imported}."):
            graph.setdefault(importer, set()).add(imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


EDGES = list(imports(_sources()))


def test_every_module_has_a_layer() -> None:
    for module in _sources():
        try:
            layer_of(module)
        except KeyError:
            pytest.fail(f"{module} has no layer: add it to TOP_LEVEL here and in ARCHITECTURE.md")


def test_every_import_points_down_the_layers() -> None:
    assert layer_violations(EDGES) == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert circles(EDGES) == []


@pytest.mark.parametrize(
    ("importer", "imported", "names"),
    [
        ("taskengine.model.task", "taskengine.runtime.engine", frozenset({"Engine"})),
        ("taskengine.policy.retry", "taskengine.brokers.base", frozenset({"Broker"})),
        ("taskengine.brokers.memory", "taskengine.policy.retry", frozenset({"decide_failure"})),
        ("taskengine.runtime.pool", "taskengine.telemetry.sampler", frozenset({"Sampler"})),
        ("taskengine.telemetry.sampler", "taskengine.runtime.pool", frozenset({"Pool"})),
        ("taskengine.app", "taskengine.api.server", frozenset({"serve"})),
        ("taskengine.api.admin", "taskengine.brokers.base", frozenset({"BrokerBackend"})),
        ("taskengine.cli.task_cmds", "taskengine.runtime.pool", frozenset({"Pool"})),
        ("taskengine.api.context", "taskengine.runtime.engine", frozenset({"build_worker"})),
        ("taskengine.cli.task_cmds", "taskengine.telemetry.figures", frozenset({"figures"})),
    ],
)
def test_a_planted_import_against_the_layers_fails(
    importer: str, imported: str, names: frozenset[str]
) -> None:
    assert layer_violations(EDGES) == []
    found = layer_violations([*EDGES, (importer, imported, names, 1)])
    assert len(found) == 1 and found[0].startswith(f"{importer}:1 "), found
    assert imported in found[0]


def test_a_planted_circle_fails() -> None:
    planted = [
        *EDGES,
        ("taskengine.model.ids", "taskengine.model.task", frozenset(), 1),
        ("taskengine.model.task", "taskengine.model.ids", frozenset(), 1),
    ]
    assert ["taskengine.model.ids", "taskengine.model.task"] in circles(planted)
