"""uvicorn's httptools protocol with bounds on what one client can make the server hold.

uvicorn bounds none of these with httptools (docs/adr/0012): a request head of any size was
buffered (a 1 MB header got a 200), a connection that never finished its request stayed open,
and every connection was accepted. Here:

- the head (request line and headers) may hold `max_header_bytes` and `max_headers`: past
  either, a 431 `header_too_large` and the connection closed. The head is fed to the parser in
  slices that never take it past the cap, so no more than the cap is ever buffered;
- a request must arrive whole (head and body) within `read_timeout` of its first byte, or of the
  connection being opened: a half-sent head gets a 408 `request_timeout`, a silent connection
  or a half-sent body is closed;
- at most `max_connections` are open: the next is answered 503 `too_many_connections` and closed
  before anything of it is read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from taskengine import logging as fields
from taskengine.api.middleware import SECURITY_HEADERS
from taskengine.model.serializer import to_json
from taskengine.settings import Settings

log = logging.getLogger("taskengine.api")


@dataclass(frozen=True)
class HttpLimits:
    """What one client may make the server hold."""

    max_header_bytes: int
    max_headers: int
    read_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        """The api_max_header_bytes, api_max_headers, api_read_timeout, api_max_connections."""
        return cls(
            max_header_bytes=settings.api_max_header_bytes,
            max_headers=settings.api_max_headers,
            read_timeout=settings.api_read_timeout,
            max_connections=settings.api_max_connections,
        )


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn.Config(http=...): it builds one per connection."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class _TooManyHeaders(Exception):
    """Raised in a parser callback: httptools stops and uvicorn calls send_400_response."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with the limits above; `limits` is set by `guarded_protocol`."""

    limits: ClassVar[HttpLimits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._reading_head = True  # between requests or inside a head: next bytes are head bytes
        self._head_bytes = 0  # bytes of the current head fed so far
        self._completed = 0  # requests read whole on this connection
        self._since: float | None = None  # loop time the request being read began; None: none
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None  # a callback's, answered after it

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                503,
                "too_many_connections",
                f"the server holds {self.limits.max_connections} connections already; retry",
                retry_after=True,
            )
            return
        self._start_clock()  # a connection that never sends is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self.transport.is_closing():
            if not self._reading_head:
                super().data_received(data)
                return
            if self._since is None:  # the first bytes of a request on a kept-alive connection
                self._start_clock()
            room = self.limits.max_header_bytes - self._head_bytes
            if len(data) > room:
                piece, data = data[: room + 1], data[room + 1 :]
            else:
                piece, data = data, b""
            completed = self._completed
            super().data_received(piece)
            if self.transport.is_closing():
                return
            # Still in the head it was in when the piece began: the whole piece was head. (A
            # head that began inside the piece, after another request, counts from the next.)
            if self._reading_head and self._completed == completed:
                self._head_bytes += len(piece)
                if self._head_bytes > self.limits.max_header_bytes:
                    self._refuse(*self._head_refusal())
                    return

    # parser callbacks (run inside super().data_received)

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.limits.max_headers:  # before any of it reaches the app
            self._refusal = self._head_refusal()
            raise _TooManyHeaders
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0
        self._completed += 1
        self._since = None

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error: ours when a callback refused the head."""
        if self._refusal is not None:
            self._refuse(*self._refusal)
        else:
            self._refuse(400, "invalid_request", "the request is not valid HTTP/1.1")

    # the read timeout: one timer per connection, moved on only when it fires (cheap per request)

    def _start_clock(self) -> None:
        self._since = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(self.limits.read_timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._since is None or self.transport.is_closing():
            return  # no request being read: the keep-alive timeout watches an idle connection
        left = self._since + self.limits.read_timeout - self.loop.time()
        if left > 0:  # the request being read began after the timer was set
            self._timer = self.loop.call_later(left, self._on_timer)
        elif self._reading_head and self._head_bytes > 0:
            self._refuse(
                408,
                "request_timeout",
                f"the request did not arrive within {self.limits.read_timeout:g} s",
            )
        else:  # nothing sent (a silent connection), or a body cut short: just close
            self._log_refusal("request_timeout")
            self.transport.close()

    def _head_refusal(self) -> tuple[int, str, str]:
        return (
            431,
            "header_too_large",
            f"the request head is limited to {self.limits.max_header_bytes} bytes "
            f"and {self.limits.max_headers} headers",
        )

    def _refuse(self, status: int, code: str, message: str, *, retry_after: bool = False) -> None:
        """Answer `status` with the API's JSON error and close (nothing more is read)."""
        self._log_refusal(code)
        body = to_json({"error": {"code": code, "message": message}})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ]
        if retry_after:
            headers.append((b"retry-after", b"1"))
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        lines += [name + b": " + value for name, value in headers]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.transport.close()

    def _log_refusal(self, code: str) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        log.info("request refused", extra={fields.ERROR: code, "client": client})
