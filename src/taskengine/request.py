"""TaskRequest: one task to submit, as every face (Python, HTTP, CLI) hands it to the App."""

from __future__ import annotations

from typing import Any

import msgspec

from taskengine.model import Priority


class TaskRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One task to submit; unset fields take the task type's registered defaults."""

    type: str
    payload: Any = None
    priority: Priority | int | str | None = None
    queue: str | None = None
    delay: float | None = None
    run_at: float | None = None
    timeout: float | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    # seconds a succeeded task's record is kept (0: deleted when it settles); None: the type's
    keep_result: float | None = None
    # Tasks that must succeed first (model.deps): it waits `blocked` until then.
    depends_on: list[str] | None = None
    # A parent ending dead or cancelled: "cancel" this task, or "run" it anyway.
    on_parent_failure: str = "cancel"
    # uniqueness (ADR 0038): a repeat within unique_for seconds, or while the first has not run
    # (unique_while="queued": blocked or queued) or not finished ("running"), answers its id;
    # by type and payload, or by type and unique_key
    unique_for: float | None = None
    unique_while: str | None = None
    unique_key: str | None = None
