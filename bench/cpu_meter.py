"""CPU seconds of the processes a benchmark run involves, read from the kernel's accounting
(`/proc/<pid>/stat` through psutil): a process tree, or the server processes serving a run's own
TCP connections (the PostgreSQL backends of its clients, not of whoever else shares the server).
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def tree(pid: int | None) -> list[int]:
    """`pid` and every process below it (empty when there is none)."""
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds used so far by each process still alive (all its threads)."""
    used = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[pid] = times.user + times.system
    return used


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings; a process first seen in `after` started in
    between, so all of its time counts (one gone by `after` is not counted)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def client_ports(server_port: int, clients: Iterable[int]) -> set[int]:
    """Local ports of the TCP connections `clients` hold to `server_port`."""
    pids = set(clients)
    return {
        conn.laddr.port
        for conn in psutil.net_connections("tcp")
        if conn.pid in pids and conn.raddr and conn.raddr.port == server_port
    }


def backends_of(server_port: int, ports: set[int]) -> list[int]:
    """The server processes (listening on `server_port`) whose peer is one of the local
    `ports`: for PostgreSQL, the backend serving each of those connections."""
    return sorted(
        {
            conn.pid
            for conn in psutil.net_connections("tcp")
            if conn.pid is not None
            and conn.laddr.port == server_port
            and conn.raddr
            and conn.raddr.port in ports
        }
    )
