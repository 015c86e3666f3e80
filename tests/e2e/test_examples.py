"""Every script in examples/ runs for real: its own processes, loopback only, bounded in time.

Each runs in a temporary directory (its SQLite files land there); the Redis one gets a
namespace of its own, dropped afterwards. The README's `myapp.py` is examples/myapp.py, word
for word, so what the README shows is what runs here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from taskengine.brokers import open_broker
from taskengine.errors import BrokerUnavailable
from tests.brokers.support import drop_storage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BOUND = 120.0  # generous: a loaded machine, child processes starting


def _env(**extra: str) -> dict[str, str]:
    """This environment, with examples/ importable (for `--app module:app`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKENGINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(EXAMPLES)]))
    return env | extra


def _run(args: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run to the end within BOUND; stdout, or a failure showing both streams."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _example(name: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return _run([sys.executable, EXAMPLES / name, *args], cwd, env)


class Background:
    """A process this test started, stopped by its PID with SIGTERM (SIGKILL past the bound)."""

    def __init__(self, args: Sequence[str | Path], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(a) for a in args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return self.process.returncode, out


@pytest.fixture
def background(tmp_path: Path) -> Iterator[list[Background]]:
    started: list[Background] = []
    yield started
    for process in started:
        process.stop()


def test_the_readme_myapp_is_the_example_word_for_word() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(# myapp\.py\n.*?)```", readme, re.S)
    assert blocks == [(EXAMPLES / "myapp.py").read_text()]


def test_myapp_runs_as_a_script_and_as_the_readme_says(
    tmp_path: Path, background: list[Background]
) -> None:
    out = _example("myapp.py", cwd=tmp_path)
    assert "'sent_to': 'a@example.com'" in out and "SUCCESS" in out
    # `taskengine --app myapp:app worker`, then submit from anywhere (the process task too).
    cli = [sys.executable, "-m", "taskengine", "--app", "myapp:app"]
    background.append(Background([*cli, "worker", "--workers", "4"], tmp_path, _env()))
    submit = ["--json", "submit", "report.render", "--payload", '{"pages": 3}', "--wait"]
    result = json.loads(_run([*cli, *submit], tmp_path))
    assert (result["status"], result["data"]) == ("SUCCESS", {"pages": 3}), result
    code, log = background[0].stop()
    assert code == 0, log


def test_quickstart_runs_the_builtin_types(tmp_path: Path) -> None:
    out = _example("quickstart.py", cwd=tmp_path)
    assert "cpu.primes   SUCCESS  {'count': 9592, 'largest': 99991}" in out
    assert re.search(r"cpu\.sha256   SUCCESS  \{'hexdigest': '[0-9a-f]{64}'", out), out
    assert "time.sleep   SUCCESS" in out


def test_chord_of_100_and_a_chain_run_end_to_end(tmp_path: Path) -> None:
    out = _example("chord.py", cwd=tmp_path)
    assert "chord of 100: sum of squares = 328350" in out  # sum of k^2 for k < 100
    assert "chain 1+2+3+4 = 10" in out


def test_cpu_pipeline_fans_out_to_child_processes(tmp_path: Path) -> None:
    out = _example("cpu_pipeline.py", "1000000", cwd=tmp_path)
    assert out.strip() == "78498 primes below 1000000 (8 chunks)"  # pi(10^6) = 78498


def test_periodic_tasks_run_once_per_slot(tmp_path: Path) -> None:
    out = _example("periodic.py", "3", cwd=tmp_path)
    assert out.startswith("3 heartbeats ran"), out
    assert out.count("succeeded: billing alive at") >= 3


def test_rate_limited_fan_out_keeps_its_limits(tmp_path: Path) -> None:
    out = _example("rate_limited.py", cwd=tmp_path)
    match = re.search(r"(\d+) of 40 pages fetched, at most (\d+) at once", out)
    assert match is not None, out
    assert match.group(1) == "40"
    assert int(match.group(2)) <= 4
    assert "the repeat got the first task: True" in out


def test_sync_producer_submits_over_one_connection(
    tmp_path: Path, background: list[Background]
) -> None:
    env = _env(TASKENGINE_BROKER_URL=f"sqlite:///{tmp_path}/sync.db")
    cli = [sys.executable, "-m", "taskengine", "--app", "sync_producer:app", "worker"]
    background.append(Background(cli, tmp_path, env))
    out = _example("sync_producer.py", cwd=tmp_path, env=env)
    assert out.strip() == "20 signups and 50 imports: 70 e-mails sent"
    code, log = background[0].stop()
    assert code == 0, log


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_fastapi_app_submits_and_awaits_in_its_lifespan(
    tmp_path: Path, background: list[Background]
) -> None:
    port = _free_port()
    env = _env(TASKENGINE_BROKER_URL=f"sqlite:///{tmp_path}/web.db")
    server = [sys.executable, "-m", "uvicorn", "fastapi_app:api", "--port", str(port)]
    background.append(Background(server, tmp_path, env))
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(int(BOUND / 0.1)):  # until it listens (or the process ended)
            assert background[0].process.poll() is None, background[0].stop()[1]
            try:
                client.get("/docs")
                break
            except httpx.TransportError:
                time.sleep(0.1)  # between two checks of the condition
        made = client.post("/thumbnails", json={"url": "https://example.com/a.png", "width": 64})
        assert made.status_code == 200, made.text
        assert made.json()["result"]["width"] == 64
        later = client.post("/thumbnails/later", json={"url": "https://example.com/b.png"})
        assert later.status_code == 202
        assert client.post("/thumbnails", json={"width": 1}).status_code == 422
        assert client.get("/tasks/01HF7YAT00XXXXXXXXXXXXXXXX").status_code == 404
        task = f"/tasks/{later.json()['task_id']}"
        for _ in range(int(BOUND / 0.1)):
            if client.get(task).json()["state"] == "succeeded":
                break
            time.sleep(0.1)  # between two checks of the condition
        assert client.get(task).json()["result"]["width"] == 256
    code, log = background[0].stop()
    assert code in (0, -signal.SIGTERM), log  # uvicorn re-raises the signal once it is done
    assert "Application shutdown complete" in log


def test_redis_example_shares_the_tasks_between_two_worker_processes(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:6379/0?namespace=ex{uuid.uuid4().hex[:10]}"
    _skip_unless_reachable(url)
    try:
        out = _example("redis_workers.py", "200", cwd=tmp_path, env=_env(TASKENGINE_BROKER_URL=url))
    finally:
        asyncio.run(_drop(url))
    assert out.startswith("200 tasks, each run once, shared by 2 worker processes"), out
    counts = [int(n) for n in re.findall(r"worker pid \d+: (\d+) tasks", out)]
    assert len(counts) == 2 and sum(counts) == 200
    assert "workers exited with [0, 0]" in out


def _skip_unless_reachable(url: str) -> None:
    async def ping() -> None:
        broker = open_broker(url)
        try:
            await broker.start()
        finally:
            await broker.close()

    try:
        asyncio.run(ping())
    except (BrokerUnavailable, OSError) as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"redis unreachable: {exc}")


async def _drop(url: str) -> None:
    broker = open_broker(url)
    await broker.start()
    await drop_storage(broker)
    await broker.close()
