"""What the Redis server's configuration means for the broker: eviction and durability.

Pure functions of the `CONFIG GET` answers, so they are tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from taskengine.errors import ConfigurationError

CONFIG_NAMES = ("maxmemory-policy", "appendonly", "appendfsync", "save")


class ServerConfig(msgspec.Struct, frozen=True):
    """What start() found: whether acknowledged tasks survive a server restart, and how."""

    durable: bool
    window: str  # the durability window in words, for the log


def check_config(config: Mapping[str, str]) -> ServerConfig:
    """Refuse an eviction policy that can drop tasks; describe the durability window.

    `noeviction` is what a queue needs. `volatile-*` policies evict only keys with a TTL and
    the broker sets none, so they are tolerated. `allkeys-*` may evict task records and
    indexes under memory pressure: ConfigurationError.
    """
    policy = config.get("maxmemory-policy", "noeviction")
    if policy.startswith("allkeys-"):
        raise ConfigurationError(
            f"Redis maxmemory-policy is {policy!r}: it may evict tasks; "
            "set it to 'noeviction' (CONFIG SET maxmemory-policy noeviction)"
        )
    if config.get("appendonly", "no") == "yes":
        fsync = config.get("appendfsync", "everysec")
        loss = {
            "always": "every write is fsynced before the reply",
            "everysec": "a crash can lose about the last second of writes",
            "no": "a crash can lose what the OS had not flushed (often ~30 s)",
        }.get(fsync, "see the server's documentation")
        return ServerConfig(True, f"AOF (appendfsync {fsync}): {loss}")
    save = config.get("save", "").strip()
    if save:
        return ServerConfig(
            True,
            f"RDB snapshots only (save {save!r}): a crash loses writes since the last snapshot",
        )
    return ServerConfig(False, "none: a Redis restart loses tasks (no AOF, no RDB snapshots)")
