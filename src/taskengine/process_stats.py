"""This process's resource use (psutil), for the metrics snapshot."""

from __future__ import annotations

import functools
from typing import Any

import psutil


@functools.cache
def _process() -> psutil.Process:
    return psutil.Process()


def process_stats() -> dict[str, Any]:
    """RSS bytes, CPU percent since the last call, open file descriptors and threads."""
    process = _process()
    with process.oneshot():
        return {
            "rss_bytes": process.memory_info().rss,
            "cpu_percent": process.cpu_percent(None),
            "open_fds": process.num_fds(),
            "threads": process.num_threads(),
        }
