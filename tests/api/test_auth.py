"""Bearer tokens (read and admin scopes), binding beyond loopback, cross-site refusal."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    ADMIN_TOKEN,
    READ_TOKEN,
    Server,
    clean_env,
    free_port,
)

PRIMES = {"type": "cpu.primes", "payload": {"limit": 10}}
UNKNOWN = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
WRONG_TOKEN = "wrong-token-0123456789abcdefXYZ"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def anon(auth_server: Server) -> Iterator[httpx.Client]:
    with auth_server.client() as c:
        yield c


@pytest.fixture
def reader(auth_server: Server) -> Iterator[httpx.Client]:
    with auth_server.client(headers=bearer(READ_TOKEN)) as c:
        yield c


@pytest.fixture
def admin(auth_server: Server) -> Iterator[httpx.Client]:
    with auth_server.client(headers=bearer(ADMIN_TOKEN)) as c:
        yield c


READS = ["/api/tasks", f"/api/tasks/{UNKNOWN}", "/api/workers", "/api/metrics", "/api/queues"]
READS += ["/api/dead-letters"]
WRITES = [
    ("POST", "/api/tasks"),
    ("DELETE", f"/api/tasks/{UNKNOWN}"),
    ("POST", f"/api/tasks/{UNKNOWN}/retry"),
    ("POST", "/api/queues/auth-q/pause"),
    ("POST", "/api/queues/auth-q/resume"),
]


def _unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("path", READS)
def test_no_token_is_401_on_reads(anon: httpx.Client, path: str) -> None:
    _unauthorized(anon.get(path))


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_no_token_is_401_on_writes(anon: httpx.Client, method: str, path: str) -> None:
    _unauthorized(anon.request(method, path, json=PRIMES))


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {WRONG_TOKEN}",
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        f"Basic {ADMIN_TOKEN}",
        ADMIN_TOKEN,
        "Bearer",
        "",
    ],
)
def test_wrong_token_is_401(anon: httpx.Client, header: str) -> None:
    _unauthorized(anon.get("/api/tasks", headers={"Authorization": header}))
    _unauthorized(anon.post("/api/tasks", json=PRIMES, headers={"Authorization": header}))


def test_scheme_is_case_insensitive(anon: httpx.Client) -> None:
    response = anon.get("/api/tasks", headers={"Authorization": f"bearer {READ_TOKEN}"})
    assert response.status_code == 200


@pytest.mark.parametrize("path", READS)
def test_read_token_reads(reader: httpx.Client, path: str) -> None:
    response = reader.get(path)
    expected = 404 if UNKNOWN in path else 200
    assert response.status_code == expected, response.text


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_read_token_cannot_write(reader: httpx.Client, method: str, path: str) -> None:
    response = reader.request(method, path, json=PRIMES)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


def test_admin_token_does_everything(admin: httpx.Client) -> None:
    created = admin.post("/api/tasks", json={**PRIMES, "delay": 600})
    assert created.status_code == 201
    task_id = created.json()["id"]
    assert admin.get(f"/api/tasks/{task_id}").status_code == 200
    assert admin.get("/api/tasks").status_code == 200
    assert admin.delete(f"/api/tasks/{task_id}").status_code == 200
    assert admin.post(f"/api/tasks/{task_id}/retry").status_code == 200
    assert admin.post("/api/queues/auth-q/pause").status_code == 200
    assert admin.post("/api/queues/auth-q/resume").status_code == 200
    for path in ("/api/workers", "/api/metrics", "/api/queues", "/api/dead-letters"):
        assert admin.get(path).status_code == 200, path


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
def test_health_and_docs_are_open(anon: httpx.Client, path: str) -> None:
    assert anon.get(path).status_code == 200


def test_tokens_never_reach_the_logs(auth_server: Server, anon: httpx.Client) -> None:
    for token in (ADMIN_TOKEN, READ_TOKEN, WRONG_TOKEN):
        for header in (f"Bearer {token}", token, f"Basic {token}"):
            anon.get("/api/tasks", headers={"Authorization": header})
            anon.post("/api/tasks", json=PRIMES, headers={"Authorization": header})
            anon.get("/nope", headers={"Authorization": header})
    time.sleep(0.3)
    logs = auth_server.stderr() + auth_server.stdout_path.read_text()
    assert '"path": "/api/tasks"' in logs  # the requests were logged at all
    for token in (ADMIN_TOKEN, READ_TOKEN):
        assert token not in logs


def test_cross_site_requests_are_refused(admin: httpx.Client, auth_server: Server) -> None:
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": f"http://evil.example:{auth_server.port}"},
        {"Origin": "null"},
        {"Origin": auth_server.url, "Sec-Fetch-Site": "cross-site"},
    ):
        for method, path in WRITES:
            response = admin.request(method, path, json=PRIMES, headers=headers)
            assert response.status_code == 403, (headers, method, path, response.text)
            assert response.json()["error"]["code"] == "cross_site_request"


def test_same_origin_requests_are_accepted(admin: httpx.Client, auth_server: Server) -> None:
    for headers in (
        {"Origin": auth_server.url},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": auth_server.url, "Sec-Fetch-Site": "same-origin"},
    ):
        response = admin.post("/api/tasks", json={**PRIMES, "delay": 600}, headers=headers)
        assert response.status_code == 201, (headers, response.text)
        admin.delete(response.headers["location"])
    # reads are never refused for their origin
    assert admin.get("/api/tasks", headers={"Origin": "http://evil.example"}).status_code == 200


def test_cross_site_refused_without_tokens_too(idle_client: httpx.Client) -> None:
    response = idle_client.post(
        "/api/tasks", json=PRIMES, headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "cross_site_request"


# -- binding ----------------------------------------------------------------------------------


def test_refuses_to_listen_on_all_interfaces_without_tokens(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskengine",
            "--broker",
            f"sqlite:///{tmp_path / 'bind.db'}",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=clean_env(data_dir=tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert time.monotonic() - started < 15
    assert "refusing to listen on 0.0.0.0" in done.stderr
    assert "TASKENGINE_API_TOKENS" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_short_tokens_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskengine", "--broker", "memory://", "serve", "--port", "0"],
        cwd=tmp_path,
        env=clean_env({"TASKENGINE_API_TOKENS": "admin:short"}, data_dir=tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "16 characters" in done.stderr
    assert "short" not in done.stderr.replace("16 characters", "")


def test_listens_on_all_interfaces_with_a_token(tmp_path: Path) -> None:
    server = Server(
        tmp_path,
        name="wide",
        args=("--no-workers",),
        env={"TASKENGINE_API_TOKENS": f"admin:{ADMIN_TOKEN}"},
    )
    server.host = "0.0.0.0"
    server.url = f"http://127.0.0.1:{server.port}"
    server.start()
    try:
        with server.client() as c:
            _unauthorized(c.get("/api/tasks"))
            assert c.get("/api/tasks", headers=bearer(ADMIN_TOKEN)).status_code == 200
    finally:
        assert server.stop() == 0
