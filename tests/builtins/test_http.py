"""io.http: requests, caps, payload validation and every SSRF refusal."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from taskengine.builtins import (
    BuiltinConfig,
    HttpRequestFailed,
    TaskInputError,
    TaskRefused,
    builtin_registry,
)
from taskengine.builtins.http import HttpPayload, HttpTask, normalize_host, refusal_reason
from taskengine.model import ResultStatus, TaskState
from taskengine.policy.retry import Snooze
from taskengine.registry import InvalidPayload
from taskengine.runtime.runner import refused_input
from taskengine.testing import memory_app, running_worker


def local(config: BuiltinConfig, **changes: Any) -> BuiltinConfig:
    """The config with the loopback test server allowed."""
    fields = {f: getattr(config, f) for f in config.__struct_fields__}
    fields.update({"http_allowed_hosts": frozenset({"127.0.0.1"}), **changes})
    return BuiltinConfig(**fields)


@pytest.fixture
async def task(config: BuiltinConfig) -> AsyncIterator[HttpTask]:
    t = HttpTask(local(config))
    yield t
    await t.aclose()


@pytest.fixture
async def strict(config: BuiltinConfig) -> AsyncIterator[HttpTask]:
    t = HttpTask(config)
    yield t
    await t.aclose()


async def test_get_json(task: HttpTask, http_server: str) -> None:
    result = await task.run(HttpPayload(url=f"{http_server}/json"))
    assert result["status"] == 200
    assert result["body"] == {"hello": "world", "n": 1}
    assert result["headers"]["content-type"] == "application/json"
    assert result["elapsed"] >= 0


async def test_get_text_and_head(task: HttpTask, http_server: str) -> None:
    text = await task.run(HttpPayload(url=f"{http_server}/text"))
    assert text["body"] == "plain text"
    head = await task.run(HttpPayload(url=f"{http_server}/text", method="HEAD"))
    assert head["status"] == 200
    assert head["body"] is None


async def test_post_json_with_headers(task: HttpTask, http_server: str) -> None:
    payload = HttpPayload(
        url=f"{http_server}/echo", method="POST", headers={"X-Test": "yes"}, body={"a": [1]}
    )
    result = await task.run(payload)
    assert result["status"] == 201
    assert result["body"] == {"received": {"a": [1]}, "header": "yes"}


async def test_follows_redirects_between_allowed_hosts(task: HttpTask, http_server: str) -> None:
    url = f"{http_server}/redirect?to={http_server}/json"
    result = await task.run(HttpPayload(url=url))
    assert result["status"] == 200
    assert result["url"] == f"{http_server}/json"


async def test_too_many_redirects(config: BuiltinConfig, http_server: str) -> None:
    task = HttpTask(local(config, http_max_redirects=1))
    loop = f"{http_server}/redirect?to=/redirect%3Fto%3D/json"
    try:
        with pytest.raises(TaskInputError, match="redirects"):
            await task.run(HttpPayload(url=f"{http_server}/redirect?to={loop}"))
    finally:
        await task.aclose()


async def test_the_response_size_is_capped(config: BuiltinConfig, http_server: str) -> None:
    task = HttpTask(local(config, http_max_bytes=1000))
    try:
        with pytest.raises(TaskRefused, match="1000") as declared:
            await task.run(HttpPayload(url=f"{http_server}/big?size=5000"))
        assert declared.value.reason == "too_large"
        with pytest.raises(TaskRefused, match="over 1000 bytes"):
            await task.run(HttpPayload(url=f"{http_server}/stream"))
        ok = await task.run(HttpPayload(url=f"{http_server}/big?size=1000"))
        assert ok["body"] == "x" * 1000
    finally:
        await task.aclose()


async def test_a_closed_port_is_a_retryable_failure_naming_the_host(task: HttpTask) -> None:
    with pytest.raises(HttpRequestFailed) as info:
        await task.run(HttpPayload(url="http://127.0.0.1:9/", timeout=5))
    assert info.value.host == "127.0.0.1"
    assert "127.0.0.1" in str(info.value)


async def test_the_host_is_pinned_to_the_vetted_address(
    config: BuiltinConfig, http_server: str
) -> None:
    """The name only resolves through the guard's resolver, so the request connected to the
    address the guard returned, while the Host header kept the name."""
    port = http_server.rsplit(":", 1)[1]
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    task = HttpTask(local(config, http_allowed_hosts=frozenset({"pinned.test"})), resolver)
    try:
        result = await task.run(HttpPayload(url=f"http://pinned.test:{port}/host"))
    finally:
        await task.aclose()
    assert result["body"] == f"pinned.test:{port}"
    assert calls == ["pinned.test"]


async def test_a_name_that_rebinds_to_loopback_is_refused_at_connect(
    config: BuiltinConfig,
) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]  # one public answer and one internal one

    task = HttpTask(config, resolver)
    try:
        with pytest.raises(TaskRefused, match=r"rebind\.test.*127\.0\.0\.1") as info:
            await task.run(HttpPayload(url="http://rebind.test/"))
    finally:
        await task.aclose()
    assert info.value.reason == "ssrf"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://localhost/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://192.168.1.1:8080/",
        "http://127.1/",
        "http://2130706433/",
        "http://224.0.0.1/",
    ],
)
async def test_internal_addresses_are_refused(strict: HttpTask, url: str) -> None:
    with pytest.raises(TaskRefused) as info:
        await strict.run(HttpPayload(url=url, timeout=5))
    assert info.value.reason == "ssrf"
    assert info.value.code == "task_refused"


@pytest.mark.parametrize(
    "target", ["http://10.0.0.1/", "http://169.254.169.254/", "http://localhost:{port}/json"]
)
async def test_a_redirect_to_a_refused_address_is_refused(
    task: HttpTask, http_server: str, target: str
) -> None:
    target = target.format(port=http_server.rsplit(":", 1)[1])
    with pytest.raises(TaskRefused) as info:
        await task.run(HttpPayload(url=f"{http_server}/redirect?to={target}"))
    assert info.value.reason == "ssrf"


async def test_a_redirect_to_another_scheme_is_refused(task: HttpTask, http_server: str) -> None:
    with pytest.raises(TaskRefused, match="'file'"):
        await task.run(HttpPayload(url=f"{http_server}/redirect?to=file:///etc/passwd"))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "gopher://x/"])
async def test_other_schemes_are_refused(strict: HttpTask, url: str) -> None:
    with pytest.raises(TaskRefused, match="is not http or https") as info:
        await strict.run(HttpPayload(url=url))
    assert info.value.reason == "scheme"


async def test_allow_private_still_refuses_metadata(config: BuiltinConfig) -> None:
    task = HttpTask(local(config, http_allowed_hosts=frozenset(), http_allow_private=True))
    try:
        with pytest.raises(TaskRefused, match="metadata"):
            await task.run(HttpPayload(url="http://169.254.169.254/"))
    finally:
        await task.aclose()


async def test_reserved_headers_and_bodies_on_get_are_input_errors(strict: HttpTask) -> None:
    with pytest.raises(TaskInputError, match="Host"):
        await strict.run(HttpPayload(url="http://example.com/", headers={"Host": "x"}))
    with pytest.raises(TaskInputError, match="POST"):
        await strict.run(HttpPayload(url="http://example.com/", body={"a": 1}))


def test_refusal_reasons() -> None:
    def reason(ip: str) -> str | None:
        return refusal_reason(ipaddress.ip_address(ip))

    assert reason("93.184.216.34") is None
    assert reason("2606:4700::1111") is None
    assert reason("127.0.0.1") == "loopback"
    assert reason("169.254.169.254") == "a cloud metadata address"
    assert reason("fd00:ec2::254") == "a cloud metadata address"
    assert reason("169.254.1.1") == "link-local"
    assert reason("100.64.0.1") == "not globally routable"
    assert reason("64:ff9b::a00:1") == "private"  # NAT64 of 10.0.0.1
    assert reason("2002:7f00:1::") == "loopback"  # 6to4 of 127.0.0.1
    assert normalize_host("[::1]") == "::1"
    assert normalize_host("Example.COM.") == "example.com"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"url": ""},
        {"url": "http://x/", "method": "DELETE"},
        {"url": "http://x/", "headers": {"Bad Name": "v"}},
        {"url": "http://x/", "headers": {"X-A": "line\r\nInjected: 1"}},
        {"url": "http://x/", "timeout": 0},
        {"url": "http://x/", "extra": 1},
        {"url": "http://x/", "raise_for_status": "yes"},
    ],
)
def test_invalid_payloads_are_refused_at_submit(tmp_path: Path, payload: dict[str, Any]) -> None:
    spec = builtin_registry(BuiltinConfig(data_dir=str(tmp_path))).get("io.http")
    with pytest.raises(InvalidPayload):
        spec.convert(payload)


def test_a_valid_payload_converts(tmp_path: Path) -> None:
    spec = builtin_registry(BuiltinConfig(data_dir=str(tmp_path))).get("io.http")
    payload = spec.convert({"url": "https://example.com/", "method": "POST", "json": [1]})
    assert payload.body == [1]
    assert spec.executor == "async"


async def test_a_failing_host_trips_its_breaker_and_later_runs_are_snoozed(
    task: HttpTask, http_server: str
) -> None:
    closed = "http://127.0.0.1:9/"  # the discard port: nothing listens there
    for _ in range(task.breakers.get("127.0.0.1").config.consecutive_failures):
        with pytest.raises(HttpRequestFailed):
            await task.run(HttpPayload(url=closed))
    with pytest.raises(Snooze) as snoozed:
        await task.run(HttpPayload(url=f"{http_server}/json"))  # same host: not even tried
    assert snoozed.value.delay > 0
    assert "127.0.0.1" in str(snoozed.value)


async def test_a_5xx_answer_fails_and_counts_against_the_host(
    task: HttpTask, http_server: str
) -> None:
    for _ in range(task.breakers.get("127.0.0.1").config.consecutive_failures):
        with pytest.raises(HttpRequestFailed) as info:  # like a connection error: retried
            await task.run(HttpPayload(url=f"{http_server}/status?code=503"))
        assert "HTTP 503" in str(info.value)
        assert not refused_input(info.value)
    with pytest.raises(Snooze):
        await task.run(HttpPayload(url=f"{http_server}/json"))


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 422])
async def test_a_4xx_answer_fails_without_retry(
    task: HttpTask, http_server: str, code: int
) -> None:
    with pytest.raises(TaskInputError) as info:
        await task.run(HttpPayload(url=f"{http_server}/status?code={code}"))
    assert f"HTTP {code}" in str(info.value) and "127.0.0.1" in str(info.value)
    assert refused_input(info.value)


async def test_a_failure_status_names_the_url_without_its_query(
    task: HttpTask, http_server: str
) -> None:
    secret = "hunter2"
    with pytest.raises(TaskInputError) as info:
        await task.run(HttpPayload(url=f"{http_server}/status?code=403&token={secret}"))
    assert str(info.value) == f"127.0.0.1: HTTP 403 Forbidden from {http_server}/status"


@pytest.mark.parametrize("code", [408, 429])
async def test_try_later_answers_are_retried_without_tripping_the_breaker(
    task: HttpTask, http_server: str, code: int
) -> None:
    for _ in range(task.breakers.get("127.0.0.1").config.consecutive_failures + 1):
        with pytest.raises(HttpRequestFailed) as info:
            await task.run(HttpPayload(url=f"{http_server}/status?code={code}"))
        assert f"HTTP {code}" in str(info.value)
        assert not refused_input(info.value)
    assert (await task.run(HttpPayload(url=f"{http_server}/json")))["status"] == 200


async def test_raise_for_status_false_returns_every_answer(
    task: HttpTask, http_server: str
) -> None:
    for code, ok in ((200, True), (302, True), (404, False), (503, False)):
        url = f"{http_server}/status?code={code}"
        result = await task.run(HttpPayload(url=url, raise_for_status=False))
        assert (result["status"], result["ok"]) == (code, ok)
    assert (await task.run(HttpPayload(url=f"{http_server}/json")))["ok"] is True


@pytest.mark.parametrize(("code", "runs"), [(503, 2), (404, 1)])
async def test_an_error_status_ends_the_task_as_a_user_expects(
    tmp_path: Path, http_server: str, code: int, runs: int
) -> None:
    """Through a worker: a 5xx is retried until attempts run out, a 404 is dead at once; an
    answer accepted with raise_for_status false is a success."""
    app = memory_app(
        data_dir=str(tmp_path), http_allow_private=True, retry_base=0.01, builtins=True
    )
    url = f"{http_server}/status?code={code}"
    try:
        async with running_worker(app):
            failing = await app.submit("io.http", {"url": url}, max_attempts=2)
            accepted = await app.submit(
                "io.http", {"url": url, "raise_for_status": False}, max_attempts=2
            )
            failed = await app.result(failing, timeout=60)
            result = await app.result(accepted, timeout=60)
        record = await app.get(failing)
    finally:
        await app.close()
    assert record.state is TaskState.DEAD
    assert [line.attempt for line in record.history] == list(range(1, runs + 1))
    assert failed.status is ResultStatus.FAILURE and f"HTTP {code}" in (failed.error or "")
    assert result.status is ResultStatus.SUCCESS
    assert result.data is not None and result.data["status"] == code


async def test_failures_against_one_host_do_not_snooze_requests_to_another(
    tmp_path: Path, http_server: str
) -> None:
    """io.http keeps a breaker per host: five failures against one bad host open that host's
    breaker only, never the io.http type's, so a request to another host runs at once."""
    app = memory_app(data_dir=str(tmp_path), http_allow_private=True, builtins=True)
    bad = "http://127.0.0.2:9/"  # a loopback address where nothing listens
    try:
        async with running_worker(app, workers=1) as worker:
            failing = [await app.submit("io.http", {"url": bad}, max_attempts=1) for _ in range(5)]
            for task_id in failing:
                assert (await app.result(task_id, timeout=60)).status is ResultStatus.FAILURE
            type_breaker = worker.breakers.peek("io.http")
            assert type_breaker is None or type_breaker.is_closed
            good = await app.submit("io.http", {"url": f"{http_server}/json"})
            assert (await app.result(good, timeout=60)).status is ResultStatus.SUCCESS
        http = app.registry.get("io.http").fn.__self__
        host_breaker = http.breakers.peek("127.0.0.2")
        assert host_breaker is not None and not host_breaker.is_closed
        record = await app.get(good)
    finally:
        await app.close()
    assert [line.attempt for line in record.history] == [1]
