"""Property-based fuzzing of every operation in /openapi.json with schemathesis: never a 5xx.

The schema is loaded from the running server (SQLite broker, no workers: generated tasks are
stored but never run, so no CPU burn and no outbound HTTP). Each operation gets positive and
negative cases, MAX_EXAMPLES of them, checked with schemathesis's `not_a_server_error`.

schemathesis's own pytest loader (`schemathesis.pytest.from_fixture`) breaks on pytest 9
(it sets `request.node._nodeid`), so operations are parametrized here and each one drives a
Hypothesis test built from `APIOperation.as_strategy`.

API_FUZZ_EXAMPLES=500 API_FUZZ_RANDOM=1 pytest tests/api/test_fuzz.py  -- a longer, random hunt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from taskengine.api.openapi import openapi_document  # noqa: E402
from tests.api.conftest import Server, running  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "30"))
DERANDOMIZE = os.environ.get("API_FUZZ_RANDOM") != "1"
DOCUMENTED = sorted(
    (method.upper(), path) for path, ops in openapi_document()["paths"].items() for method in ops
)
STREAMS = {("GET", "/api/events")}  # endless: a request never completes, so it is not fuzzed
OPERATIONS = [op for op in DOCUMENTED if op not in STREAMS]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("api-fuzz"), name="fuzz", args=("--no-workers",)) as srv:
        yield srv


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", wait_for_schema=10)


def test_the_server_documents_the_operations_fuzzed_here(fuzz_schema: Any) -> None:
    served = sorted(
        (result.ok().method.upper(), result.ok().path)
        for result in fuzz_schema.get_all_operations()
    )
    assert served == DOCUMENTED


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_operation_answers_a_server_error(
    fuzz_schema: Any, fuzz_server: Server, method: str, path: str
) -> None:
    operation = fuzz_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        response = case.call(base_url=fuzz_server.url, timeout=10)
        case.validate_response(response, checks=[not_a_server_error])
        assert "Traceback" not in response.text

    fuzz()


# -- stored tasks must be readable back: a targeted fuzzer for POST /api/tasks -----------------

VALID = [
    ("cpu.primes", {"limit": 10}),
    ("cpu.fibonacci", {"n": 5}),
    ("time.sleep", {"seconds": 0}),
    ("time.batch", {"items": [1, "a", None, {"k": [1.5]}]}),
    ("io.file", {"op": "read", "path": "x.txt"}),
]
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
PLAUSIBLE = {
    "priority": st.sampled_from(["HIGH", "low", "Normal", 0, 1, 2]),
    "queue": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True),
    "delay": st.floats(0, 1e6),
    "run_at": st.one_of(
        st.floats(0, 2e9),
        st.datetimes(min_value=datetime(1971, 1, 1), timezones=st.just(UTC)).map(
            datetime.isoformat
        ),
    ),
    "timeout": st.floats(0.001, 1e5),
    "max_attempts": st.integers(1, 1000),
    "idempotency_key": st.text(min_size=1, max_size=40),
}
WILD = {
    "priority": st.one_of(st.integers(-(2**40), 2**40), st.text(), numbers),
    "queue": st.text(max_size=140),
    "delay": numbers,
    "run_at": st.one_of(
        numbers,
        st.datetimes().map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat() + "Z"),
        st.text(max_size=40),
    ),
    "timeout": numbers,
    "max_attempts": numbers,
    "idempotency_key": st.text(max_size=300),
}


@st.composite
def submissions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid task with some optional fields: at most one of them wild."""
    type_, payload = draw(st.sampled_from(VALID))
    body: dict[str, Any] = {"type": type_, "payload": payload}
    wild = draw(st.sampled_from([None, *sorted(WILD)]))
    names = draw(st.sets(st.sampled_from(sorted(PLAUSIBLE)))) | ({wild} if wild else set())
    if "run_at" in names and "delay" in names:
        names.discard("delay" if wild != "delay" else "run_at")  # both at once: always 422
    for name in names:
        body[name] = draw(WILD[name] if name == wild else PLAUSIBLE[name])
    return body


def test_every_stored_task_reads_back(fuzz_server: Server) -> None:
    with fuzz_server.client() as client:

        @given(body=st.one_of(submissions(), st.lists(submissions(), min_size=1, max_size=3)))
        @settings(
            max_examples=MAX_EXAMPLES * 5,
            deadline=None,
            derandomize=DERANDOMIZE,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(body: Any) -> None:
            sent = {"tasks": body} if isinstance(body, list) else body
            response = client.post("/api/tasks", json=sent)  # check_response: JSON errors only
            assert response.status_code in (200, 201, 409, 422), response.text
            if response.status_code >= 300:
                return
            located = [t["location"] for t in response.json().get("tasks", [response.json()])]
            for location in located:
                view = client.get(location)
                assert view.status_code == 200, (sent, view.text)
                listed = client.get("/api/tasks", params={"limit": 5})  # newest first: it is here
                assert listed.status_code == 200, (sent, listed.text)
                assert client.delete(location).status_code in (200, 409)

        fuzz()


def test_fuzzing_left_the_server_healthy(fuzz_server: Server) -> None:
    requests = [line for line in fuzz_server.log_lines() if line.get("event") == "request"]
    assert len(requests) > len(OPERATIONS) * 10, len(requests)
    response = httpx.get(f"{fuzz_server.url}/api/tasks", params={"limit": 500}, timeout=10)
    assert response.status_code == 200, response.text[:500]
    assert httpx.get(f"{fuzz_server.url}/readyz", timeout=10).status_code == 200
    assert "Traceback" not in fuzz_server.stdout_path.read_text()
