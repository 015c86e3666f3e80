"""The SQLite broker: WAL, one writer thread with group commit, shared by processes on a file."""

from taskengine.brokers.sqlite.broker import SqliteBroker

__all__ = ["SqliteBroker"]
