"""DNS rebinding: a request whose Host names a host the server does not answer for is a 400.

A page on rebind.attacker.example whose name is rebound to 127.0.0.1 sends its own name as Host
and as Origin; without a Host check the tokenless loopback API took its writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, running

IO_WRITE = {"type": "io.file", "payload": {"op": "write", "path": "pwned.txt", "content": "x"}}
REBIND = "rebind.attacker.example"


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "host_not_allowed"
    assert response.headers["x-request-id"]  # the refusal went through the middleware
    assert "content-security-policy" in response.headers


def test_rebound_name_cannot_write_or_read(idle_server: Server, idle_client: httpx.Client) -> None:
    host = f"{REBIND}:{idle_server.port}"
    headers = {"Host": host, "Origin": f"http://{host}"}
    _refused(idle_client.post("/api/tasks", json=IO_WRITE, headers=headers))
    _refused(idle_client.get("/api/tasks", headers=headers))
    _refused(idle_client.get("/api/events", headers=headers))
    _refused(idle_client.get("/", headers=headers))
    listed = idle_client.get("/api/tasks", params={"type": "io.file"}).json()["items"]
    assert listed == []


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "localhost.evil.example",
        "evil-localhost",
        "127.0.0.1.nip.io",
        "127.0.0.1:8080:8080",
        "[::1",
        "[127.0.0.1]",
        "local host",
        "",
    ],
)
def test_other_hosts_are_refused(idle_client: httpx.Client, host: str) -> None:
    _refused(idle_client.get("/healthz", headers={"Host": host}))


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "LOCALHOST", "localhost.", "dash.localhost", "[::1]", "127.0.0.2"],
)
def test_loopback_names_and_addresses_are_served(
    idle_server: Server, idle_client: httpx.Client, host: str
) -> None:
    for value in (host, f"{host}:{idle_server.port}"):
        response = idle_client.get("/api/tasks", headers={"Host": value})
        assert response.status_code == 200, (value, response.text)


def test_same_origin_write_by_name_is_accepted(idle_server: Server) -> None:
    origin = f"http://localhost:{idle_server.port}"
    with httpx.Client(base_url=origin, timeout=30) as c:
        created = c.post("/api/tasks", json={**IO_WRITE, "delay": 600}, headers={"Origin": origin})
        assert created.status_code == 201, created.text
        assert c.delete(created.headers["location"]).status_code == 200


@pytest.fixture(scope="module")
def listed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"TASKENGINE_API_ALLOWED_HOSTS": "tasks.internal, .example.com,*.corp.test"}
    with running(
        tmp_path_factory.mktemp("api-hosts"), name="hosts", args=("--no-workers",), env=env
    ) as srv:
        yield srv


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("tasks.internal", True),
        ("TASKS.internal:443", True),
        ("example.com", True),
        ("a.b.example.com", True),
        ("a.corp.test", True),
        ("corp.test", False),  # *.corp.test: subdomains only
        ("api.tasks.internal", False),
        ("example.com.evil.example", False),
        ("evilexample.com", False),
        ("localhost", True),  # the defaults stay
        ("10.1.2.3", True),  # an address cannot be rebound (a pod IP in a probe)
    ],
)
def test_allow_list_setting(listed_server: Server, host: str, served: bool) -> None:
    with listed_server.client() as c:
        response = c.get("/healthz", headers={"Host": host})
    if served:
        assert response.status_code == 200, (host, response.text)
    else:
        _refused(response)


def test_a_bad_allow_list_stops_serve_with_a_message(tmp_path: Path) -> None:
    server = Server(tmp_path, name="badhosts", env={"TASKENGINE_API_ALLOWED_HOSTS": "a.test:80"})
    with pytest.raises(RuntimeError, match="TASKENGINE_API_ALLOWED_HOSTS"):
        server.start()
    assert server.proc is not None and server.proc.wait(10) == 2
    assert "Traceback" not in server.stderr()
