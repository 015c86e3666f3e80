"""The scheduler: submits periodic tasks once per cron slot across every instance.

Only the leader (a broker lease named "scheduler") submits. Every instance looks at the slots
since it started, at most `catch_up` seconds back: so a standby that takes over after a leader
died submits the slots missed meanwhile, late, and slots from before any instance ran are
skipped, as cron does. Each slot's task carries the slot's key as its idempotency key, so a
slot both the old and the new leader submit is stored once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from taskengine.brokers.base import PERIODIC_OFF, BrokerBackend
from taskengine.clock import Clock
from taskengine.model import Task
from taskengine.model.worker import PeriodicInfo
from taskengine.policy.cron import CronEntry, due_slots, slot_key

log = logging.getLogger("taskengine.runtime")
SCHEDULER = "scheduler"
SLOTS_PER_ROUND = 100  # per entry: a six-field "every second" entry after a long gap


class Scheduler:
    """Decides which slots are due and submits them in one batch per round."""

    def __init__(
        self,
        broker: BrokerBackend,
        clock: Clock,
        entries: Sequence[CronEntry],
        build: Callable[[CronEntry, float, str], Task],
        *,
        instance: str,
        lease_for: float,
        catch_up: float,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.entries = list(entries)
        self.build = build
        self.instance = instance
        self.lease_for = lease_for
        self.catch_up = catch_up
        self._submitted: dict[str, float] = {}  # slot key -> slot, inside the catch-up window
        self._since: float | None = None  # when this instance first looked
        self.leading = False  # this instance held the lease at its last round
        self.last_fired: dict[str, float] = {}  # entry name -> the last slot it submitted

    async def run_once(self) -> list[str]:
        """If this instance leads, submit every due slot not yet submitted; return the keys."""
        now = self.clock.now()
        if not self.entries:
            return []
        if self._since is None:
            self._since = now
        self.leading = await self.broker.leader(SCHEDULER, self.instance, self.lease_for, now)
        if not self.leading:
            self._submitted.clear()  # another leader may submit meanwhile: ask the broker again
            return []
        oldest = max(now - self.catch_up, self._since)
        self._submitted = {k: s for k, s in self._submitted.items() if s > oldest}
        switches = await self.broker.paused()
        keys: list[str] = []
        tasks: list[Task] = []
        names: list[str] = []
        for entry in self.entries:
            disabled = PERIODIC_OFF + entry.name in switches
            for slot in due_slots(entry.cron, oldest, now, SLOTS_PER_ROUND):
                key = slot_key(entry.name, slot)
                if key in self._submitted:
                    continue
                if disabled:  # skipped for good: enabling it again submits no backlog
                    self._submitted[key] = slot
                    continue
                keys.append(key)
                tasks.append(self.build(entry, slot, key))
                names.append(entry.name)
        if not tasks:
            return []
        results = await self.broker.enqueue(tasks, now)
        for key, task, name in zip(keys, tasks, names, strict=True):
            self._submitted[key] = task.run_at
            self.last_fired[name] = max(task.run_at, self.last_fired.get(name, task.run_at))
        created = [key for key, result in zip(keys, results, strict=True) if result.created]
        if created:
            log.info("submitted periodic tasks", extra={"slots": created})
        return created

    def status(self) -> tuple[PeriodicInfo, ...] | None:
        """The entries with their last slot while this instance leads; None otherwise."""
        if not self.leading:
            return None
        return tuple(
            PeriodicInfo(
                name=e.name, cron=e.cron, type=e.type, last_fired=self.last_fired.get(e.name)
            )
            for e in self.entries
        )
