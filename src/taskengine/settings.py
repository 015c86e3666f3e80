"""One typed, frozen Settings object: the only reader of the environment (TASKENGINE_*)."""

from __future__ import annotations

import difflib
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from taskengine.brokers import DEFAULT_BROKER_URL, DEFAULT_MAX_DEPTH
from taskengine.brokers.deadline import DEFAULT_TIMEOUT
from taskengine.errors import ConfigurationError, ValidationError
from taskengine.model.limits import QueueLimitSpec
from taskengine.model.serializer import DEFAULT_MAX_RESULT_BYTES
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
# Old names still read, with a warning. `processes` meant the process pool's size, while
# `worker --processes` starts engine processes: one word, two things (ADR 0018).
DEPRECATED_NAMES = {"processes": "process_pool"}

log = logging.getLogger("taskengine.settings")
_warned: set[str] = set()  # unknown names already warned about in this process


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable, with the defaults of DESIGN.md; validated when built."""

    broker_url: str = DEFAULT_BROKER_URL
    """where tasks are stored: `memory://`, `sqlite:///path.db` (`?synchronous=NORMAL` trades
    durability for speed), `redis://host:6379/0` (`?namespace=`), `postgresql://user@host/db`
    (`?schema=`, `?pool_size=`, `?migrate=false`), `nats://host:4222` (`?stream=`, `?replicas=`);
    also `TASKENGINE_BROKER`"""
    max_depth: int = DEFAULT_MAX_DEPTH
    """queued tasks before submissions are refused (`queue_full`, HTTP 429, exit 3)"""
    broker_timeout: float = DEFAULT_TIMEOUT
    """seconds each Redis, PostgreSQL or NATS call may take before it counts as a broker failure"""
    # worker pool
    workers: int = 5
    """worker coroutines per engine process: tasks run at once (`worker -c`)"""
    min_workers: int | None = None
    """autoscaling floor; unset: the pool stays at `WORKERS`"""
    max_workers: int | None = None
    """autoscaling ceiling; unset: the pool stays at `WORKERS`"""
    queues: tuple[str, ...] | None = None
    """comma-separated queues this instance takes tasks from; unset: every queue (`worker -Q`)"""
    prefetch: int | None = None
    """leases buffered beyond one per busy worker; unset: adaptive, as many as start within 10 ms at
    the measured run time, up to `WORKERS`"""
    reserve_batch: int = 256
    """most tasks leased in one broker round trip"""
    settle_batch: int = 512
    """most outcomes written in one broker round trip"""
    threads: int = 32
    """threads that run synchronous (`executor="thread"`) handlers"""
    process_pool: int | None = None
    """processes that run `executor="process"` handlers, in each engine process; unset: the core
    count (`worker --processes` is how many engine processes to start)"""
    process_memory_mb: int = 1024
    """address space in MiB of each process-pool child; passing it fails that task alone
    (`MemoryCapExceeded`, no retry); 0: no cap"""
    process_cpu_seconds: int = 300
    """CPU seconds one process-pool task may use, then its child is killed and the task fails
    (`CpuTimeExceeded`, no retry); 0: no cap"""
    watchdog: bool = True
    """end the process (exit 75) when its event loop has not run for min(task timeout,
    `LEASE_FOR`) + `WATCHDOG_MARGIN`, naming the task that blocked it (ADR 0015)"""
    watchdog_margin: float = 10.0
    """seconds past the limit before the watchdog ends a blocked process"""
    # leases and background duties
    lease_for: float = 30.0
    """seconds a lease lasts; a task whose worker stops renewing it is run again after this"""
    heartbeat_every: float = 10.0
    """seconds between lease renewals and worker heartbeats (shorter than `LEASE_FOR`)"""
    cancel_poll_every: float = 0.5
    """seconds: how soon a cancel from another instance stops a running task"""
    reaper_every: float = 5.0
    """seconds between sweeps for expired leases"""
    idle_wait: float = 1.0
    """longest wait in seconds for work when the broker sends no wake-up"""
    shutdown_grace: float = 25.0
    """seconds running tasks get to finish at shutdown (`--grace`)"""
    # a task of a type no live instance runs is given back until then, and dead-lettered after
    unknown_type_grace: float = 600.0
    """seconds a task of a type this instance does not run is given back while another live instance
    runs it; then dead-lettered"""
    # retries
    max_attempts: int = 25
    """default attempts of a task type before its task is dead-lettered"""
    task_timeout: float = 30 * 60.0
    """default seconds one attempt may run"""
    retry_base: float = 1.0
    """seconds: first retry delay (exponential backoff with full jitter)"""
    retry_cap: float = 3600.0
    """seconds: longest retry delay"""
    # circuit breaker per task type: open after this many failures in a row, for this long
    breaker_failures: int = 5
    """failures in a row of a task type that open its circuit breaker (its tasks wait, no attempt
    spent)"""
    breaker_open_for: float = 30.0
    """seconds a circuit breaker stays open before one trial task"""
    # retention
    finished_ttl: float = 24 * 3600.0
    """seconds succeeded and cancelled tasks are kept, then deleted (86400: a day)"""
    dead_ttl: float = 180 * 24 * 3600.0
    """seconds dead tasks are kept for replay, then deleted (15552000: 180 days)"""
    retention_every: float = 60.0
    """seconds between deletions of expired tasks"""
    # periodic tasks
    cron: tuple[CronEntry, ...] = ()
    """periodic tasks: a JSON list of `{"name", "cron", "type", "payload", "priority", "queue"}`
    (cron in UTC)"""
    queue_limits: tuple[QueueLimitSpec, ...] = ()
    """limits per queue for every instance (ADR 0038): a JSON list of `{"queue",
    "max_concurrency", "rate_limit"}` (`"100/s"`, `"30/m"`), stored by each engine at start"""
    scheduler_every: float = 1.0
    """seconds between checks for due periodic tasks"""
    cron_catch_up: float = 60.0
    """seconds: a periodic slot missed by longer than this (all instances down) is skipped"""
    # HTTP API (`taskengine serve`)
    api_host: str = "127.0.0.1"
    """address `serve` listens on (`--host`)"""
    api_port: int = 8080
    """port `serve` listens on (`--port`)"""
    api_tokens: str | None = None
    """`admin:TOKEN,read:TOKEN`; required to listen beyond loopback"""
    api_allowed_hosts: tuple[str, ...] = ()
    """comma-separated host names served besides any IP address, `localhost`, `*.localhost` and
    the `--host` name: `name`, `.name` (with subdomains), `*.name`, `*`; other `Host`s get 400
    (DNS rebinding, ADR 0012)"""
    api_max_header_bytes: int = 32 * 1024
    """bytes of request line and headers one request may send; more is a 431"""
    api_max_headers: int = 100
    """headers one request may send; more is a 431"""
    api_read_timeout: float = 15.0
    """seconds to send a whole request, from its first byte or from connecting; then 408 or
    closed"""
    api_max_connections: int = 512
    """open HTTP connections; the next gets a 503 and is closed"""
    # telemetry (ADR 0033)
    telemetry_publish: bool = True
    """publish this process's metrics through the broker with each heartbeat, so `serve` shows
    the whole cluster (one broker call per heartbeat)"""
    metrics_port: int | None = None
    """port on which `worker` serves `/metrics`, `/healthz` and `/readyz` (`--metrics-port`);
    with `--processes N`, child k takes port + k; unset: none"""
    metrics_host: str = "127.0.0.1"
    """address the worker's metrics endpoint listens on"""
    log_level: str = "info"
    """`debug`, `info`, `warning` or `error` (`--log-level`, `-l`)"""
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    """the largest result a task may store (a bigger one fails its attempt for good,
    `ResultTooLarge`); longer error texts are kept truncated with a marker; also `io.sqlite`'s
    byte cap"""
    # built-in task types
    data_dir: str = "./data"
    """the only directory `io.file` and `io.sqlite` may touch; the dashboard's history file"""
    http_allow_private: bool = False
    """let `io.http` reach private and loopback addresses (cloud metadata addresses stay refused)"""

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
            "api_max_header_bytes": self.api_max_header_bytes,
            "api_max_headers": self.api_max_headers,
            "api_read_timeout": self.api_read_timeout,
            "api_max_connections": self.api_max_connections,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}")
        if self.max_result_bytes < 1024:  # room for an error's head and its truncation marker
            raise ConfigurationError(
                f"max_result_bytes must be >= 1024, got {self.max_result_bytes}"
            )
        if self.heartbeat_every >= self.lease_for:
            raise ConfigurationError("heartbeat_every must be shorter than lease_for")
        try:
            for spec in self.queue_limits:
                spec.limit()
        except ValidationError as exc:
            raise ConfigurationError(f"queue_limits: {exc}") from None
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
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError(f"metrics_port must be 0-65535, got {self.metrics_port}")
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
        return build_settings({**msgspec.structs.asdict(self), **_renamed(changes)})

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
                if name in DEPRECATED_NAMES:
                    name = DEPRECATED_NAMES[name]
                    if ENV_PREFIX + name.upper() in environ:
                        continue  # the new name wins
                if name in fields:
                    values[name] = _parse_env(name, raw)
        warn_unknown_env(environ)
        values.update({k: v for k, v in _renamed(overrides).items() if v is not None})
        return build_settings(values)


def known_env_names() -> frozenset[str]:
    """Every TASKENGINE_* variable the project reads: the settings, their aliases, the rest."""
    names = [*Settings.__struct_fields__, *ENV_ALIASES, *DEPRECATED_NAMES]
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
    """Warn once per process about each unknown TASKENGINE_* variable (a misspelling is ignored)
    and each deprecated one (still read, under its new name).

    `say` shows the message (the CLI prints it); by default it is logged as a warning.
    """
    environ = os.environ if environ is None else environ
    messages: dict[str, str] = {}
    for old, new in DEPRECATED_NAMES.items():
        old_env, new_env = ENV_PREFIX + old.upper(), ENV_PREFIX + new.upper()
        if old_env in environ:
            ignored = f"; ignored, as {new_env} is set" if new_env in environ else ""
            messages[old_env] = f"{old_env} is deprecated: use {new_env}{ignored}"
    for name, closest in unknown_env_names(environ):
        hint = f" (did you mean {closest}?)" if closest else ""
        messages[name] = f"unknown environment variable {name} is ignored{hint}"
    for name, message in messages.items():
        if name in _warned:
            continue
        _warned.add(name)
        if say is None:
            log.warning("%s", message)
        else:
            say(message)


def build_settings(values: Mapping[str, Any]) -> Settings:
    """Validate and convert `values` (strings allowed for numbers) into Settings."""
    try:
        return msgspec.convert(_renamed(values), Settings, strict=False)
    except (msgspec.ValidationError, ValidationError) as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc


def _renamed(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with deprecated names replaced by their new ones (warning once per call site)."""
    found = dict(values)
    for old, new in DEPRECATED_NAMES.items():
        if old in found:
            warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)
            value = found.pop(old)
            found.setdefault(new, value)  # the new name wins when both are given
    return found


def _parse_env(name: str, raw: str) -> Any:
    if name == "queues":
        return tuple(q.strip() for q in raw.split(",") if q.strip()) or None
    if name == "api_allowed_hosts":
        return tuple(h.strip() for h in raw.split(",") if h.strip())
    if name in ("cron", "queue_limits"):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ConfigurationError(f"TASKENGINE_{name.upper()} is not JSON: {exc}") from None
    return raw
