"""The package builds (sdist, then a wheel from it) and installs in a fresh venv, as a user's would.

`python -m build` makes both; the wheel goes into a new virtual environment (its dependencies
from the package index). Without the `redis` extra, a Redis URL is a configuration error that
names the extra; with it, the same command reaches the real Redis (its own namespace).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from taskengine.brokers import open_broker
from tests.brokers.support import drop_storage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command to its end (bounded); its output, or a failure that shows it."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if done.returncode != 0:
        pytest.fail(f"{args[:3]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _fresh_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell with the venv active: nothing of this checkout."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_", "TASKENGINE_"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def test_the_wheel_installs_in_a_fresh_venv_and_names_the_extra_it_lacks(
    tmp_path: Path,
) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", dist, ROOT, timeout=600)
    wheels = sorted(dist.glob("task_engine-*.whl"))
    assert len(wheels) == 1, sorted(p.name for p in dist.iterdir())
    assert sorted(dist.glob("task_engine-*.tar.gz")), "no sdist"

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, timeout=120)
    env = _fresh_env(venv)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    _run(*pip, wheels[0], timeout=900, env=env)
    cli = venv / "bin" / "taskengine"

    assert "Usage" in _run(cli, "--help", timeout=60, env=env)

    namespace = f"install-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?namespace={namespace}"
    lacking = subprocess.run(
        [cli, "--broker", url, "queues"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert lacking.returncode != 0
    assert "pip install 'task-engine[redis]'" in lacking.stderr, lacking.stderr
    assert "cannot reach" not in lacking.stderr
    assert "Traceback" not in lacking.stderr

    _run(*pip, f"{wheels[0]}[redis]", timeout=900, env=env)
    try:
        out = _run(cli, "--broker", url, "--json", "queues", timeout=60, env=env)
        assert json.loads(out) == {"queues": []}  # the REST API's answer, from a fresh namespace
    finally:
        asyncio.run(_drop(url))


async def _drop(url: str) -> None:
    broker = open_broker(url)
    await broker.start()
    await drop_storage(broker)
    await broker.close()
