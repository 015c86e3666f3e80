"""Pure data: tasks, states, results, outcomes, leases. Nothing here does I/O."""

from taskengine.model.ids import id_time, new_id
from taskengine.model.lease import Lease, LeaseStatus
from taskengine.model.outcome import Outcome, OutcomeKind
from taskengine.model.progress import Progress, ProgressReport
from taskengine.model.result import AttemptRecord, ResultStatus, TaskResult
from taskengine.model.state import TERMINAL_STATES, TRANSITIONS, TaskState
from taskengine.model.task import Priority, Task, TaskRecord, new_task
from taskengine.model.worker import WorkerInfo

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AttemptRecord",
    "Lease",
    "LeaseStatus",
    "Outcome",
    "OutcomeKind",
    "Priority",
    "Progress",
    "ProgressReport",
    "ResultStatus",
    "Task",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "WorkerInfo",
    "id_time",
    "new_id",
    "new_task",
]
