"""The control watch: applies the remote-control commands sent to this instance (ADR 0036)."""

from __future__ import annotations

import logging
from typing import Protocol

from taskengine.brokers.base import BrokerBackend, Control, ControlCommand
from taskengine.runtime.service import PeriodicService

log = logging.getLogger("taskengine.runtime")
CONTROL_WATCH = "control-watch"


class Controlled(Protocol):
    """What the watch steers (`Engine` is one)."""

    async def drain(self) -> None:
        """Stop taking tasks; the running ones finish."""

    async def undrain(self) -> None:
        """Take tasks again."""

    def resize(self, size: int) -> None:
        """Run `size` workers."""

    def request_shutdown(self) -> None:
        """Begin a graceful stop, as on SIGTERM."""

    async def report(self) -> None:
        """Tell the worker registry the new state now (not at the next heartbeat)."""


class ControlWatch(PeriodicService):
    """Every `every` seconds: take this instance's commands from the broker and apply them in
    the order they were sent; one broker call per round (none written while there are none)."""

    def __init__(
        self, broker: BrokerBackend, engine: Controlled, *, instance: str, every: float
    ) -> None:
        # Bounded: a read stuck on a half-open connection must not stop the watch for good.
        super().__init__(CONTROL_WATCH, every, self.run_once, deadline=max(every, 1.0) * 4)
        self.broker = broker
        self.engine = engine
        self.instance = instance

    async def run_once(self) -> int:
        """Apply the waiting commands; return how many."""
        controls = await self.broker.take_controls(self.instance)
        for control in controls:
            await self.apply(control)
        if controls:
            await self.engine.report()
        return len(controls)

    async def apply(self, control: Control) -> None:
        """Apply one command."""
        log.info(
            "remote control: %s",
            control.command.value,
            extra={
                "instance": self.instance,
                "command": control.command.value,
                "size": control.size,
            },
        )
        match control.command:
            case ControlCommand.DRAIN:
                await self.engine.drain()
            case ControlCommand.RESUME:
                await self.engine.undrain()
            case ControlCommand.RESIZE if control.size is not None and control.size > 0:
                self.engine.resize(control.size)
            case ControlCommand.SHUTDOWN:
                self.engine.request_shutdown()
            case _:
                log.warning("remote control: ignored %r", control)
