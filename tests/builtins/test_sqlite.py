"""io.sqlite: queries, row caps, payload validation and every refusal."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from taskengine.builtins import BuiltinConfig, TaskInputError, TaskRefused, builtin_registry
from taskengine.builtins.sqlite_open import DatabaseUnverified, connect_verified
from taskengine.builtins.sqlite_query import (
    SqlitePayload,
    SqliteTask,
    action_name,
    single_statement,
)
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


def reason_items(error: TaskRefused) -> list[str]:
    """The refused actions a sql_denied message lists, in the order SQLite asked."""
    prefix = "not allowed in io.sqlite: "
    assert error.reason == "sql_denied" and str(error).startswith(prefix), str(error)
    return str(error).removeprefix(prefix).split(", ")


@pytest.mark.parametrize(
    ("sql", "writes", "action"),
    [
        ("DELETE FROM t", False, "DELETE t"),
        ("INSERT INTO t (name) VALUES ('x')", False, "INSERT t"),
        ("UPDATE t SET name = 'x'", False, "UPDATE t"),
        # schema changes: SQLite first asks to write its schema table, and stops at the refusal
        ("CREATE TABLE u (a)", False, "INSERT sqlite_master"),
        ("DROP TABLE t", False, "DELETE sqlite_master"),
        ("CREATE TRIGGER t2 AFTER INSERT ON t BEGIN SELECT 1; END", False, "CREATE_TRIGGER t2"),
        ("CREATE TEMP TRIGGER t3 AFTER INSERT ON t BEGIN SELECT 1; END", False,
         "CREATE_TEMP_TRIGGER t3"),
        ("DROP TRIGGER tr", False, "DROP_TRIGGER tr"),
        ("ALTER TABLE t RENAME TO u", False, "ALTER_TABLE main"),
        ("REINDEX t_name", False, "REINDEX t_name"),
        ("BEGIN", False, "TRANSACTION BEGIN"),
        ("SAVEPOINT s", False, "SAVEPOINT BEGIN"),
        ("PRAGMA user_version", False, "PRAGMA user_version"),
        ("PRAGMA user_version = 3", True, "PRAGMA user_version"),
        ("ATTACH DATABASE ':memory:' AS other", True, "ATTACH :memory:"),
        ("DETACH DATABASE other", True, "DETACH other"),
    ],
)  # fmt: skip
def test_a_refusal_names_the_refused_action(
    db: Path, data_dir: Path, sql: str, writes: bool, action: str
) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE INDEX t_name ON t (name)")
        conn.execute("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END")
    conn.close()
    error = refused(task(data_dir, sqlite_allow_writes=writes), sql)
    assert reason_items(error)[0] == action


def test_a_refused_action_is_named_once(db: Path, data_dir: Path) -> None:
    # CREATE TABLE asks twice to write the schema table; the message says it once
    assert reason_items(refused(task(data_dir), "CREATE TABLE u (a)")) == ["INSERT sqlite_master"]


# https://www.sqlite.org/c3ref/c_alter_table.html: the authorizer's action codes
AUTHORIZER_CODES = {
    1: "CREATE_INDEX", 2: "CREATE_TABLE", 3: "CREATE_TEMP_INDEX", 4: "CREATE_TEMP_TABLE",
    5: "CREATE_TEMP_TRIGGER", 6: "CREATE_TEMP_VIEW", 7: "CREATE_TRIGGER", 8: "CREATE_VIEW",
    9: "DELETE", 10: "DROP_INDEX", 11: "DROP_TABLE", 12: "DROP_TEMP_INDEX",
    13: "DROP_TEMP_TABLE", 14: "DROP_TEMP_TRIGGER", 15: "DROP_TEMP_VIEW", 16: "DROP_TRIGGER",
    17: "DROP_VIEW", 18: "INSERT", 19: "PRAGMA", 20: "READ", 21: "SELECT", 22: "TRANSACTION",
    23: "UPDATE", 24: "ATTACH", 25: "DETACH", 26: "ALTER_TABLE", 27: "REINDEX", 28: "ANALYZE",
    29: "CREATE_VTABLE", 30: "DROP_VTABLE", 31: "FUNCTION", 32: "SAVEPOINT", 33: "RECURSIVE",
}  # fmt: skip


def test_every_authorizer_action_code_has_its_own_name() -> None:
    # the codes no single statement can reach as its refusal (temp indexes, drops of temp
    # objects, virtual tables) are named by the same table
    assert {code: action_name(code) for code in AUTHORIZER_CODES} == AUTHORIZER_CODES
    assert action_name(99) == "99"


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


def _database(path: Path, name: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (name TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (name,))
    conn.close()


@contextmanager
def flipping(path: Path, target: Path) -> Iterator[subprocess.Popen[str]]:
    """`path` flips between itself and a symlink to `target` in another process meanwhile."""
    flipper = subprocess.Popen(
        [sys.executable, "-m", "tests.builtins.flipper", str(path), str(target), "10000000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flipper.stdout is not None and flipper.stdout.readline() == "ready\n"
        yield flipper
    finally:
        flipper.kill()  # this test's own child, by its handle
        flipper.wait(30)


def test_a_symlink_swapped_in_after_the_check_is_never_followed(
    data_dir: Path, tmp_path: Path
) -> None:
    """The issue's race: `app.db` flips between a database inside the data directory and a
    symlink to one outside while queries run; none may read the outside one."""
    data_dir.mkdir()
    outside = tmp_path / "outside.db"
    _database(outside, "outside")
    _database(data_dir / "app.db", "inside")
    sqlite = task(data_dir)
    payload = SqlitePayload(database="app.db", sql="SELECT name FROM t")

    def query(_: int) -> str:
        try:
            return str(sqlite.run(payload)["rows"][0][0])
        except (TaskRefused, TaskInputError, DatabaseUnverified) as exc:
            return exc.reason if isinstance(exc, TaskRefused) else type(exc).__name__

    with flipping(data_dir / "app.db", outside) as flipper, ThreadPoolExecutor(8) as pool:
        seen = Counter(pool.map(query, range(3000)))
        assert flipper.poll() is None  # still flipping at the end
    assert seen["outside"] == 0, seen
    assert seen["inside"] > 0, seen


def test_a_connection_to_another_file_than_the_checked_one_is_not_used(tmp_path: Path) -> None:
    """What SQLite opened is compared with the file that was checked."""
    checked, opened = tmp_path / "checked.db", tmp_path / "opened.db"
    _database(checked, "checked")
    _database(opened, "opened")
    fd = os.open(opened, os.O_RDONLY)
    with pytest.raises(DatabaseUnverified):
        connect_verified(fd, checked.stat(), writes=False, timeout=1)
    fd = os.open(checked, os.O_RDONLY)
    conn = connect_verified(fd, checked.stat(), writes=False, timeout=1)
    try:
        assert conn.execute("SELECT name FROM t").fetchall() == [("checked",)]
    finally:
        conn.close()


def test_a_hard_link_is_refused(data_dir: Path, tmp_path: Path) -> None:
    data_dir.mkdir()
    outside = tmp_path / "outside.db"
    _database(outside, "outside")
    (data_dir / "hard.db").hardlink_to(outside)
    with pytest.raises(TaskRefused) as info:
        task(data_dir).run(SqlitePayload(database="hard.db", sql="SELECT name FROM t"))
    assert info.value.reason == "hard_link"


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


def test_a_huge_value_is_refused_before_it_is_built(db: Path, data_dir: Path) -> None:
    """A value over the byte cap (1 MiB by default) stops the statement at once: SQLite's own
    length limit, so the 40 MB string is never made."""
    error = refused(task(data_dir), "SELECT hex(randomblob(20000000))")
    assert error.reason == "too_large"
    assert "1048576" in str(error)


def test_rows_are_capped_by_bytes(db: Path, data_dir: Path) -> None:
    sqlite = task(data_dir, sqlite_max_bytes=10_000)
    sql = "SELECT id, printf('%.1000c', 'x') FROM t"
    result = sqlite.run(SqlitePayload(database="app.db", sql=sql))
    assert result["truncated"] is True
    assert 5 <= len(result["rows"]) < 10
    assert result["rowcount"] == len(result["rows"])
    assert len(msgspec.json.encode(result)) <= 10_000
    assert result["rows"][0] == [1, "x" * 1000]


def test_one_long_expression_is_interrupted_at_the_time_limit(db: Path, data_dir: Path) -> None:
    """A progress handler is not called inside one expression; the timer's interrupt is
    noticed when it ends, so the statement is refused, not answered (here with the length
    limit raised, so the expression is allowed to run long)."""
    sqlite = task(data_dir, sqlite_time_limit=0.2, sqlite_max_bytes=200_000_000)
    error = refused(sqlite, "SELECT length(hex(randomblob(50000000)))")
    assert error.reason == "time_limit"


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
