"""Limits seen from a running engine: held-back tasks run once a slot or a token frees up,
and the fetcher waits for the bucket, not for its idle timeout, and never spins."""

from __future__ import annotations

from typing import Any

from taskengine.model import TaskState
from taskengine.model.limits import Limit, LimitScope
from tests.runtime.apps import build_app, finished


class Waits:
    """Wraps a broker and records the timeout of every `wait_for_work` and each reserve."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.timeouts: list[float] = []
        self.reserves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def limited_for(self) -> float | None:
        return self._inner.limited_for  # type: ignore[no-any-return]

    async def reserve(self, *args: Any, **kwargs: Any) -> Any:
        self.reserves += 1
        return await self._inner.reserve(*args, **kwargs)

    async def wait_for_work(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        await self._inner.wait_for_work(timeout)


async def test_the_fetcher_waits_for_the_next_token_not_its_idle_timeout() -> None:
    from taskengine.runtime.engine import Engine

    app = build_app(idle_wait=600.0)  # a missed token would stall the test for ten minutes
    await app.start()
    await app.broker.set_limits([Limit(scope=LimitScope.TYPE, name="quick", rate=20.0, burst=1)])
    broker = Waits(app.broker)
    worker = Engine(broker, app.registry, app.settings, clock=app.clock)  # type: ignore[arg-type]
    ids = [await app.submit("quick", n) for n in range(6)]
    await worker.start()
    try:
        records = await finished(app, ids, timeout=30.0)
        assert all(r.state is TaskState.SUCCEEDED for r in records)
        assert all(r.attempt == 1 for r in records)  # held back: no attempt spent
        assert any(t < 1.0 for t in broker.timeouts)
        # no busy loop: about one reserve per token, never hundreds
        assert broker.reserves < 6 * 10
    finally:
        await worker.stop()
        await app.close()


async def test_a_settle_wakes_a_fetcher_held_back_by_max_concurrency() -> None:
    from taskengine.runtime.engine import Engine

    app = build_app(idle_wait=600.0, workers=4)
    await app.start()
    await app.broker.set_limits([Limit(scope=LimitScope.TYPE, name="quick", max_concurrency=1)])
    worker = Engine(app.broker, app.registry, app.settings, clock=app.clock)
    ids = [await app.submit("quick", n) for n in range(5)]
    await worker.start()
    try:
        records = await finished(app, ids, timeout=30.0)
        assert all(r.state is TaskState.SUCCEEDED for r in records)
    finally:
        await worker.stop()
        await app.close()


async def test_limits_declared_in_code_are_stored_when_the_engine_starts() -> None:
    from taskengine import App

    app = App("memory://")

    @app.task("mail.send", rate_limit="120/m", max_concurrency=3)
    async def send(payload: dict[str, Any]) -> None:
        """Send nothing."""

    app.queue_limit("bulk", max_concurrency=2, rate_limit="5/s")
    async with app:
        engine = app.engine()
        await engine.start()
        try:
            assert await app.inspector.limits() == [
                Limit(scope=LimitScope.QUEUE, name="bulk", max_concurrency=2, rate=5.0),
                Limit(scope=LimitScope.TYPE, name="mail.send", max_concurrency=3, rate=2.0),
            ]
        finally:
            await engine.stop()


def test_a_malformed_rate_limit_is_refused_at_declaration() -> None:
    import pytest

    from taskengine import App
    from taskengine.errors import ValidationError

    app = App("memory://")
    with pytest.raises(ValidationError):
        app.queue_limit("bulk", rate_limit="fast")
    with pytest.raises(ValidationError):
        app.task("t", max_concurrency=0)


def test_queue_limits_come_from_the_settings_and_the_environment() -> None:
    import pytest

    from taskengine import App
    from taskengine.errors import ConfigurationError
    from taskengine.settings import Settings

    env = {
        "TASKENGINE_BROKER_URL": "memory://",
        "TASKENGINE_QUEUE_LIMITS": '[{"queue": "bulk", "max_concurrency": 2, "rate_limit": "5/s"}]',
    }
    app = App(settings=Settings.from_env(env))
    assert app.limits == [Limit(scope=LimitScope.QUEUE, name="bulk", max_concurrency=2, rate=5.0)]
    with pytest.raises(ConfigurationError):
        Settings.from_env({**env, "TASKENGINE_QUEUE_LIMITS": '[{"queue": "q", "rate_limit": "x"}]'})
