"""Helpers shared by the conformance suite: broker URLs, task and outcome builders.

The suite runs every test against each URL in `broker_urls()`. A URL may hold `{tmp}` (a fresh
temporary directory) and `{uid}` (a fresh unique name, for servers shared between tests).
More brokers are added through `TASKENGINE_TEST_BROKERS` (comma separated) or by extending
`BUILTIN_URLS`; no test changes when one is added.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from taskengine.brokers import BrokerBackend, open_broker
from taskengine.errors import BrokerUnavailable
from taskengine.model import Lease, Outcome, OutcomeKind, ResultStatus, Task, TaskResult, new_task
from tests.nats_server import OLDEST_URL, session_address

MEMORY_URL = "memory://"
BUILTIN_URLS = ["memory://", "sqlite:///{tmp}/t.db"]
# Brokers on servers of this machine; each test gets its own namespace. Outside CI a server
# that does not answer skips its tests with a reason; with CI=true they must run. The suite's
# fake clock drives them, so they take the callers' "now" instead of their server's clock
# (tests/brokers/test_server_clock.py runs them with it).
SERVICE_URLS = [
    "redis://127.0.0.1:6379/0?namespace={uid}&server_clock=false",
    "postgresql://postgres@127.0.0.1:5432/test?schema={uid}&server_clock=false",
    # NATS: the newest nats-server (started by the session), and the oldest supported, Debian's
    # 2.9.10 (started by .ci/run on 4222)
    "nats://{nats}?stream={uid}&server_clock=false",
    f"nats://{OLDEST_URL}?stream={{uid}}&server_clock=false",
]
SERVICE_SCHEMES = ("redis", "postgresql", "nats")
T0 = 1_700_000_000.0  # where every FakeClock starts; whole seconds keep float arithmetic exact

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

MakeBroker = Callable[..., Awaitable[BrokerBackend]]
"""Starts a broker on the test's URL (or another) with options; the fixture closes it."""


def broker_urls(*, oldest: bool = True) -> list[str]:
    """Every broker URL template the suite runs against; without the oldest NATS server when
    `oldest` is False (the runtime and chaos suites: the broker suite proves the contract on
    it, and the engine above a broker does not depend on the server's version)."""
    extra = os.environ.get("TASKENGINE_TEST_BROKERS", "")
    services = [
        url for url in SERVICE_URLS if _implemented(url) and (oldest or OLDEST_URL not in url)
    ]
    return BUILTIN_URLS + services + [url.strip() for url in extra.split(",") if url.strip()]


def _implemented(url: str) -> bool:
    """A service broker joins the suite once its module exists."""
    import importlib.util

    scheme = url.split(":", 1)[0]
    module = {
        "redis": "taskengine.brokers.redis",
        "postgresql": "taskengine.brokers.postgres",
        "nats": "taskengine.brokers.nats",
    }
    return importlib.util.find_spec(module[scheme]) is not None


def url_id(url: str) -> str:
    """A short test id for a URL template: its scheme (and which NATS server)."""
    scheme = url.split(":", 1)[0]
    return "nats-oldest" if OLDEST_URL in url else scheme


def fill_url(template: str, tmp: Path) -> str:
    """Fill `{tmp}`, `{uid}` and `{nats}` (the session's NATS server) in a URL template."""
    nats = session_address() if "{nats}" in template else ""
    return template.format(tmp=tmp, uid=f"t{uuid.uuid4().hex[:12]}", nats=nats)


async def started(url: str, **options: Any) -> BrokerBackend:
    """Open and start the broker `url` names; skip (outside CI) if its server is down."""
    broker = open_broker(url, **options)
    try:
        await broker.start()
    except (BrokerUnavailable, OSError) as exc:
        if url.startswith(SERVICE_SCHEMES) and os.environ.get("CI") != "true":
            import pytest

            pytest.skip(f"{url.split(':', 1)[0]} unreachable: {exc}")
        raise
    return broker


async def drop_storage(broker: BrokerBackend) -> None:
    """Drop what a service broker stored under its own name (Redis namespace, PostgreSQL
    schema, NATS stream), so servers shared between tests do not fill up; a closed broker is
    left alone."""
    drop = (
        getattr(broker, "drop_schema", None)
        or getattr(broker, "drop_namespace", None)
        or getattr(broker, "drop_stream", None)
    )
    if drop is not None:
        with contextlib.suppress(BrokerUnavailable):
            await drop()


def make_id(now: float, seq: int) -> str:
    """A deterministic task id in the ULID layout: sortable by `now`, then by `seq`."""
    value = (int(now * 1000) << 80) | seq
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class Tasks:
    """Builds tasks with explicit, increasing ids (so every broker sees the same ones)."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, now: float, type: str = "demo.echo", **kwargs: Any) -> Task:
        self.seq += 1
        kwargs.setdefault("task_id", make_id(now, self.seq))
        return new_task(type, {"n": self.seq}, now=now, **kwargs)

    def many(self, count: int, now: float, **kwargs: Any) -> list[Task]:
        return [self(now, **kwargs) for _ in range(count)]


def result_for(
    lease: Lease,
    status: ResultStatus,
    now: float,
    *,
    data: Any = None,
    error: str | None = None,
) -> TaskResult:
    """The result a worker would report for one run of `lease`."""
    return TaskResult(
        task_id=lease.task_id,
        status=status,
        data=data,
        duration=1.0,
        worker_id=lease.record.worker_id,
        completed_at=now,
        error=error,
        attempt=lease.record.attempt,
    )


def outcome(
    kind: OutcomeKind,
    lease: Lease,
    now: float,
    *,
    run_at: float | None = None,
    data: Any = None,
    error: str | None = None,
) -> Outcome:
    """An outcome of `kind` for `lease`, with a fitting result where the kind needs one."""
    status = {
        OutcomeKind.SUCCEEDED: ResultStatus.SUCCESS,
        OutcomeKind.RETRY: ResultStatus.FAILURE,
        OutcomeKind.DEAD: ResultStatus.FAILURE,
        OutcomeKind.CANCELLED: ResultStatus.CANCELLED,
    }.get(kind)
    result = None
    if status is not None:
        if error is None and status is not ResultStatus.SUCCESS:
            error = f"{kind} on attempt {lease.record.attempt}"
        result = result_for(lease, status, now, data=data, error=error)
    return Outcome(
        kind=kind, task_id=lease.task_id, token=lease.token, result=result, run_at=run_at
    )


def ids(items: Sequence[Lease]) -> list[str]:
    """The task ids of some leases, in order."""
    return [lease.task_id for lease in items]
