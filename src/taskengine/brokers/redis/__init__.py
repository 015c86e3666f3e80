"""The Redis broker (`redis://` and `rediss://` URLs); needs the `redis` extra."""

from taskengine.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
