"""The only place with concurrency: fetcher, pool, runner, completer and background duties."""

from taskengine.runtime.engine import Engine

__all__ = ["Engine"]
