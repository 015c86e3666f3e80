"""The `io.http` task type: an HTTP request through one shared, SSRF-guarded connection pool.

The guard sits where the socket is opened: the pool's network backend resolves the host, refuses
loopback, private, link-local, multicast, reserved, unspecified and cloud-metadata addresses
(unless configuration allows them), and connects to the very address it vetted. So DNS
rebinding cannot slip past, each redirect hop is vetted when it connects, and TLS still
verifies the certificate of the real host name. httpx is imported only when the first request
runs, keeping it out of the server's import path.

What an answer comes to, by default (`raise_for_status`, as in requests): below 400 a success;
5xx, 408 and 429 a failure worth a retry (HttpStatusFailed; a 5xx also counts against the host's
circuit breaker, like a connection error); any other 4xx a failure a retry cannot fix
(HttpStatusRefused). With `raise_for_status` false every complete answer is a result, with
`ok` saying whether its status is below 400.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from taskengine.builtins.config import BuiltinConfig, TaskInputError, TaskRefused
from taskengine.errors import TaskEngineError, ValidationError
from taskengine.model.serializer import from_json
from taskengine.policy.breaker import BreakerRegistry
from taskengine.policy.retry import Snooze

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")]
HeaderValue = Annotated[str, msgspec.Meta(pattern=r"^[^\r\n\x00]*$", max_length=8192)]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_METADATA = "a cloud metadata address"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SCHEMES = ("http", "https")
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_KEPT_HEADERS = ("content-type", "content-length")
_TEXT_LIMIT = 256 * 1024  # characters of a text body kept in the result
# 4xx answers that say "not now" rather than "never": retried like a 5xx (urllib3 and
# Celery users retry these too), but the host is up, so its breaker is not charged.
RETRY_STATUSES = frozenset({408, 429})


class HttpPayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One request; `json` is the body of a POST, `timeout` is capped by configuration."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
    method: Literal["GET", "POST", "HEAD"] = "GET"
    headers: Annotated[dict[HeaderName, HeaderValue], msgspec.Meta(max_length=64)] = {}
    body: Any = msgspec.field(default=msgspec.UNSET, name="json")
    timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] | None = None
    raise_for_status: bool = True


class HttpRequestFailed(TaskEngineError):
    """The request could not complete (DNS, connect, timeout, protocol); worth a retry.

    `host` names the remote host, for a per-host circuit breaker.
    """

    code = "http_request_failed"

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host


class HttpStatusFailed(HttpRequestFailed):
    """The server answered 5xx, 408 or 429: the request may pass later; worth a retry."""

    code = "http_status_failed"

    def __init__(self, host: str, status: int, message: str) -> None:
        super().__init__(host, message)
        self.status = status


class HttpStatusRefused(TaskInputError):
    """The server answered with a 4xx (not 408 or 429): the same request fails again."""

    code = "http_status_refused"

    def __init__(self, host: str, status: int, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.status = status


def status_error(host: str, result: dict[str, Any]) -> HttpRequestFailed | TaskInputError | None:
    """The failure an answer comes to under `raise_for_status` (None below 400)."""
    status: int = result["status"]
    if status < 400:
        return None
    try:
        phrase = f" {HTTPStatus(status).phrase}"
    except ValueError:
        phrase = ""
    # Like requests' HTTPError, but neither the query string nor the body: they may hold
    # secrets, and this message goes to the attempt history and the logs.
    parts = urlsplit(result["url"])
    netloc = parts.netloc.rpartition("@")[2]  # no user:password either
    url = parts._replace(netloc=netloc, query="", fragment="").geturl()
    message = f"HTTP {status}{phrase} from {url}"
    if status >= 500 or status in RETRY_STATUSES:
        return HttpStatusFailed(host, status, message)
    return HttpStatusRefused(host, status, message)


def refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be contacted (None when it is a public unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and (reason := refusal_reason(embedded)):
            return reason
    checks = (
        (ip in METADATA_ADDRESSES, _METADATA),
        (ip.is_loopback, "loopback"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    return next((reason for refused, reason in checks if refused), None)


def normalize_host(host: str) -> str:
    """Lower-case, without brackets or a trailing dot; IP literals in canonical form."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve `host` with the loop's getaddrinfo; return its addresses, in order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressGuard:
    """Resolves a host and returns the addresses it may connect to, or raises TaskRefused."""

    def __init__(self, config: BuiltinConfig, resolver: Resolver = system_resolver) -> None:
        self.allow_private = config.http_allow_private
        self.allowed_hosts = frozenset(normalize_host(h) for h in config.http_allowed_hosts)
        self.resolver = resolver

    async def vet(self, host: str, port: int) -> list[str]:
        """Return the vetted addresses of host; refuse if any of them is forbidden."""
        name = normalize_host(host)
        try:
            addresses = [ipaddress.ip_address(name)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(a) for a in await self.resolver(name, port)]
            except OSError as exc:
                raise HttpRequestFailed(name, f"cannot resolve: {exc}") from None
        if not addresses:
            raise HttpRequestFailed(name, "the name has no address")
        if name not in self.allowed_hosts:
            for ip in addresses:
                reason = refusal_reason(ip)
                if reason and (reason == _METADATA or not self.allow_private):
                    raise TaskRefused("ssrf", f"{name}: refusing to connect to {ip}, {reason}")
        return [str(ip) for ip in addresses]


class GuardedBackend:
    """An httpcore network backend that connects only to addresses the guard vetted."""

    def __init__(self, guard: AddressGuard) -> None:
        import httpcore

        self.guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        """Vet `host`, then connect to the first vetted address that answers."""
        import httpcore

        last: Exception = httpcore.ConnectError(f"no address for {host}")
        for ip in await self.guard.vet(host, port):
            try:
                return await self._inner.connect_tcp(
                    ip,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None, **_: Any) -> Any:
        """Refused: tasks never reach local sockets."""
        raise TaskRefused("ssrf", "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the inner backend does."""
        await self._inner.sleep(seconds)


class HttpTask:
    """Runs `io.http` payloads through one lazily created httpx.AsyncClient."""

    def __init__(self, config: BuiltinConfig, resolver: Resolver = system_resolver) -> None:
        self.config = config
        self.guard = AddressGuard(config, resolver)
        self.breakers = BreakerRegistry()  # per host: a failing host is snoozed, not hammered
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """Return the shared client, creating it (and its guarded pool) on first use."""
        if self._client is None:
            import httpcore
            import httpx

            limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
            transport = httpx.AsyncHTTPTransport(trust_env=False, limits=limits)
            # The one reach into httpx internals: its pool, rebuilt on the guarded backend.
            transport._pool = httpcore.AsyncConnectionPool(
                ssl_context=httpx.create_ssl_context(trust_env=False),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=GuardedBackend(self.guard),  # type: ignore[arg-type]
            )
            self._client = httpx.AsyncClient(
                transport=transport,
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(self.config.http_timeout),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the shared client and its connections; a later request opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def run(self, payload: HttpPayload) -> dict[str, Any]:
        """Send the request, following up to `http_max_redirects` vetted redirects; an error
        status raises (see the module docstring) unless `raise_for_status` is false."""

        limit = min(payload.timeout or self.config.http_timeout, self.config.http_timeout)
        request = self._first_request(payload, limit)
        host = request.url.host
        loop = asyncio.get_running_loop()
        started = loop.time()
        breaker = self.breakers.get(host)
        if not breaker.allow(started):
            wait = max(breaker.retry_after(started), 0.5)
            raise Snooze(wait, f"{host}: circuit open after repeated failures")
        try:
            result = await self._send(request, payload, limit, started)
        except HttpRequestFailed:
            breaker.record_failure(loop.time())
            raise
        except BaseException:
            breaker.release(loop.time())
            raise
        if result["status"] >= 500:
            breaker.record_failure(loop.time())
        else:
            breaker.record_success(loop.time())
        if payload.raise_for_status and (error := status_error(host, result)) is not None:
            raise error
        return result

    async def _send(
        self, request: httpx.Request, payload: HttpPayload, limit: float, started: float
    ) -> dict[str, Any]:
        import httpx

        loop = asyncio.get_running_loop()
        host = request.url.host
        try:
            async with asyncio.timeout(limit):
                for _ in range(self.config.http_max_redirects + 1):
                    host = request.url.host
                    response = await self.client().send(request, stream=True)
                    try:
                        if response.next_request is None:
                            result = await self._result(response, payload.method == "HEAD")
                            result["elapsed"] = round(loop.time() - started, 6)
                            return result
                    finally:
                        await response.aclose()
                    request = self._checked(response.next_request)
        except TimeoutError:
            raise HttpRequestFailed(host, f"no complete response within {limit:g} s") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise TaskInputError(f"{host}: {exc}") from None
        except httpx.HTTPError as exc:
            raise HttpRequestFailed(host, f"{type(exc).__name__}: {exc}") from None
        raise TaskInputError(f"{host}: more than {self.config.http_max_redirects} redirects")

    def _first_request(self, payload: HttpPayload, limit: float) -> httpx.Request:
        import httpx

        for name in payload.headers:
            if name.lower() in _RESERVED_HEADERS:
                raise TaskInputError(f"header {name!r} is set by the engine")
        has_body = payload.body is not msgspec.UNSET
        if has_body and payload.method != "POST":
            raise TaskInputError("a json body needs method POST")
        try:
            url = httpx.URL(payload.url)
            if url.scheme not in _SCHEMES:  # before build_request, which drops "file:" hosts
                raise TaskRefused("scheme", f"scheme {url.scheme!r} is not http or https")
            request = self.client().build_request(
                payload.method,
                url,
                headers=payload.headers,
                json=payload.body if has_body else None,
                timeout=limit,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            raise TaskInputError(f"invalid url {payload.url!r}: {exc}") from None
        return self._checked(request)

    @staticmethod
    def _checked(request: httpx.Request) -> httpx.Request:
        """Only http and https, with a host; the address check happens at connect."""
        if request.url.scheme not in _SCHEMES:
            raise TaskRefused("scheme", f"scheme {request.url.scheme!r} is not http or https")
        if not request.url.host:
            raise TaskInputError(f"url {request.url} has no host")
        return request

    async def _result(self, response: httpx.Response, head: bool) -> dict[str, Any]:
        cap = self.config.http_max_bytes
        host = response.request.url.host
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise TaskRefused("too_large", f"{host}: response of {declared} bytes over {cap}")
        data = bytearray()
        if not head:
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > cap:
                    raise TaskRefused("too_large", f"{host}: response over {cap} bytes")
        headers = {k: response.headers[k] for k in _KEPT_HEADERS if k in response.headers}
        body, truncated = _body(bytes(data), response, head)
        return {
            "status": response.status_code,
            "ok": response.status_code < 400,
            "headers": headers,
            "body": body,
            "truncated": truncated,
            "url": str(response.request.url),
        }


def _body(data: bytes, response: httpx.Response, head: bool) -> tuple[Any, bool]:
    if head:
        return None, False
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return from_json(data), False
        except ValidationError:
            pass  # served as JSON but is not: return it as text
    try:
        text = data.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = data.decode("utf-8", errors="replace")
    return text[:_TEXT_LIMIT], len(text) > _TEXT_LIMIT
