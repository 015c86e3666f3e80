"""io.sqlite: queries, row caps, payload validation and every refusal."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from taskengine.builtins import BuiltinConfig, TaskInputError, TaskRefused, builtin_registry
from taskengine.builtins.sqlite_query import SqlitePayload, SqliteTask, single_statement
from taskengine.registry import InvalidPayload

RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


@pytest.fixture
def db(data_dir: Path) -> Path:
    data_dir.mkdir()
    path = data_dir / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO t (name) VALUES (?)", [(f"n{i}",) for i in range(50)])
    conn.close()
    return path


def task(data_dir: Path, **changes: Any) -> SqliteTask:
    return SqliteTask(BuiltinConfig(data_dir=str(data_dir), **changes))


def refused(sqlite: SqliteTask, sql: str, params: Any = ()) -> TaskRefused:
    with pytest.raises(TaskRefused) as info:
        sqlite.run(SqlitePayload(database="app.db", sql=sql, params=list(params)))
    return info.value


def test_a_parameterised_select(db: Path, data_dir: Path) -> None:
    result = task(data_dir).run(
        SqlitePayload(database="app.db", sql="SELECT id, name FROM t WHERE id <= ?", params=[2])
    )
    assert result == {
        "columns": ["id", "name"],
        "rows": [[1, "n0"], [2, "n1"]],
        "rowcount": 2,
        "truncated": False,
    }
    named = task(data_dir).run(
        SqlitePayload(database="app.db", sql="SELECT name FROM t WHERE id = :id;", params={"id": 3})
    )
    assert named["rows"] == [["n2"]]


def test_rows_are_capped(db: Path, data_dir: Path) -> None:
    result = task(data_dir, sqlite_max_rows=10).run(
        SqlitePayload(database="app.db", sql="SELECT id FROM t", max_rows=1000)
    )
    assert len(result["rows"]) == 10
    assert result["truncated"] is True
    small = task(data_dir).run(SqlitePayload(database="app.db", sql="SELECT id FROM t", max_rows=3))
    assert small["rows"] == [[1], [2], [3]]


def test_writes_when_enabled(db: Path, data_dir: Path) -> None:
    sqlite = task(data_dir, sqlite_allow_writes=True)
    result = sqlite.run(
        SqlitePayload(database="app.db", sql="UPDATE t SET name = ? WHERE id < 4", params=["x"])
    )
    assert result["rowcount"] == 3
    assert result["columns"] == []
    created = sqlite.run(SqlitePayload(database="new.db", sql="CREATE TABLE a (b)"))
    assert created["rows"] == []
    assert (data_dir / "new.db").exists()
    assert refused(sqlite, "ATTACH DATABASE 'new.db' AS other").reason == "sql_denied"
    assert refused(sqlite, "PRAGMA journal_mode = DELETE").reason == "sql_denied"


def test_attach_is_refused(db: Path, data_dir: Path) -> None:
    error = refused(task(data_dir), "ATTACH DATABASE ? AS other", [str(data_dir / "app.db")])
    assert error.reason == "sql_denied"
    assert "ATTACH" in str(error)


def test_pragma_is_refused(db: Path, data_dir: Path) -> None:
    assert refused(task(data_dir), "PRAGMA table_info(t)").reason == "sql_denied"
    assert refused(task(data_dir), "SELECT * FROM pragma_table_info('t')").reason == "sql_denied"


def test_load_extension_is_refused(db: Path, data_dir: Path) -> None:
    error = refused(task(data_dir), "SELECT load_extension('/tmp/evil.so')")
    assert error.reason == "sql_denied"
    assert "load_extension" in str(error)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (name) VALUES ('x')",
        "UPDATE t SET name = 'x'",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE u (a)",
    ],
)
def test_writes_are_refused_while_read_only(db: Path, data_dir: Path, sql: str) -> None:
    assert refused(task(data_dir), sql).reason == "sql_denied"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (50,)
    conn.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE t",
        "SELECT 1;; ",
        "SELECT ';'; DELETE FROM t",
    ],
)
def test_multiple_statements_are_refused(db: Path, data_dir: Path, sql: str) -> None:
    assert refused(task(data_dir, sqlite_allow_writes=True), sql).reason == "multiple_statements"


def test_single_statement_parsing() -> None:
    assert single_statement("  SELECT ';' ;  ") == "SELECT ';' "
    assert single_statement("SELECT 1") == "SELECT 1"
    with pytest.raises(TaskInputError):
        single_statement("  ")


def test_the_engine_store_is_refused(db: Path, data_dir: Path) -> None:
    store = data_dir / "taskengine.db"
    sqlite3.connect(store).close()
    sqlite = task(data_dir, forbidden_paths=frozenset({str(store)}), sqlite_allow_writes=True)
    with pytest.raises(TaskRefused) as info:
        sqlite.run(SqlitePayload(database="taskengine.db", sql="SELECT 1"))
    assert info.value.reason == "forbidden_path"
    (data_dir / "alias.db").symlink_to(store)
    (data_dir / "hard.db").hardlink_to(store)
    for alias in ("alias.db", "hard.db"):
        with pytest.raises(TaskRefused):
            sqlite.run(SqlitePayload(database=alias, sql="SELECT 1"))


@pytest.mark.parametrize("database", ["../app.db", "/etc/passwd", "x/../../app.db"])
def test_databases_outside_the_data_dir_are_refused(
    db: Path, data_dir: Path, database: str
) -> None:
    with pytest.raises(TaskRefused) as info:
        task(data_dir).run(SqlitePayload(database=database, sql="SELECT 1"))
    assert info.value.reason == "path_escape"


def test_a_runaway_query_is_stopped_by_the_time_limit(db: Path, data_dir: Path) -> None:
    started = time.monotonic()
    error = refused(task(data_dir, sqlite_time_limit=0.5), RUNAWAY)
    assert error.reason == "time_limit"
    assert time.monotonic() - started < 5


def test_bad_sql_and_missing_databases_are_input_errors(db: Path, data_dir: Path) -> None:
    with pytest.raises(TaskInputError, match="no such table"):
        task(data_dir).run(SqlitePayload(database="app.db", sql="SELECT * FROM nope"))
    with pytest.raises(TaskInputError, match="does not exist"):
        task(data_dir).run(SqlitePayload(database="missing.db", sql="SELECT 1"))
    assert not (data_dir / "missing.db").exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"database": "a.db"},
        {"database": "a.db", "sql": ""},
        {"database": "a.db", "sql": "SELECT 1", "params": [[1]]},
        {"database": "a.db", "sql": "SELECT 1", "params": "x"},
        {"database": "a.db", "sql": "SELECT 1", "max_rows": 0},
        {"database": "a.db", "sql": "SELECT 1", "other": 1},
    ],
)
def test_invalid_payloads_are_refused_at_submit(tmp_path: Path, payload: dict[str, Any]) -> None:
    spec = builtin_registry(BuiltinConfig(data_dir=str(tmp_path))).get("io.sqlite")
    assert spec.executor == "thread"
    with pytest.raises(InvalidPayload):
        spec.convert(payload)
