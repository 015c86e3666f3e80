"""The `io.file` task type: read, write, append, delete and list files inside the data directory.

Confinement has two layers. First the relative path is checked (no absolute paths, no `..`,
no NUL) and resolved; the result must lie inside the resolved data directory and must not be a
forbidden path. Then the resolved path is opened one component at a time from a descriptor of
the data directory with O_NOFOLLOW, so a symlink swapped in after the check is refused
instead of followed, and the open file itself is checked: a regular file, not a forbidden one
(by inode), with one link only (another hard link may lie outside the data directory, and
nothing tells where, so a file with two is refused). A write truncates only after the checks.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import msgspec

from taskengine.builtins.config import BuiltinConfig, TaskInputError, TaskRefused

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_LIST_LIMIT = 10_000
_STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class FilePayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One file operation; `path` is relative to the data directory ("." lists its top)."""

    op: Literal["read", "write", "append", "delete", "list"]
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    content: str | None = None


def data_root(config: BuiltinConfig) -> Path:
    """Return the resolved data directory, creating it if it is missing."""
    root = Path(config.data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def confine(config: BuiltinConfig, path: str) -> tuple[Path, PurePosixPath]:
    """Return (data root, resolved path relative to it) or raise TaskRefused."""
    if "\x00" in path:
        raise TaskRefused("path_escape", "path contains a NUL byte")
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("\\"):
        raise TaskRefused("path_escape", f"path {path!r} is absolute; use a relative path")
    if ".." in pure.parts:
        raise TaskRefused("path_escape", f"path {path!r} has a '..' component")
    root = data_root(config)
    try:
        resolved = (root / pure).resolve()
    except OSError as exc:  # e.g. a link swapped for a file while it was read
        raise TaskInputError(f"path {path!r} cannot be resolved: {exc.strerror}") from None
    if not resolved.is_relative_to(root):
        raise TaskRefused("path_escape", f"path {path!r} leads outside the data directory")
    if _is_forbidden(resolved, config.forbidden_paths):
        raise TaskRefused("forbidden_path", f"path {path!r} is a forbidden file")
    return root, PurePosixPath(resolved.relative_to(root).as_posix())


def _is_forbidden(resolved: Path, forbidden_paths: frozenset[str]) -> bool:
    """By name (with SQLite's side files) and by inode, so a hard link does not get through."""
    try:
        target = resolved.stat()
    except OSError:
        target = None
    for base in forbidden_paths:
        for suffix in _STORE_SUFFIXES:
            forbidden = Path(base + suffix).resolve()
            if resolved == forbidden:
                return True
            if target is not None:
                with suppress(OSError):
                    info = forbidden.stat()
                    if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
                        return True
    return False


class FileTask:
    """Runs `io.file` payloads under one BuiltinConfig (a thread-executor handler)."""

    def __init__(self, config: BuiltinConfig) -> None:
        self.config = config

    def run(self, payload: FilePayload) -> dict[str, Any]:
        """Perform the operation; refusals raise TaskRefused, bad input TaskInputError."""
        root, rel = confine(self.config, payload.path)
        if payload.op in ("write", "append"):
            if payload.content is None:
                raise TaskInputError(f"op {payload.op!r} needs 'content'")
            return self._write(root, rel, payload.content, append=payload.op == "append")
        if payload.content is not None:
            raise TaskInputError(f"op {payload.op!r} takes no 'content'")
        if payload.op == "read":
            return self._read(root, rel)
        if payload.op == "delete":
            return self._delete(root, rel)
        return self._list(root, rel)

    def _read(self, root: Path, rel: PurePosixPath) -> dict[str, Any]:
        limit = self.config.file_max_bytes
        with _parent_fd(root, rel, create=False) as dir_fd:
            fd, info = _open_file(rel, os.O_RDONLY, dir_fd, self.config.forbidden_paths)
            with os.fdopen(fd, "rb") as f:
                if info.st_size > limit:
                    raise TaskRefused("too_large", f"{rel} is {info.st_size} bytes, cap {limit}")
                data = f.read(limit + 1)
        if len(data) > limit:
            raise TaskRefused("too_large", f"{rel} is over the {limit}-byte cap")
        try:
            content = data.decode()
        except UnicodeDecodeError:
            raise TaskInputError(f"{rel} is not UTF-8 text") from None
        return {"path": str(rel), "size": len(data), "content": content}

    def _write(
        self, root: Path, rel: PurePosixPath, content: str, *, append: bool
    ) -> dict[str, Any]:
        data = content.encode()
        limit = self.config.file_max_bytes
        if len(data) > limit:
            raise TaskRefused("too_large", f"writing {len(data)} bytes; the cap is {limit}")
        # No O_TRUNC: opening would truncate the file before it is checked.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
        with _parent_fd(root, rel, create=True) as dir_fd:
            fd, info = _open_file(rel, flags, dir_fd, self.config.forbidden_paths)
            with os.fdopen(fd, "wb") as f:
                if append and info.st_size + len(data) > limit:
                    raise TaskRefused(
                        "too_large", f"appending would make {rel} larger than {limit} bytes"
                    )
                if not append:
                    f.truncate(0)
                f.write(data)
        size = info.st_size + len(data) if append else len(data)
        return {"path": str(rel), "written": len(data), "size": size}

    def _delete(self, root: Path, rel: PurePosixPath) -> dict[str, Any]:
        if not rel.parts:
            raise TaskRefused("path_escape", "the data directory itself cannot be deleted")
        try:
            with _parent_fd(root, rel, create=False) as dir_fd:
                info = os.stat(rel.name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    raise TaskInputError(f"{rel} is a directory")
                os.unlink(rel.name, dir_fd=dir_fd)
        except TaskInputError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return {"path": str(rel), "deleted": False}  # repeat deletes succeed
            raise
        except FileNotFoundError:
            return {"path": str(rel), "deleted": False}
        return {"path": str(rel), "deleted": True}

    def _list(self, root: Path, rel: PurePosixPath) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        with _dir_fd(root, rel.parts, create=False) as fd, os.scandir(fd) as it:
            for entry in it:
                if len(entries) >= _LIST_LIMIT:
                    break
                info = entry.stat(follow_symlinks=False)
                entries.append(
                    {"name": entry.name, "type": _kind(info.st_mode), "size": info.st_size}
                )
        entries.sort(key=lambda e: str(e["name"]))
        return {"path": str(rel), "entries": entries, "truncated": len(entries) >= _LIST_LIMIT}


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "symlink" if stat.S_ISLNK(mode) else "other"


def open_confined(
    config: BuiltinConfig, path: str, flags: int = os.O_RDONLY
) -> tuple[int, os.stat_result]:
    """Open `path` in the data directory as `io.file` does (see the module docstring); return
    the descriptor, which the caller closes, and its fstat."""
    root, rel = confine(config, path)
    with _parent_fd(root, rel, create=False) as dir_fd:
        return _open_file(rel, flags, dir_fd, config.forbidden_paths)


def _open_file(
    rel: PurePosixPath, flags: int, dir_fd: int, forbidden_paths: frozenset[str]
) -> tuple[int, os.stat_result]:
    """Open the last component without following a symlink; refuse anything not regular, a
    forbidden file, or a file with more than one link."""
    if not rel.parts:
        raise TaskInputError("the data directory is not a file")
    try:
        # O_NONBLOCK: a FIFO must not hang the thread (it is then refused as not regular)
        fd = os.open(rel.name, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_error(rel, exc) from exc
    info = os.fstat(fd)
    try:
        if not stat.S_ISREG(info.st_mode):
            raise TaskInputError(f"{rel} is not a regular file")
        if _same_file_as_any(info, forbidden_paths):
            raise TaskRefused("forbidden_path", f"{rel} is a forbidden file")
        if info.st_nlink > 1:
            raise TaskRefused(
                "hard_link",
                f"{rel} has {info.st_nlink} hard links; a file with more than one is refused, "
                "as another may lie outside the data directory",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _same_file_as_any(info: os.stat_result, forbidden_paths: frozenset[str]) -> bool:
    """True if the open file is one of the forbidden ones (or their SQLite side files)."""
    for base in forbidden_paths:
        for suffix in _STORE_SUFFIXES:
            with suppress(OSError):
                other = os.stat(base + suffix)
                if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
                    return True
    return False


@contextmanager
def _parent_fd(root: Path, rel: PurePosixPath, *, create: bool) -> Iterator[int]:
    with _dir_fd(root, rel.parts[:-1], create=create) as fd:
        yield fd


@contextmanager
def _dir_fd(root: Path, parts: tuple[str, ...], *, create: bool) -> Iterator[int]:
    """Open root/parts one directory at a time without following any symlink."""
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for i, part in enumerate(parts):
            if create:
                with suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as exc:
                raise _os_error(PurePosixPath(*parts[: i + 1]), exc) from exc
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _os_error(rel: PurePosixPath, exc: OSError) -> Exception:
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return TaskRefused("path_escape", f"{rel} is a symlink; refusing to follow it")
    if isinstance(exc, FileNotFoundError):
        return TaskInputError(f"{rel} does not exist")
    if isinstance(exc, NotADirectoryError):
        return TaskInputError(f"{rel} is not a directory")
    return TaskInputError(f"{rel}: {exc.strerror or exc}")
