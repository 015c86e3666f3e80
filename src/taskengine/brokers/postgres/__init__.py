"""The PostgreSQL broker (`postgresql://` and `postgres://` URLs); needs the `postgres` extra."""

from taskengine.brokers.postgres.broker import PostgresBroker

__all__ = ["PostgresBroker"]
