"""The only place with concurrency: fetcher, pool, runner, completer and background duties."""

from taskengine.runtime.worker import Worker

__all__ = ["Worker"]
