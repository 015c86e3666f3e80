"""What docs/API.md says of every endpoint, checked against a real server: the content types
of the answers and which paths need no token. The lists are read from the doc itself."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

import httpx

from tests.api.conftest import Server

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
JSON = "application/json"


def served_gets() -> list[str]:
    """The path of every GET route build_api mounts, parameters filled with a missing id."""
    from taskengine.api import ApiContext, build_api
    from taskengine.app import App

    paths = []
    for route in build_api(ApiContext(app=App("memory://"))).routes:
        if "GET" in (getattr(route, "methods", None) or ()):
            paths.append(re.sub(r"\{[^}]+\}", "01NOTATASK", route.path))
    return paths


def documented_types() -> dict[str, str]:
    """The table that follows "Every answer is `application/json`": path -> media type."""
    text = API_MD.read_text()
    found = re.search(r"Every answer is\s+`application/json`", text)
    assert found is not None, "API.md no longer says what answers are JSON"
    start = found.end()
    rows: dict[str, str] = {}
    for line in text[start:].splitlines():
        if not line.strip().startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        route = re.fullmatch(r"`GET (/\S*)`", cells[0])
        if route:
            media = re.match(r"`([^`;]+)", cells[1])
            rows[route.group(1)] = media.group(1) if media else cells[1]
    return rows


def open_paths() -> list[str]:
    """The paths of the bullet that says which need no token."""
    text = API_MD.read_text()
    end = text.index("need no token")
    bullet = text[text.rindex("\n- ", 0, end) : end]
    return re.findall(r"`(/[^`]*)`", bullet)


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def fetch(client: httpx.Client, path: str) -> httpx.Response:
    with client.stream("GET", path) as response:  # /api/events never ends: headers only
        return response


def test_every_answer_has_the_content_type_the_doc_gives(server: Server) -> None:
    documented = documented_types()
    assert documented, "API.md lists no exception to application/json"
    served = served_gets()
    assert set(documented) - {"/static/…"} <= set(served)  # no stale row
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        for path in served:
            response = fetch(client, path)
            expected = documented.get(path, JSON) if response.status_code < 400 else JSON
            assert media_type(response) == expected, (path, response.status_code)
        for name in ("style.css", "app.js", "docs.css", "vendor/uPlot.min.css"):
            response = fetch(client, f"/static/{name}")
            assert response.status_code == 200
            assert media_type(response) == mimetypes.guess_type(name)[0], name
        assert documented["/static/…"] == "the file's type"
        missing = fetch(client, "/static/no-such-file.css")
        assert (missing.status_code, media_type(missing)) == (404, JSON)


def test_the_paths_the_doc_calls_open_need_no_token_and_no_others(auth_server: Server) -> None:
    open_ = open_paths()
    assert "/healthz" in open_
    with httpx.Client(base_url=auth_server.url, timeout=30.0) as client:
        for path in served_gets():
            status = fetch(client, path).status_code
            if path in open_:
                assert status == 200, path
            else:
                assert status == 401, path
