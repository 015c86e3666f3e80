"""Caps on one process-executor child: its address space for life, CPU time per task.

Runs in the child only. The memory cap is RLIMIT_AS, set once when the child starts, so an
allocation past it raises MemoryError in the handler instead of growing the host's memory.
The CPU cap is RLIMIT_CPU, moved before every task to what the child has used so far plus
the cap, so it bounds each task rather than the child's life: past it the kernel sends
SIGXCPU, whose default action ends the child even inside C code that never returns to Python.
"""

from __future__ import annotations

import math
import resource
import signal

MIB = 1024 * 1024

_memory_mb = 0  # this child's caps, 0 for none (set by `limit_child`)
_cpu_seconds = 0


def limit_child(memory_mb: int, cpu_seconds: int) -> None:
    """Pebble's initializer in each new child: cap its address space, remember the CPU cap."""
    global _memory_mb, _cpu_seconds
    _memory_mb, _cpu_seconds = memory_mb, cpu_seconds
    if memory_mb > 0:
        _lower(resource.RLIMIT_AS, memory_mb * MIB)
    if cpu_seconds > 0:
        _lower(resource.RLIMIT_CORE, 0)  # SIGXCPU would dump core: a GB file per hog
        signal.signal(signal.SIGXCPU, signal.SIG_DFL)


def start_cpu_budget() -> None:
    """Before a task: let it use `cpu_seconds` more CPU time than the child has used so far."""
    if _cpu_seconds <= 0:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + _cpu_seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def memory_cap_mb() -> int:
    """The memory cap of this child in MB (0: none)."""
    return _memory_mb


def _lower(limit: int, value: int) -> None:
    """Set both the soft and the hard limit to `value`, never above the hard limit in force."""
    _, hard = resource.getrlimit(limit)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(limit, (value, value))
