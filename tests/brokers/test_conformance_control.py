"""Conformance: the remote-control channel (send_control / take_controls, ADR 0036)."""

from __future__ import annotations

from taskengine.brokers import BrokerBackend, Control, ControlCommand
from taskengine.clock import FakeClock
from tests.brokers.support import MakeBroker


async def test_controls_reach_their_instance_once_in_order(
    broker: BrokerBackend, clock: FakeClock
) -> None:
    now = clock.now()
    drain = Control(command=ControlCommand.DRAIN, sent_at=now)
    resize = Control(command=ControlCommand.RESIZE, sent_at=now + 1, size=7)
    await broker.send_control("host:1:a", [drain])
    await broker.send_control("host:1:a", [resize])

    assert await broker.take_controls("host:1:b") == []
    assert await broker.take_controls("host:1:a") == [drain, resize]
    assert await broker.take_controls("host:1:a") == []


async def test_a_control_sent_after_a_take_is_taken_next(
    broker: BrokerBackend, clock: FakeClock
) -> None:
    first = Control(command=ControlCommand.DRAIN, sent_at=clock.now())
    later = Control(command=ControlCommand.SHUTDOWN, sent_at=clock.advance(1))
    await broker.send_control("i", [first])
    assert await broker.take_controls("i") == [first]
    await broker.send_control("i", [later])
    assert await broker.take_controls("i") == [later]


async def test_controls_cross_connections(
    make_broker: MakeBroker, broker: BrokerBackend, clock: FakeClock
) -> None:
    if not broker.capabilities.shared:
        return  # one process's memory: nothing to cross
    other = await make_broker()
    control = Control(command=ControlCommand.RESUME, sent_at=clock.now())
    await other.send_control("far", [control])
    assert await broker.take_controls("far") == [control]
    assert await other.take_controls("far") == []
