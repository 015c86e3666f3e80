"""Each engine process publishes its telemetry through the broker with its heartbeat."""

from __future__ import annotations

from taskengine.telemetry.report import decode_report
from tests.runtime.apps import build_app, finished
from tests.runtime.conftest import MakeApp


async def test_an_engine_publishes_its_counts_pool_and_seconds_with_its_heartbeat(
    app_on: MakeApp,
) -> None:
    app = await app_on(workers=3)
    engine = app.engine()
    await engine.start()
    try:
        ids = [await app.submit("add.async", {"a": i, "b": 1}) for i in range(4)]
        ids.append(await app.submit("fail.always", None, max_attempts=1))
        await finished(app, ids)
        await engine.sample_once()  # one second sampled, as the service would
        await engine.heartbeat_once()
        [report] = await app.inspector.instances(app.clock.now())
    finally:
        await engine.stop()
    assert report.instance == engine.instance
    assert report.size == 3
    outcomes = {(t, label): n for t, label, n in report.outcomes}
    assert outcomes[("add.async", "succeeded")] == 4
    assert outcomes[("fail.always", "failed")] == 1
    assert report.durations["add.async"].counts and sum(report.durations["add.async"].counts) == 4
    assert sum(report.waits["add.async"].counts) == 4
    assert report.points and set(report.points[-1].busy) == {
        f"{engine.instance}/w{n}" for n in (1, 2, 3)
    }
    assert report.rss_bytes > 0
    # the runs per queue and fate, and the queue's rate: 5 ended during the last minute
    assert set(report.queues) == {("default", "succeeded", 4), ("default", "dead", 1)}
    assert report.queue_rates == {"default": 5 / 60}


async def test_a_stopped_engine_leaves_its_last_counts_until_they_expire(app_on: MakeApp) -> None:
    app = await app_on(workers=1)
    engine = app.engine()
    await engine.start()
    ids = [await app.submit("add.async", {"a": 1, "b": 1}) for _ in range(2)]
    await finished(app, ids)
    await engine.stop()  # no heartbeat since the runs: the stop publishes the last counts
    [report] = await app.inspector.instances(app.clock.now())
    assert ("add.async", "succeeded", 2) in report.outcomes
    assert await app.inspector.instances(app.clock.now() + 3 * 10.0 + 1) == []


async def test_publishing_can_be_turned_off() -> None:
    app = build_app(telemetry_publish=False)
    await app.start()
    engine = app.engine()
    await engine.start()
    try:
        await engine.heartbeat_once()
        assert await app.inspector.instances(app.clock.now()) == []
    finally:
        await engine.stop()
        await app.close()


def test_a_report_this_build_cannot_read_is_left_out() -> None:
    assert decode_report(b"\x93not a report") is None


async def test_a_failing_publish_costs_the_report_not_the_heartbeat() -> None:
    """A broker that cannot store reports (a PostgreSQL schema not migrated yet, say) still gets
    its leases extended and its workers recorded; the heartbeat does not count as failing."""
    app = build_app()
    await app.start()
    engine = app.engine()
    await engine.start()

    async def refuse(*args: object) -> None:
        raise RuntimeError("relation instances does not exist")

    app.broker.record_instance = refuse  # type: ignore[method-assign]
    try:
        await engine.heartbeat.run_once()  # does not raise
        assert engine.health()["heartbeat"] == "ok"
        assert await app.broker.workers(0) != []
    finally:
        await engine.stop()
        await app.close()
