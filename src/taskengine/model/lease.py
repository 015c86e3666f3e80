"""A claim on a running task: the record, a fencing token and when the claim runs out."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from taskengine.model.task import TaskRecord


class Lease(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Held by one worker; extend and settle succeed only with the current token."""

    record: TaskRecord
    token: str
    expires_at: float

    @property
    def task_id(self) -> str:
        """The id of the leased task."""
        return self.record.id


class LeaseStatus(StrEnum):
    """What `extend` says of a lease."""

    HELD = "held"
    LOST = "lost"
    CANCEL_REQUESTED = "cancel_requested"
