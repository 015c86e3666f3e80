"""One typed, frozen Settings object: the only reader of the environment (TASKENGINE_*)."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from taskengine.brokers import DEFAULT_BROKER_URL, DEFAULT_MAX_DEPTH
from taskengine.brokers.deadline import DEFAULT_TIMEOUT
from taskengine.errors import ConfigurationError, ValidationError
from taskengine.policy.cron import CronEntry, check_unique

ENV_PREFIX = "TASKENGINE_"
# Read outside Settings: by the CLI (click's envvar) and by the project's own tests.
OTHER_ENV_NAMES = frozenset(
    {
        "TASKENGINE_API_URL",
        "TASKENGINE_API_TOKEN",
        "TASKENGINE_TEST_BROKERS",
        "TASKENGINE_DURABILITY_SEED",
        "TASKENGINE_DURABILITY_ROUNDS",
    }
)
ENV_ALIASES = {"broker": "broker_url"}  # TASKENGINE_BROKER is TASKENGINE_BROKER_URL

log = logging.getLogger("taskengine.settings")
_warned: set[str] = set()  # unknown names already warned about in this process


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable, with the defaults of DESIGN.md; validated when built."""

    broker_url: str = DEFAULT_BROKER_URL
    max_depth: int = DEFAULT_MAX_DEPTH
    broker_timeout: float = DEFAULT_TIMEOUT  # deadline of each Redis/PostgreSQL call (seconds)
    # worker pool
    workers: int = 5
    min_workers: int | None = None  # autoscaling floor; None: fixed at `workers`
    max_workers: int | None = None  # autoscaling ceiling; None: fixed at `workers`
    queues: tuple[str, ...] | None = None  # None: every queue
    prefetch: int | None = None  # leases buffered beyond busy workers; None: as many as workers
    reserve_batch: int = 256
    settle_batch: int = 512
    threads: int = 32  # thread pool for sync handlers
    processes: int | None = None  # process pool for CPU handlers; None: the core count
    process_memory_mb: int = 1024  # address space per process-pool child; 0: no cap
    process_cpu_seconds: int = 300  # CPU time per process task, then its child is killed; 0: none
    # a loop that has not run for min(task timeout, lease_for) + this ends the process
    watchdog: bool = True
    watchdog_margin: float = 10.0
    # leases and background duties
    lease_for: float = 30.0
    heartbeat_every: float = 10.0
    cancel_poll_every: float = 0.5  # how soon a cancel asked elsewhere stops a running task
    reaper_every: float = 5.0
    idle_wait: float = 1.0  # longest wait for work without a wake-up
    shutdown_grace: float = 25.0
    # a task of a type no live instance runs is given back until then, and dead-lettered after
    unknown_type_grace: float = 600.0
    # retries
    max_attempts: int = 25
    task_timeout: float = 30 * 60.0
    retry_base: float = 1.0
    retry_cap: float = 3600.0
    # circuit breaker per task type: open after this many failures in a row, for this long
    breaker_failures: int = 5
    breaker_open_for: float = 30.0
    # retention
    finished_ttl: float = 24 * 3600.0
    dead_ttl: float = 180 * 24 * 3600.0
    retention_every: float = 60.0
    # periodic tasks (TASKENGINE_CRON: a JSON list of {"name", "cron", "type", "payload", ...})
    cron: tuple[CronEntry, ...] = ()
    scheduler_every: float = 1.0
    cron_catch_up: float = 60.0  # a slot missed by longer than this is skipped
    # HTTP API (`taskengine serve`)
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_tokens: str | None = None  # "admin:TOKEN,read:TOKEN"; required beyond loopback
    log_level: str = "info"
    # built-in task types
    data_dir: str = "./data"
    http_allow_private: bool = False

    def __post_init__(self) -> None:
        positive = {
            "workers": self.workers,
            "reserve_batch": self.reserve_batch,
            "settle_batch": self.settle_batch,
            "threads": self.threads,
            "lease_for": self.lease_for,
            "heartbeat_every": self.heartbeat_every,
            "cancel_poll_every": self.cancel_poll_every,
            "reaper_every": self.reaper_every,
            "idle_wait": self.idle_wait,
            "max_attempts": self.max_attempts,
            "task_timeout": self.task_timeout,
            "retry_base": self.retry_base,
            "scheduler_every": self.scheduler_every,
            "cron_catch_up": self.cron_catch_up,
            "max_depth": self.max_depth,
            "unknown_type_grace": self.unknown_type_grace,
            "broker_timeout": self.broker_timeout,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}")
        if self.heartbeat_every >= self.lease_for:
            raise ConfigurationError("heartbeat_every must be shorter than lease_for")
        try:
            check_unique(list(self.cron))
        except ValidationError as exc:
            raise ConfigurationError(str(exc)) from None
        if self.shutdown_grace < 0:
            raise ConfigurationError("shutdown_grace must not be negative")
        if self.process_memory_mb != 0 and self.process_memory_mb < 64:
            raise ConfigurationError("process_memory_mb must be 0 (no cap) or at least 64")
        if self.process_cpu_seconds < 0 or self.watchdog_margin < 0:
            raise ConfigurationError("process_cpu_seconds and watchdog_margin must not be negative")
        low, high = self.scale_bounds
        if not 1 <= low <= self.workers <= high:
            raise ConfigurationError(
                f"need 1 <= min_workers ({low}) <= workers ({self.workers}) <= max_workers ({high})"
            )

    @property
    def scale_bounds(self) -> tuple[int, int]:
        """The autoscaler's (min, max) pool size."""
        return (self.min_workers or self.workers, self.max_workers or self.workers)

    @property
    def buffer_size(self) -> int:
        """How many leases the fetcher may hold beyond the busy workers."""
        return self.prefetch if self.prefetch is not None else self.workers

    def with_changes(self, **changes: Any) -> Settings:
        """Return a validated copy with `changes` applied."""
        return build_settings({**msgspec.structs.asdict(self), **changes})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from TASKENGINE_* variables, then `overrides` (None values skipped)."""
        environ = os.environ if environ is None else environ
        fields = set(cls.__struct_fields__)
        values: dict[str, Any] = {}
        for key, raw in environ.items():
            if key.startswith(ENV_PREFIX):
                name = key[len(ENV_PREFIX) :].lower()
                name = ENV_ALIASES.get(name, name)
                if name in fields:
                    values[name] = _parse_env(name, raw)
        warn_unknown_env(environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return build_settings(values)


def known_env_names() -> frozenset[str]:
    """Every TASKENGINE_* variable the project reads: the settings, their aliases, the rest."""
    names = [*Settings.__struct_fields__, *ENV_ALIASES]
    return frozenset(ENV_PREFIX + name.upper() for name in names) | OTHER_ENV_NAMES


def unknown_env_names(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """The TASKENGINE_* names among `names` that nothing reads, each with the closest known one."""
    known = known_env_names()
    unknown = sorted({n for n in names if n.startswith(ENV_PREFIX) and n.upper() not in known})
    suffixes = {name[len(ENV_PREFIX) :]: name for name in known}  # the prefix is shared by all
    found: list[tuple[str, str | None]] = []
    for name in unknown:
        close = difflib.get_close_matches(name[len(ENV_PREFIX) :].upper(), suffixes, 1, 0.75)
        found.append((name, suffixes[close[0]] if close else None))
    return found


def warn_unknown_env(
    environ: Mapping[str, str] | None = None, say: Callable[[str], None] | None = None
) -> None:
    """Warn once per process about each unknown TASKENGINE_* variable (a misspelling is ignored).

    `say` shows the message (the CLI prints it); by default it is logged as a warning.
    """
    environ = os.environ if environ is None else environ
    for name, closest in unknown_env_names(environ):
        if name in _warned:
            continue
        _warned.add(name)
        hint = f" (did you mean {closest}?)" if closest else ""
        message = f"unknown environment variable {name} is ignored{hint}"
        if say is None:
            log.warning("%s", message)
        else:
            say(message)


def build_settings(values: Mapping[str, Any]) -> Settings:
    """Validate and convert `values` (strings allowed for numbers) into Settings."""
    try:
        return msgspec.convert(dict(values), Settings, strict=False)
    except (msgspec.ValidationError, ValidationError) as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc


def _parse_env(name: str, raw: str) -> Any:
    if name == "queues":
        return tuple(q.strip() for q in raw.split(",") if q.strip()) or None
    if name == "cron":
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ConfigurationError(f"TASKENGINE_CRON is not JSON: {exc}") from None
    return raw
