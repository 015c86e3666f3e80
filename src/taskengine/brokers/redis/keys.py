"""Every Redis key name of the broker, in one module.

All keys of a namespace start with the prefix `{te:<namespace>}:`, whose hash tag would put them
in one Redis Cluster slot (not supported yet), so every script may touch any of them atomically.
Python builds names with `Keys`; the Lua scripts build the same names with helpers generated
from the tables below (`lua_preamble`), so a name is spelled once, here.
"""

from __future__ import annotations

import re

from taskengine.errors import ConfigurationError

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")

# One key per namespace: Lua name -> suffix after the prefix.
FIXED: dict[str, str] = {
    "depth": "depth",  # string: how many tasks are queued (the max_depth check)
    "all": "all",  # zset, every score 0: all task ids, listed lexicographically
    "leases": "leases",  # zset: running task ids by lease expiry
    "ikeys": "ikeys",  # hash: idempotency key -> task id
    "kept": "kept",  # zset: succeeded ids with a keep_result of their own, by expiry (ADR 0035)
    "queues": "queues",  # set: queues that may hold queued tasks
    "paused": "paused",  # set: paused queues
    "groups": "groups",  # set: "queue|queued|priority" names with at least one queued task
    "counts": "counts",  # hash: "queue|state|priority" -> count, for every state but queued
    "workers": "workers",  # hash: worker id -> MessagePack WorkerInfo
    "workers_seen": "workers:seen",  # zset: worker ids by last_seen
    "limits": "limits",  # hash: "scope|name" -> "max_concurrency|rate|burst" ('' = none)
    "buckets": "buckets",  # hash: "scope|name" -> "tokens|stamp", a rate limit's bucket
    "ulocks": "ulocks",  # hash: unique lock key -> "holder id|until|states" (ADR 0038)
    "running": "running",  # hash: "type|name" and "queue|name" -> running tasks (ADR 0038)
    "instances": "instances",  # hash: instance -> its telemetry report (opaque bytes)
    "instances_expiry": "instances:expiry",  # zset: instances by report expiry
    "wake": "wake",  # pub/sub channel (not a key): new work may be ready
}
# Families of keys: Lua helper name -> suffix; the member (id, queue, ...) follows the suffix.
FAMILIES: dict[str, str] = {
    "task_key": "task:",  # hash per task id: the record's blobs and fields (codec.py)
    "sched_key": "sched:",  # zset per queue: queued ids by due time, not yet moved to ready
    "ready_key": "ready:",  # zset per queue: due ids by order key (ties: by id)
    "group_key": "group:",  # zset per "queue|queued|priority": queued ids by created_at
    "done_key": "done:",  # zset per terminal state: ids by finished_at (purge)
    "leader_key": "leader:",  # hash per singleton duty: holder, expires_at
    "waits_key": "waits:",  # set per task id: its blocked dependents (pending edges only)
    "workflow_key": "workflow:",  # zset per workflow id, every score 0: its task ids
    "control_key": "control:",  # list per instance: packed remote-control commands (ADR 0036)
}


def check_namespace(namespace: str) -> str:
    """Return `namespace` if it can sit inside a hash tag, else raise ConfigurationError."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ConfigurationError(
            f"invalid Redis namespace {namespace!r}: 1-64 letters, digits, '_', '.', ':' or '-'"
        )
    return namespace


class Keys:
    """The key names of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.prefix = f"{{te:{namespace}}}:"
        self.depth = self.prefix + FIXED["depth"]
        self.workers = self.prefix + FIXED["workers"]
        self.workers_seen = self.prefix + FIXED["workers_seen"]
        self.paused = self.prefix + FIXED["paused"]
        self.limits = self.prefix + FIXED["limits"]
        self.buckets = self.prefix + FIXED["buckets"]
        self.instances = self.prefix + FIXED["instances"]
        self.instances_expiry = self.prefix + FIXED["instances_expiry"]
        self.wake = self.prefix + FIXED["wake"]
        # SCAN pattern of every key of the namespace; the name has no glob characters.
        self.pattern = self.prefix + "*"

    @property
    def anchor(self) -> str:
        """The key every script names in KEYS[1]: it routes the call to the namespace's slot."""
        return self.depth

    def task(self, task_id: str) -> str:
        """The hash of one task."""
        return self.prefix + FAMILIES["task_key"] + task_id

    def control(self, instance: str) -> str:
        """The list of one instance's waiting remote-control commands."""
        return self.prefix + FAMILIES["control_key"] + instance


def lua_preamble() -> str:
    """Lua that defines `NS` (from ARGV[1]), table `K` of fixed keys and one function per family.

    Prepended to every script by scripts.py; a script's own arguments start at ARGV[2].
    """
    lines = ["-- generated from keys.py: the key names of the namespace ARGV[1]"]
    lines.append("local NS = ARGV[1]")
    fixed = ", ".join(f"{name} = NS .. '{suffix}'" for name, suffix in FIXED.items())
    lines.append(f"local K = {{{fixed}}}")
    for name, suffix in FAMILIES.items():
        lines.append(f"local function {name}(member) return NS .. '{suffix}' .. member end")
    return "\n".join(lines) + "\n"
