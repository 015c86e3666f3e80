"""Bearer tokens with read and admin scopes, compared in constant time; cross-site refusal."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Literal

from starlette.requests import Request

from taskengine.api.errors import ApiError
from taskengine.errors import ConfigurationError

Scope = Literal["read", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Tokens:
    """The configured tokens; empty means the API is open (allowed on loopback only)."""

    def __init__(self, tokens: Mapping[str, Scope]) -> None:
        self._tokens = [(token.encode(), scope) for token, scope in tokens.items()]

    @classmethod
    def parse(cls, spec: str | None) -> Tokens:
        """Parse "admin:TOKEN,read:TOKEN2" (a bare TOKEN is admin)."""
        tokens: dict[str, Scope] = {}
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            scope, sep, token = item.partition(":")
            if not sep:
                scope, token = "admin", item
            if scope not in SCOPES or len(token) < 16:
                raise ConfigurationError(
                    "api tokens are 'admin:TOKEN' or 'read:TOKEN', each at least 16 characters"
                )
            tokens[token] = "admin" if scope == "admin" else "read"
        return cls(tokens)

    @property
    def enabled(self) -> bool:
        """True when at least one token is configured."""
        return bool(self._tokens)

    def scope_of(self, presented: str) -> Scope | None:
        """The scope of a presented token, checking every token in constant time."""
        candidate = presented.encode()
        found: Scope | None = None
        for token, scope in self._tokens:
            if hmac.compare_digest(candidate, token):
                found = scope
        return found

    def scope(self, request: Request) -> Scope:
        """The scope of the request's token (admin on an open server); 401 without one."""
        self.check(request, "read")
        if not self._tokens:
            return "admin"
        presented = request.headers.get("authorization", "").partition(" ")[2].strip()
        return self.scope_of(presented) or "read"

    def check(self, request: Request, needed: Scope) -> None:
        """Raise 401 without a valid token, 403 when its scope is too narrow."""
        if not self._tokens:
            return
        header = request.headers.get("authorization", "")
        kind, _, presented = header.partition(" ")
        if kind.lower() != "bearer" or not presented:
            raise ApiError(
                401,
                "unauthorized",
                "a bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scope = self.scope_of(presented.strip())
        if scope is None:
            raise ApiError(
                401,
                "unauthorized",
                "the token is not valid",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if needed == "admin" and scope != "admin":
            raise ApiError(403, "forbidden", "this action needs a token with the admin scope")


def check_same_origin(request: Request) -> None:
    """Refuse state-changing requests a browser sent from another site (403).

    Comparing Origin with Host is sound only because Host was checked first (api/hosts.py):
    a rebinding page controls both.
    """
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise ApiError(403, "cross_site_request", "cross-site requests are refused")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise ApiError(403, "cross_site_request", "cross-site requests are refused")
    elif origin == "null":
        raise ApiError(403, "cross_site_request", "cross-site requests are refused")
