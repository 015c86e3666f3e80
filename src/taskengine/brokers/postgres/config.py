"""The PostgreSQL broker's URL: the broker's own options, and the DSN that asyncpg gets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from taskengine.brokers.base import DEFAULT_MAX_DEPTH, check_limit
from taskengine.brokers.deadline import DEFAULT_TIMEOUT, TIMEOUT_PARAM, parse_timeout
from taskengine.errors import ConfigurationError

SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "taskengine"
DEFAULT_POOL_SIZE = 10
# Never handed to asyncpg (which would send unknown ones to the server as settings).
OWN_PARAMS = frozenset(
    {"schema", "max_depth", "pool_size", "migrate", "server_clock", TIMEOUT_PARAM}
)
CHANNEL_PREFIX = "taskengine."  # the NOTIFY channel is this + the schema (see schema.py)
# Plain identifiers only, so quoting is trivial; short enough that prefix + schema fits the
# 63-byte limit PostgreSQL puts on channel names.
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}\Z")


@dataclass(frozen=True)
class PostgresConfig:
    """Where the broker connects and what it keeps apart from the connection options."""

    dsn: str  # the URL without OWN_PARAMS: what asyncpg connects with
    application_name: str | None  # what pg_stat_activity shows, unless the URL names one
    schema: str
    max_depth: int
    pool_size: int
    where: str  # host:port/database, for messages (never the password)
    migrate: bool = True  # create or upgrade the schema at start (else only check it)
    # "now" is the database's clock, or the caller's if false (ADR 0006); None: not in the URL
    server_clock: bool | None = None
    timeout: float = DEFAULT_TIMEOUT  # seconds: the deadline of each call

    @property
    def quoted_schema(self) -> str:
        """The schema as an SQL identifier."""
        return f'"{self.schema}"'

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema."""
        return CHANNEL_PREFIX + self.schema


def parse_url(
    url: str,
    *,
    max_depth: int | None = None,
    schema: str | None = None,
    pool_size: int | str | None = None,
    url_params: dict[str, str] | None = None,
) -> PostgresConfig:
    """Read `postgresql://user@host:5432/db?schema=name&pool_size=10&migrate=false&timeout=5`
    (and `server_clock=false`), checking every option.

    Keyword options must agree with the URL where both give one (`open_broker` passes the
    URL's query parameters as keywords too); asyncpg's own query parameters stay in the DSN.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(f"not a PostgreSQL URL: {parts.scheme!r}")
    in_url = dict(parse_qsl(parts.query))
    params = dict(url_params or {})
    timeout = parse_timeout(params.pop(TIMEOUT_PARAM, None), in_url.get(TIMEOUT_PARAM))
    unknown = {k for k, v in params.items() if in_url.get(k) != str(v)}
    if unknown:
        raise ConfigurationError(
            f"unknown PostgreSQL broker options {sorted(unknown)}: client options go in the URL"
        )
    chosen = _agreed("schema", schema, in_url.get("schema")) or DEFAULT_SCHEMA
    if not _SCHEMA_NAME.match(chosen) or chosen.lower().startswith("pg_"):
        raise ConfigurationError(
            f"invalid schema {chosen!r}: 1-48 letters, digits or '_', not starting with a "
            "digit or 'pg_'"
        )
    depth = _integer("max_depth", _agreed("max_depth", max_depth, in_url.get("max_depth")))
    depth = DEFAULT_MAX_DEPTH if depth is None else depth
    check_limit(depth, "max_depth")
    size = _integer("pool_size", _agreed("pool_size", pool_size, in_url.get("pool_size")))
    size = DEFAULT_POOL_SIZE if size is None else size
    if size < 1:
        raise ConfigurationError(f"pool_size must be at least 1: {size}")
    migrate = in_url.get("migrate", "true").lower()
    if migrate not in BOOLEANS:
        raise ConfigurationError(f"migrate must be true or false: {in_url['migrate']!r}")
    rest = [(k, v) for k, v in parse_qsl(parts.query) if k not in OWN_PARAMS]
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    try:
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}"
    except ValueError as exc:  # a port that is not a number
        raise ConfigurationError(f"invalid PostgreSQL URL: {exc}") from None
    name = None if "application_name" in in_url else f"taskengine {chosen}"
    clock = in_url.get("server_clock")
    if clock is not None and clock.lower() not in BOOLEANS:
        raise ConfigurationError(f"server_clock must be true or false: {clock!r}")
    server_clock = None if clock is None else BOOLEANS[clock.lower()]
    return PostgresConfig(
        dsn, name, chosen, depth, size, where, BOOLEANS[migrate], server_clock, timeout
    )


def _agreed(name: str, given: object, in_url: str | None) -> str | None:
    """The option's value from the keyword or the URL; refuse two different values."""
    if given is None:
        return in_url
    if in_url is not None and str(given) != in_url:
        raise ConfigurationError(f"{name} is {given!r} but the URL says {in_url!r}")
    return str(given)


def _integer(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer: {value!r}") from None
