"""The web dashboard in a real browser (Debian's chromium through Playwright) on `taskengine serve`.

One server (SQLite, five workers) serves the module; the token test starts its own. Each test
gets a fresh browser context at 1280x800 that records console errors, page errors and CSP
violations. Waits are bounded polls in the page (`wait_for_function`, `expect`), never sleeps.

Outside CI (CI != "true") the module is skipped when Playwright or /usr/bin/chromium is
missing; in CI both must be there (`.ci/run` installs chromium).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import ADMIN_TOKEN, Server, running, submit, wait_task

IN_CI = os.environ.get("CI") == "true"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
LIVE_TIMEOUT = 10_000  # ms: the page connects and shows its first tick
CHANGE_TIMEOUT = 3_000  # ms: load shows in counters, heatmap and charts within this

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Page,
        Route,
        ViewportSize,
        expect,
        sync_playwright,
    )
except ImportError:
    if IN_CI:
        raise
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

if not CHROMIUM.exists() and not IN_CI:
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}

# Records what the page's CSP refused; an init script is not itself subject to the page's CSP.
RECORD_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${where}`);
});
"""


@dataclass
class Dashboard:
    """A page on the dashboard plus everything it complained about."""

    page: Page
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def open(self) -> Dashboard:
        response = self.page.goto(self.url)
        assert response is not None and response.status == 200
        return self

    def wait_live(self) -> None:
        """Connected, and the first tick has filled the counters and the heatmap."""
        expect(self.page.locator("#conn")).to_have_attribute(
            "data-state", "live", timeout=LIVE_TIMEOUT
        )
        self.page.wait_for_function(
            """() => document.querySelector('.counter[data-key=submitted] .value')
                           .textContent !== '—'
                    && Number(document.getElementById('heatmap').dataset.rows) > 0""",
            timeout=LIVE_TIMEOUT,
        )

    def counter(self, key: str) -> int:
        text = self.page.locator(f".counter[data-key={key}] .value").inner_text()
        return int(text.replace(",", ""))

    def csp_violations(self) -> list[str]:
        violations: list[str] = self.page.evaluate("() => window.__cspViolations ?? []")
        return violations

    def assert_clean(self) -> None:
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.csp_violations() == []


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; CI must install it (.ci/run)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SQLite broker and five workers; the dashboard is served at `/`."""
    with running(tmp_path_factory.mktemp("dashboard"), name="dash") as srv:
        yield srv


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def new_dashboard(browser: Browser, url: str) -> tuple[BrowserContext, Dashboard]:
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RECORD_CSP)
    page = context.new_page()
    board = Dashboard(page, url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            board.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: board.page_errors.append(str(exc)))
    return context, board


@pytest.fixture
def dashboard(browser: Browser, server: Server) -> Iterator[Dashboard]:
    context, board = new_dashboard(browser, server.url)
    try:
        yield board
    finally:
        context.close()


def batch(client: httpx.Client, tasks: list[dict[str, Any]]) -> list[str]:
    response = client.post("/api/tasks", json={"tasks": tasks})
    assert response.status_code == 201, response.text
    return [item["id"] for item in response.json()["tasks"]]


# -- the tests ------------------------------------------------------------------------------


def test_page_loads_without_errors_or_csp_violations(dashboard: Dashboard, server: Server) -> None:
    page = dashboard.page
    response = page.goto(server.url)
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    html = response.text()
    # nothing the CSP would refuse: no inline script, style block or style attribute
    assert "<style" not in html and " style=" not in html
    assert all("src=" in tag for tag in html.split("<script")[1:])

    dashboard.wait_live()
    expect(page.locator("#workers-table tbody tr:not(.group)")).to_have_count(5)
    expect(page.locator("#workers-table tbody tr.group")).to_have_count(1)  # one instance
    expect(page.locator("#recent-table tbody tr").first).to_be_visible()
    page.wait_for_function(  # the charts have history points
        "() => Number(document.getElementById('chart-throughput').dataset.points) > 0"
    )
    dashboard.assert_clean()


def test_the_limits_panel_shows_a_limit_set_at_run_time(
    dashboard: Dashboard, api: httpx.Client, server: Server
) -> None:
    response = api.put("/api/limits/queue/dash-limited", json={"max_concurrency": 7})
    assert response.status_code == 200, response.text
    page = dashboard.page
    page.goto(server.url)
    row = page.locator("#limits-table tbody tr", has_text="dash-limited")
    expect(row).to_contain_text("7")
    assert api.put("/api/limits/queue/dash-limited", json={}).status_code == 200
    dashboard.assert_clean()


def test_sse_parser_handles_the_framing(dashboard: Dashboard) -> None:
    page = dashboard.open().page
    events = page.evaluate(
        r"""async () => {
            const { SseParser } = await import('/static/sse.js');
            const parser = new SseParser();
            const chunks = [
                ': ping\r\n\r', '\nevent: history\r\ndata: {"points"', ': []}\r\n\r\n',
                'event:tick\ndata: 1\ndata:2\nid: 7\nretry: 10\nbogus\n\n',
                'event: nothing\n\n', 'data: only\r\r', 'data: split',
            ];
            return chunks.flatMap((chunk) => parser.push(chunk));
        }"""
    )
    assert events == [
        {"type": "history", "data": '{"points": []}'},
        {"type": "tick", "data": "1\n2"},
        {"type": "message", "data": "only"},
    ]


def test_stream_reconnects_after_a_drop(dashboard: Dashboard) -> None:
    page = dashboard.page
    opened: list[str] = []

    def first_one_drops(route: Route) -> None:
        opened.append(route.request.url)
        if len(opened) == 1:  # a stream that ends right after its history: a dropped connection
            route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream"},
                body='event: history\ndata: {"points": []}\n\n',
            )
        else:
            route.continue_()

    page.route("**/api/events", first_one_drops)
    dashboard.open()
    dashboard.wait_live()
    assert len(opened) >= 2
    dashboard.assert_clean()


def test_counters_heatmap_and_charts_follow_load(dashboard: Dashboard, api: httpx.Client) -> None:
    page = dashboard.open().page
    dashboard.wait_live()
    before = page.evaluate(
        """() => ({
            heatmap: document.getElementById('heatmap').toDataURL(),
            busy: Number(document.getElementById('heatmap').dataset.busyTotal),
            chart: document.querySelector('#chart-throughput canvas').toDataURL(),
            ok: Number(document.getElementById('chart-throughput').dataset.sumOk),
        })"""
    )
    submitted = dashboard.counter("submitted")
    tasks = [{"type": "time.sleep", "payload": {"seconds": 0.01}} for _ in range(150)]
    tasks += [{"type": "cpu.fibonacci", "payload": {"n": 2000 + i}} for i in range(50)]
    batch(api, tasks)

    page.wait_for_function(
        """([before, submitted]) => {
            const heatmap = document.getElementById('heatmap');
            const chartBox = document.getElementById('chart-throughput');
            const counter = document.querySelector('.counter[data-key=submitted] .value');
            return Number(counter.textContent.replaceAll(',', '')) >= submitted + 200
                && Number(heatmap.dataset.busyTotal) > before.busy
                && heatmap.toDataURL() !== before.heatmap
                && Number(chartBox.dataset.sumOk) > before.ok
                && chartBox.querySelector('canvas').toDataURL() !== before.chart;
        }""",
        arg=[before, submitted],
        polling=100,
        timeout=CHANGE_TIMEOUT,
    )
    dashboard.assert_clean()


def test_replaying_a_dead_letter_from_the_page(
    dashboard: Dashboard, api: httpx.Client, server: Server
) -> None:
    # io.file refuses a missing file without retrying: dead after one attempt. Creating the
    # file afterwards makes the replay succeed, so the task leaves the list for good.
    task_id = submit(api, {"type": "io.file", "payload": {"op": "read", "path": "replay.txt"}})
    wait_task(api, task_id, lambda view: view["state"] == "dead")
    (server.workdir / "data" / "replay.txt").write_text("back from the dead")

    page = dashboard.open().page
    row = page.locator(f"#dlq-table tbody tr[data-id='{task_id}']")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    row.get_by_role("button", name="Replay").click()
    expect(row).to_have_count(0)

    view = wait_task(api, task_id, lambda view: view["state"] == "succeeded")
    assert view["result"]["data"]["content"] == "back from the dead"
    assert [h["status"] for h in view["history"]] == ["FAILURE", "SUCCESS"]
    dead = api.get("/api/dead-letters", params={"limit": 500}).json()["items"]
    assert task_id not in {item["id"] for item in dead}
    # the page's list, read again after the replay finished, does not bring it back
    refreshed = page.locator(f"#recent-table tbody tr[data-id='{task_id}'][data-state=succeeded]")
    expect(refreshed).to_be_visible(timeout=LIVE_TIMEOUT)
    expect(row).to_have_count(0)
    dashboard.assert_clean()


def test_submitting_and_cancelling_a_queued_task_from_the_page(
    dashboard: Dashboard, api: httpx.Client
) -> None:
    page = dashboard.open().page
    page.fill("#submit-type", "time.sleep")
    page.fill("#submit-payload", '{"seconds": 1}')
    page.select_option("#submit-priority", "LOW")
    page.fill("#submit-delay", "3600")
    page.click("#submit-form button[type=submit]")
    link = page.locator("#submit-result button")
    expect(link).to_be_visible()
    task_id = link.inner_text()
    assert api.get(f"/api/tasks/{task_id}").json()["priority"] == "LOW"

    row = page.locator(f"#recent-table tbody tr[data-id='{task_id}']")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    row.click()
    dialog = page.locator("#task-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#detail-state")).to_have_text("queued")
    expect(dialog.locator("#detail-payload")).to_contain_text('"seconds": 1')
    dialog.locator("#detail-cancel").click()
    expect(dialog.locator("#detail-state")).to_have_text("cancelled")
    expect(dialog.locator("#detail-cancel")).to_be_hidden()
    expect(dialog.locator("#detail-message")).to_have_text("Cancelled.")
    assert api.get(f"/api/tasks/{task_id}").json()["state"] == "cancelled"
    dialog.locator("#detail-close").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f"#recent-table tbody tr[data-id='{task_id}']")).to_have_attribute(
        "data-state", "cancelled", timeout=LIVE_TIMEOUT
    )
    dashboard.assert_clean()


def test_the_task_dialog_draws_the_workflow_and_cancels_it_whole(
    dashboard: Dashboard, api: httpx.Client
) -> None:
    step = {"type": "time.sleep", "payload": {"seconds": 0}, "delay": 3600}
    later = {"type": "time.sleep", "payload": {"seconds": 0}}
    nodes = [
        {"name": "a", "task": step},
        {"name": "b", "task": step},
        {"name": "join", "task": later, "after": ["a", "b"]},
    ]
    created = api.post("/api/workflows", json={"nodes": nodes}).json()
    join = created["tasks"]["join"]

    page = dashboard.open().page
    row = page.locator(f"#recent-table tbody tr[data-id='{join}']")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    row.click()
    dialog = page.locator("#task-dialog")
    expect(dialog.locator("#detail-state")).to_have_text("blocked")
    expect(dialog.locator("#detail-workflow")).to_be_visible()
    expect(dialog.locator("#wf-state")).to_have_text("running")
    expect(dialog.locator("#wf-graph .wf-node")).to_have_count(3)
    expect(dialog.locator("#wf-graph .wf-edges line")).to_have_count(2)
    expect(dialog.locator("#wf-graph .wf-node.current")).to_have_count(1)
    expect(dialog.locator("#wf-graph .wf-node.state-blocked")).to_have_count(1)

    dialog.locator("#wf-cancel").click()
    expect(dialog.locator("#wf-state")).to_have_text("cancelled")
    expect(dialog.locator("#wf-graph .wf-node.state-cancelled")).to_have_count(3)
    expect(dialog.locator("#wf-replay")).to_be_visible()
    view = api.get(f"/api/workflows/{created['id']}").json()
    assert view["counts"] == {"cancelled": 3}
    dialog.locator("#detail-close").click()
    dashboard.assert_clean()


def test_progress_bar_in_the_list_and_the_dialog(dashboard: Dashboard, api: httpx.Client) -> None:
    payload = {"items": list(range(200)), "chunk_size": 1, "delay_per_chunk": 0.1}
    task_id = submit(api, {"type": "time.batch", "payload": payload})

    page = dashboard.open().page
    row = page.locator(f"#recent-table tbody tr[data-id='{task_id}'][data-state=running]")
    expect(row).to_be_visible(timeout=LIVE_TIMEOUT)
    bar = row.locator(".progress-cell progress")
    expect(bar).to_be_visible(timeout=LIVE_TIMEOUT)
    expect(row.locator(".progress-cell")).to_contain_text("/200", timeout=LIVE_TIMEOUT)
    first = float(bar.get_attribute("value") or 0)
    # the live feed moves the bar forward between list reads
    page.wait_for_function(
        """([id, first]) => {
             const bar = document.querySelector(
               `#recent-table tr[data-id="${id}"] .progress-cell progress`);
             return bar !== null && bar.value > first;
           }""",
        arg=[task_id, first],
        timeout=LIVE_TIMEOUT,
    )

    row.click()
    dialog = page.locator("#task-dialog")
    expect(dialog.locator("#detail-progress")).to_be_visible()
    expect(dialog.locator("#detail-progress-text")).to_contain_text("/200")
    expect(dialog.locator("#detail-progress-text")).to_contain_text("chunk ")
    dialog.locator("#detail-cancel").click()
    expect(dialog.locator("#detail-state")).to_have_text("cancelled", timeout=LIVE_TIMEOUT)
    expect(dialog.locator("#detail-progress")).to_be_visible()  # the last report stays
    dialog.locator("#detail-close").click()
    dashboard.assert_clean()


def test_a_failed_attempts_traceback_in_the_dialog(dashboard: Dashboard, api: httpx.Client) -> None:
    task_id = submit(api, {"type": "io.file", "payload": {"op": "read", "path": "nope.txt"}})
    wait_task(api, task_id, lambda view: view["state"] == "dead")

    page = dashboard.open().page
    link = page.locator(f"#dlq-table tbody tr[data-id='{task_id}'] button.link")
    expect(link).to_be_visible(timeout=LIVE_TIMEOUT)
    link.click()
    dialog = page.locator("#task-dialog")
    expect(dialog.locator("#detail-state")).to_have_text("dead")
    summary = dialog.locator("#detail-history .traceback-row summary")
    expect(summary).to_have_text("traceback of attempt 1")
    trace = dialog.locator("#detail-history pre.traceback")
    expect(trace).to_be_hidden()
    summary.click()
    expect(trace).to_be_visible()
    expect(trace).to_contain_text("Traceback (most recent call last):")
    expect(trace).to_contain_text("TaskInputError: nope.txt does not exist")
    dialog.locator("#detail-close").click()
    dashboard.assert_clean()


def test_submit_form_shows_the_servers_refusal(dashboard: Dashboard) -> None:
    page = dashboard.open().page
    page.fill("#submit-type", "cpu.fibonacci")
    page.fill("#submit-payload", '{"n": "ten"}')
    page.click("#submit-form button[type=submit]")
    result = page.locator("#submit-result")
    expect(result).to_have_class("result error")
    expect(result).to_contain_text("invalid_payload: invalid payload for cpu.fibonacci")

    page.fill("#submit-payload", "{not json")
    page.click("#submit-form button[type=submit]")
    expect(result).to_contain_text("the payload is not JSON")
    # the 422 is the only console line Chromium writes ("Failed to load resource")
    assert all("422" in line for line in dashboard.console_errors), dashboard.console_errors
    assert dashboard.page_errors == []
    assert dashboard.csp_violations() == []


class _OtherSite(BaseHTTPRequestHandler):
    """A page on another origin (another port) that tries to submit a task."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>somewhere else</title><p>hello</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def other_site() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _OtherSite)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_cross_site_post_is_refused(
    dashboard: Dashboard, api: httpx.Client, server: Server
) -> None:
    marker = {"type": "time.batch", "payload": {"items": ["cross-site"]}}
    with other_site() as url:
        page = dashboard.page
        page.goto(url)
        # a form-like POST (no-cors, text/plain) is sent without a preflight: the server must
        # refuse it itself; a JSON POST needs a preflight, which the API does not grant
        page.evaluate(
            """async ([target, body]) => {
                await fetch(target, {method: 'POST', mode: 'no-cors', body: JSON.stringify(body),
                                     headers: {'Content-Type': 'text/plain'}});
                await fetch(target, {method: 'POST', mode: 'cors', body: JSON.stringify(body),
                                     headers: {'Content-Type': 'application/json'}})
                    .catch(() => null);
            }""",
            [f"{server.url}/api/tasks", marker],
        )
    created = api.get("/api/tasks", params={"type": "time.batch"}).json()["items"]
    assert [t for t in created if t["payload"] == marker["payload"]] == []
    refused = [
        line
        for line in server.log_lines()
        if line.get("path") == "/api/tasks" and line.get("method") == "POST"
    ]
    assert any(line.get("status") == 403 for line in refused), refused

    direct = api.post(
        "/api/tasks",
        json=marker,
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert direct.status_code == 403
    assert direct.json()["error"]["code"] == "cross_site_request"
    created = api.get("/api/tasks", params={"type": "time.batch"}).json()["items"]
    assert [t for t in created if t["payload"] == marker["payload"]] == []


def test_page_asks_for_the_token_and_works_once_it_is_given(
    browser: Browser, tmp_path: Path
) -> None:
    env = {"TASKENGINE_API_TOKENS": f"admin:{ADMIN_TOKEN}"}
    with running(tmp_path / "auth", name="auth", env=env) as srv:
        context, board = new_dashboard(browser, srv.url)
        try:
            page = board.open().page
            expect(page.locator("#auth-banner")).to_be_visible(timeout=LIVE_TIMEOUT)
            expect(page.locator("#conn")).to_have_attribute("data-state", "auth")

            page.fill("#token-input", "wrong-token-0123456789abcdef")
            page.click("#token-form button[type=submit]")
            expect(page.locator("#conn-text")).to_have_text("Token refused", timeout=LIVE_TIMEOUT)
            expect(page.locator("#auth-message")).to_contain_text("the token is not valid")

            page.fill("#token-input", ADMIN_TOKEN)
            page.click("#token-form button[type=submit]")
            board.wait_live()
            expect(page.locator("#auth-banner")).to_be_hidden()
            expect(page.locator("#workers-table tbody tr:not(.group)")).to_have_count(5)
            stored = page.evaluate("() => sessionStorage.getItem('taskengine.token')")
            assert stored == ADMIN_TOKEN

            # an admin action from the page carries the token too
            page.fill("#submit-payload", '{"seconds": 0}')
            page.click("#submit-form button[type=submit]")
            expect(page.locator("#submit-result")).to_contain_text("Submitted")
            # only the refused requests were logged, as Chromium does for any 401
            assert all("401" in line for line in board.console_errors), board.console_errors
            assert board.page_errors == []
            assert board.csp_violations() == []
        finally:
            context.close()


def test_docs_page_is_styled_under_the_csp_with_a_favicon(browser: Browser, server: Server) -> None:
    context, board = new_dashboard(browser, f"{server.url}/docs")
    failed: list[str] = []
    board.page.on(
        "response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    try:
        page = board.page
        response = page.goto(board.url)
        assert response is not None and response.status == 200
        assert "style-src 'self'" in response.headers["content-security-policy"]
        html = response.text()
        assert "<style" not in html and " style=" not in html  # nothing the CSP refuses
        expect(page.locator("#ops li").first).to_be_visible()  # docs.js filled the list
        styles = page.evaluate(
            """() => ({
                maxWidth: getComputedStyle(document.body).maxWidth,
                code: getComputedStyle(document.querySelector('#ops code')).backgroundColor,
                icon: document.querySelector('link[rel=icon]').href,
            })"""
        )
        assert styles == {
            "maxWidth": "960px",  # 60rem: the served stylesheet applies
            "code": "rgb(243, 243, 243)",
            "icon": f"{server.url}/favicon.ico",
        }
        icon = page.request.get(f"{server.url}/favicon.ico")
        assert icon.status == 200
        assert icon.headers["content-type"] == "image/x-icon"
        assert icon.body()[:4] == b"\x00\x00\x01\x00"  # an ICO file
        board.assert_clean()
        assert failed == []
    finally:
        context.close()


def test_the_dashboard_names_the_served_favicon(dashboard: Dashboard, server: Server) -> None:
    page = dashboard.open().page
    icon = page.evaluate("() => document.querySelector('link[rel=icon]').href")
    assert icon == f"{server.url}/favicon.ico"


def test_screenshot_under_load(dashboard: Dashboard, api: httpx.Client, tmp_path: Path) -> None:
    page = dashboard.open().page
    dashboard.wait_live()
    priorities = ["HIGH", "NORMAL", "NORMAL", "LOW"]
    tasks: list[dict[str, Any]] = [
        {
            "type": "time.sleep",
            "payload": {"seconds": 0.02 + (i % 7) * 0.03},
            "priority": priorities[i % 4],
            "delay": (i % 5) * 0.5,
        }
        for i in range(300)
    ]
    tasks += [{"type": "cpu.primes", "payload": {"limit": 20_000 + i}} for i in range(40)]
    tasks += [
        {"type": "io.file", "payload": {"op": "read", "path": f"missing-{i}.txt"}} for i in range(3)
    ]
    batch(api, tasks)
    # several seconds of work show in the heatmap and the charts, and the lists caught up
    page.wait_for_function(
        """() => {
            const heatmap = document.getElementById('heatmap');
            const busySeconds = Number(heatmap.dataset.busyColumns);
            const dead = document.querySelectorAll('#dlq-table tbody tr[data-id]').length;
            return busySeconds >= 4 && dead >= 3;
        }""",
        polling=200,
        timeout=15_000,
    )
    path = tmp_path / "dashboard.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)
    dashboard.assert_clean()
