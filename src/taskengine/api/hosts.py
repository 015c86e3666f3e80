"""The Host allow-list: the defence against DNS rebinding (docs/adr/0012).

A page on a name its owner rebinds to 127.0.0.1 reaches the server as same-origin, with its own
name in Host and Origin. So a request is served only when Host is an IP address (an address
cannot be rebound: a browser sends one only to the origin that is that address) or a name on
the list: localhost and its subdomains, the name the server is bound to, and
TASKENGINE_API_ALLOWED_HOSTS. Ports are not compared: rebinding keeps the port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from taskengine.api.errors import ApiError, error_response
from taskengine.errors import ConfigurationError

DEFAULT_ALLOWED = (".localhost",)  # localhost and *.localhost, which resolve to loopback only
_REMEMBERED = 1024  # Host values whose answer is kept: deciding one costs ~10 us
_HOST = re.compile(r"(?P<name>[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_PATTERN = re.compile(r"\*|(\*?\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def host_name(header: str) -> str | None:
    """The host of a Host header value: lower case, no port, no brackets, no final dot.

    None when the value is not a host (a bad port, an unclosed bracket, a space, empty).
    """
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return None
    name = match["name"]
    if name.startswith("["):
        try:
            return str(ipaddress.IPv6Address(name[1:-1]))
        except ValueError:
            return None
    name = name.removesuffix(".")
    return name if _NAME.fullmatch(name) else None


def is_address(host: str) -> bool:
    """True when `host` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AllowedHosts:
    """Which Host values the server answers: any address, and names matching the patterns.

    Patterns: `name` (that name), `.name` (it and its subdomains), `*.name` (subdomains only),
    `*` (every host: for a server behind a proxy that checks Host itself).
    """

    def __init__(self, patterns: Iterable[str] = DEFAULT_ALLOWED) -> None:
        self.patterns = tuple(_checked(p) for p in patterns)
        self._any = "*" in self.patterns
        self._known: dict[str, bool] = {}

    @classmethod
    def for_server(cls, bound: str, listed: Iterable[str] = ()) -> AllowedHosts:
        """The defaults, the name `bound` (when it is a name, not an address), and `listed`."""
        bound_name = host_name(bound)
        extra = [bound_name] if bound_name and not is_address(bound_name) else []
        return cls([*DEFAULT_ALLOWED, *extra, *listed])

    def allows(self, header: str) -> bool:
        """True when the Host header `header` names a host this server answers for."""
        answer = self._known.get(header)
        if answer is None:
            answer = self._decide(header)
            if len(self._known) < _REMEMBERED:  # a flood of made-up hosts is decided each time
                self._known[header] = answer
        return answer

    def _decide(self, header: str) -> bool:
        host = host_name(header)
        if host is None:
            return False
        if self._any or is_address(host):
            return True
        return any(_matches(host, pattern) for pattern in self.patterns)


def _checked(pattern: str) -> str:
    cleaned = pattern.strip().lower().removesuffix(".")
    if not _PATTERN.fullmatch(cleaned):
        raise ConfigurationError(
            f"TASKENGINE_API_ALLOWED_HOSTS: {pattern!r} is not a host name pattern "
            "(name, .name, *.name or *; no port, no scheme; addresses are always allowed)"
        )
    return cleaned


def _matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


class HostCheckMiddleware:
    """Answers 400 `host_not_allowed` to an HTTP request whose Host is not allowed."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allowed.allows(_host_header(scope)):
            error = ApiError(
                400,
                "host_not_allowed",
                "the Host header names a host this server does not answer for "
                "(see TASKENGINE_API_ALLOWED_HOSTS)",
            )
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _host_header(scope: Scope) -> str:
    """The one Host header's value; empty when there is none or more than one."""
    hosts = [value for name, value in scope.get("headers", []) if name == b"host"]
    return hosts[0].decode("latin-1") if len(hosts) == 1 else ""
