"""API tests against a real `taskengine serve` subprocess over a real socket.

Every server is started with `sys.executable -m taskengine --broker URL serve --port P ...`, waited
for on /healthz, stopped with SIGTERM at teardown (exit code 0 asserted) and killed by its own PID
only if it does not stop. Every response the shared clients see is checked: never a traceback, and
every 4xx/5xx is `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

START_TIMEOUT = 60.0  # generous: a loaded machine (parallel test workers) starts slowly
STOP_TIMEOUT = 30.0
ADMIN_TOKEN = "admin-token-0123456789abcdefXYZ"
READ_TOKEN = "read-token-0123456789abcdefXYZab"


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: dict[str, str] | None = None, data_dir: Path | None = None) -> dict[str, str]:
    """os.environ without any TASKENGINE_* leaking in from the caller, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKENGINE_")}
    env["PYTHONUNBUFFERED"] = "1"
    if data_dir is not None:
        env["TASKENGINE_DATA_DIR"] = str(data_dir)
    env.update(extra or {})
    return env


def _without_task_tracebacks(value: Any) -> Any:
    """A JSON value without the `traceback` fields of attempt histories (a task's own data)."""
    if isinstance(value, dict):
        return {k: _without_task_tracebacks(v) for k, v in value.items() if k != "traceback"}
    if isinstance(value, list):
        return [_without_task_tracebacks(v) for v in value]
    return value


def check_response(response: httpx.Response) -> None:
    """Invariants of every answer: no traceback of the server's own (a failed attempt's, in a
    task's history, is the task's data); errors are JSON with a code and a message."""
    response.read()
    content = response.content
    if b"Traceback" in content and response.status_code == 200:
        with contextlib.suppress(ValueError):
            content = json.dumps(_without_task_tracebacks(response.json())).encode()
    assert b"Traceback" not in content, response.text[:2000]
    if response.status_code >= 400 and response.request.method != "HEAD":
        assert response.headers.get("content-type", "").startswith("application/json"), (
            response.status_code,
            response.text[:500],
        )
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error.get("code"), str) and error["code"], body
        assert isinstance(error.get("message"), str) and error["message"], body


class Server:
    """One `taskengine serve` subprocess with its stdout/stderr captured to files."""

    def __init__(
        self,
        workdir: Path,
        *,
        broker: str | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        name: str = "server",
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        self.db_path = workdir / f"{name}.db"
        self.broker = broker or f"sqlite:///{self.db_path}"
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.args = args
        self.env = clean_env(env, data_dir=workdir / "data")
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "taskengine",
            "--broker",
            self.broker,
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.args,
        ]

    def start(self) -> Server:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, env=self.env, stdout=out, stderr=err
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} before it was up:\n"
                    + self.stderr()[-4000:]
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not up within {START_TIMEOUT} s:\n{self.stderr()[-4000:]}")

    def stop(self) -> int:
        """SIGTERM, wait for a graceful exit; kill our own PID only if it hangs."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"server ignored SIGTERM for {STOP_TIMEOUT} s:\n{self.stderr()[-4000:]}"
                ) from None
        self.exit_code = self.proc.returncode
        return self.exit_code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # our own child, by its PID
            self.proc.wait(10)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of stderr (non-JSON lines skipped)."""
        lines = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    lines.append(value)
        return lines

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=kwargs.pop("timeout", 30.0),
            event_hooks={"response": [check_response]},
            **kwargs,
        )


@contextlib.contextmanager
def running(workdir: Path, **kwargs: Any) -> Iterator[Server]:
    """Start a server for the block; stop it with SIGTERM and assert a clean exit."""
    server = Server(workdir, **kwargs).start()
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"server exited with {code}:\n{server.stderr()[-4000:]}"


# -- shared servers -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SQLite broker, 5 workers, default heartbeat (10 s): the server most tests drive."""
    with running(tmp_path_factory.mktemp("api-main"), name="api") as srv:
        yield srv


@pytest.fixture(scope="session")
def idle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SQLite broker and no workers: tasks stay queued, so listings are deterministic."""
    with running(tmp_path_factory.mktemp("api-idle"), name="idle", args=("--no-workers",)) as srv:
        yield srv


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Tokens configured: an admin one and a read one."""
    env = {"TASKENGINE_API_TOKENS": f"admin:{ADMIN_TOKEN},read:{READ_TOKEN}"}
    with running(tmp_path_factory.mktemp("api-auth"), name="auth", env=env) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def idle_client(idle_server: Server) -> Iterator[httpx.Client]:
    with idle_server.client() as c:
        yield c


# -- helpers --------------------------------------------------------------------------------


def submit(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> str:
    """POST one task, assert 201, return its id."""
    response = client.post("/api/tasks", json=body, **kwargs)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def wait_task(
    client: httpx.Client,
    task_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll GET /api/tasks/{id} until `done(view)` (bounded generously: the first cpu.* task
    starts the process pool, slow on a machine loaded by parallel test workers); return the
    view."""
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/tasks/{task_id}")
        assert response.status_code == 200, response.text
        view = response.json()
        if done(view):
            return view
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not get there within {timeout} s: {view}")


def in_state(*states: str) -> Callable[[dict[str, Any]], bool]:
    return lambda view: view["state"] in states
