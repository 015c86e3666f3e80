"""Fixtures of the built-in task type tests: a data directory and a loopback HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from taskengine.builtins import BuiltinConfig


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def config(data_dir: Path) -> BuiltinConfig:
    return BuiltinConfig(data_dir=str(data_dir))


class _Handler(BaseHTTPRequestHandler):
    """Routes: /json, /status?code=N, /text, /big, /echo (POST), /redirect?to=URL&code=N, /host."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/json":
            self._send(200, b'{"hello": "world", "n": 1}', "application/json")
        elif url.path == "/status":
            self._send(int(query.get("code", "200")), b"status", "text/plain")
        elif url.path == "/text":
            self._send(200, b"plain text", "text/plain; charset=utf-8")
        elif url.path == "/big":
            self._send(200, b"x" * int(query.get("size", "100000")), "text/plain")
        elif url.path == "/stream":  # no Content-Length: the cap must stop the reading
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"y" * 4096)
            self.close_connection = True
        elif url.path == "/redirect":
            self._send(int(query.get("code", "302")), b"", "text/plain", Location=query["to"])
        elif url.path == "/host":
            self._send(200, (self.headers["Host"] or "").encode(), "text/plain")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"null")
        echo = {"received": body, "header": self.headers.get("X-Test")}
        self._send(201, json.dumps(echo).encode(), "application/json")


@pytest.fixture
def http_server() -> Iterator[str]:
    """A server on 127.0.0.1 (loopback only); yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
