"""The Lua scripts: loaded from lua/*.lua, run by EVALSHA with a fallback to EVAL.

Each script is the generated key preamble (keys.lua_preamble), then lua/_common.lua, then the
script's own file, whose header states its KEYS, ARGV, return value and invariant. Every call
passes KEYS[1] = the namespace's anchor key (it would route the call on a cluster) and
ARGV[1] = the namespace's key prefix; the script's own arguments follow. The sources do not
depend on the namespace, so every namespace shares one SHA per script.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from taskengine.brokers.redis.keys import Keys, lua_preamble
from taskengine.errors import BrokerUnavailable
from taskengine.model.deps import PARENT_FAILED

Arg = str | bytes | int | float
# BUSY as the server says it, or as redis-py's pipeline quotes it ("... caused error: ('BUSY").
_BUSY = re.compile(r"^BUSY |\('BUSY ")
NAMES = (
    "enqueue",
    "reserve",
    "extend",
    "progress",
    "settle",
    "requeue_expired",
    "cancel",
    "replay",
    "purge",
    "purge_kept",
    "delete",
    "leader",
    "resign",
    "counts",
    "list",
    "record_instance",
)


class Script:
    """One Lua script: its full source and SHA1."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def _read(name: str) -> str:
    return resources.files("taskengine.brokers.redis").joinpath(f"lua/{name}.lua").read_text()


def load_scripts() -> dict[str, Script]:
    """Build every script from its files (no I/O to Redis)."""
    head = lua_preamble() + _constants() + _read("_common")
    return {name: Script(name, head + _read(name)) for name in NAMES}


def _constants() -> str:
    """Lua constants spelled once in Python: the start of a parent-failed error (model.deps)."""
    return f"local PARENT_FAILED = '{PARENT_FAILED}'\n"


SCRIPTS = load_scripts()


class ScriptRunner:
    """Runs the scripts for one namespace on one client."""

    def __init__(self, client: Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def preload(self) -> None:
        """SCRIPT LOAD every script in one round trip (EVALSHA then rarely needs EVAL)."""
        pipe = self._client.pipeline(transaction=False)
        for script in SCRIPTS.values():
            pipe.script_load(script.source)
        await pipe.execute()

    async def run(self, name: str, *args: Arg) -> Any:
        """Run script `name` with `args` after the namespace prefix; one round trip (two if
        the server lost its script cache, e.g. after a restart or SCRIPT FLUSH). A server
        busy with a long script raises BrokerUnavailable (`unavailable`)."""
        script = SCRIPTS[name]
        keys_and_args = (self._keys.anchor, self._keys.prefix, *args)
        try:
            try:
                return await self._client.evalsha(script.sha, 1, *keys_and_args)
            except NoScriptError:
                return await self._client.eval(script.source, 1, *keys_and_args)
        except ResponseError as exc:
            mapped = unavailable(exc)
            if mapped is None:
                raise
            raise mapped from exc


def unavailable(exc: ResponseError) -> BrokerUnavailable | None:
    """The BrokerUnavailable an error reply of the server means, or None (a bug: propagate).

    BUSY: a script (ours or anyone's) has run past the server's busy threshold, and the
    server answers nothing else until it ends or is killed: the server cannot serve now.
    """
    if _BUSY.search(str(exc)):
        return BrokerUnavailable(f"Redis is busy running a script: {exc}")
    return None
