"""io.file: each operation, its caps, payload validation and every confinement refusal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from taskengine.builtins import BuiltinConfig, TaskInputError, TaskRefused, builtin_registry
from taskengine.builtins.files import FilePayload, FileTask
from taskengine.registry import InvalidPayload


@pytest.fixture
def files(config: BuiltinConfig) -> FileTask:
    return FileTask(config)


def test_write_read_append_list_delete(files: FileTask, data_dir: Path) -> None:
    assert not data_dir.exists()
    written = files.run(FilePayload(op="write", path="notes/a.txt", content="héllo"))
    assert written == {"path": "notes/a.txt", "written": 6, "size": 6}
    assert (data_dir / "notes" / "a.txt").read_text() == "héllo"
    files.run(FilePayload(op="append", path="notes/a.txt", content=" world"))
    read = files.run(FilePayload(op="read", path="notes/./a.txt"))
    assert read["content"] == "héllo world"
    listing = files.run(FilePayload(op="list", path="."))
    assert listing["entries"] == [
        {"name": "notes", "type": "dir", "size": listing["entries"][0]["size"]}
    ]
    inner = files.run(FilePayload(op="list", path="notes"))
    assert [e["name"] for e in inner["entries"]] == ["a.txt"]
    assert files.run(FilePayload(op="delete", path="notes/a.txt"))["deleted"] is True
    assert files.run(FilePayload(op="delete", path="notes/a.txt"))["deleted"] is False
    assert files.run(FilePayload(op="delete", path="gone/a.txt"))["deleted"] is False


def test_missing_files_and_wrong_kinds_are_input_errors(files: FileTask, data_dir: Path) -> None:
    with pytest.raises(TaskInputError, match="does not exist"):
        files.run(FilePayload(op="read", path="missing.txt"))
    files.run(FilePayload(op="write", path="d/f", content=""))
    with pytest.raises(TaskInputError):
        files.run(FilePayload(op="read", path="d"))
    with pytest.raises(TaskInputError, match="directory"):
        files.run(FilePayload(op="delete", path="d"))
    with pytest.raises(TaskInputError, match="content"):
        files.run(FilePayload(op="write", path="x"))
    with pytest.raises(TaskInputError, match="content"):
        files.run(FilePayload(op="read", path="d/f", content="no"))
    (data_dir / "bin").write_bytes(b"\xff\xfe")
    with pytest.raises(TaskInputError, match="UTF-8"):
        files.run(FilePayload(op="read", path="bin"))


def test_a_fifo_is_refused_without_hanging(files: FileTask, data_dir: Path) -> None:
    data_dir.mkdir()
    os.mkfifo(data_dir / "pipe")
    with pytest.raises(TaskInputError, match="regular file"):
        files.run(FilePayload(op="read", path="pipe"))


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "..", "a/..", "nul\x00byte"])
def test_paths_out_of_the_data_dir_are_refused(files: FileTask, path: str) -> None:
    for op in ("read", "write", "list", "delete"):
        content = "x" if op == "write" else None
        with pytest.raises(TaskRefused) as info:
            files.run(FilePayload(op=op, path=path, content=content))
        assert info.value.reason == "path_escape"


def test_a_symlink_pointing_outside_is_refused(
    files: FileTask, data_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    data_dir.mkdir()
    (data_dir / "link").symlink_to(secret)
    (data_dir / "dirlink").symlink_to(outside)
    for payload in (
        FilePayload(op="read", path="link"),
        FilePayload(op="write", path="link", content="pwned"),
        FilePayload(op="write", path="dirlink/new.txt", content="pwned"),
        FilePayload(op="list", path="dirlink"),
    ):
        with pytest.raises(TaskRefused) as info:
            files.run(payload)
        assert info.value.reason == "path_escape"
    assert secret.read_text() == "top secret"
    assert not (outside / "new.txt").exists()


def test_a_symlink_inside_the_data_dir_is_followed_safely(files: FileTask, data_dir: Path) -> None:
    files.run(FilePayload(op="write", path="real.txt", content="inside"))
    (data_dir / "alias").symlink_to(data_dir / "real.txt")
    assert files.run(FilePayload(op="read", path="alias"))["content"] == "inside"


def test_sizes_are_capped(data_dir: Path) -> None:
    files = FileTask(BuiltinConfig(data_dir=str(data_dir), file_max_bytes=10))
    with pytest.raises(TaskRefused) as info:
        files.run(FilePayload(op="write", path="big", content="x" * 11))
    assert info.value.reason == "too_large"
    assert not (data_dir / "big").exists()
    files.run(FilePayload(op="write", path="f", content="x" * 10))
    with pytest.raises(TaskRefused, match="larger"):
        files.run(FilePayload(op="append", path="f", content="y"))
    (data_dir / "huge").write_text("z" * 100)
    with pytest.raises(TaskRefused, match="cap"):
        files.run(FilePayload(op="read", path="huge"))


def test_the_engine_store_is_forbidden(tmp_path: Path, data_dir: Path) -> None:
    data_dir.mkdir()
    store = data_dir / "taskengine.db"
    store.write_text("")
    config = BuiltinConfig(data_dir=str(data_dir), forbidden_paths=frozenset({str(store)}))
    for path in ("taskengine.db", "taskengine.db-wal"):
        with pytest.raises(TaskRefused) as info:
            FileTask(config).run(FilePayload(op="read", path=path))
        assert info.value.reason == "forbidden_path"


@pytest.mark.parametrize(
    "payload",
    [
        {"op": "read"},
        {"op": "chmod", "path": "x"},
        {"op": "read", "path": ""},
        {"op": "read", "path": "x", "mode": 7},
        {"op": "write", "path": "x", "content": 5},
    ],
)
def test_invalid_payloads_are_refused_at_submit(tmp_path: Path, payload: dict[str, Any]) -> None:
    spec = builtin_registry(BuiltinConfig(data_dir=str(tmp_path))).get("io.file")
    assert spec.executor == "thread"
    with pytest.raises(InvalidPayload):
        spec.convert(payload)


def test_a_hard_link_is_refused_and_never_truncated(
    files: FileTask, data_dir: Path, tmp_path: Path
) -> None:
    """A hard link may lead to a file outside the data directory: a file with more than one
    link is refused for reading and writing, and a write does not truncate it first."""
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    data_dir.mkdir()
    (data_dir / "hard").hardlink_to(secret)
    for payload in (
        FilePayload(op="read", path="hard"),
        FilePayload(op="write", path="hard", content="pwned"),
        FilePayload(op="append", path="hard", content="pwned"),
    ):
        with pytest.raises(TaskRefused) as info:
            files.run(payload)
        assert info.value.reason == "hard_link"
    assert secret.read_text() == "top secret"
