"""The Host allow-list as pure functions: parsing a Host header, matching patterns."""

from __future__ import annotations

import pytest

from taskengine.api.hosts import AllowedHosts, host_name
from taskengine.errors import ConfigurationError


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8080", "localhost"),
        ("localhost.:8080", "localhost"),
        ("127.0.0.1:18080", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8080", "::1"),
        ("[0:0:0:0:0:0:0:1]:1", "::1"),
        (" tasks.internal ", "tasks.internal"),
        ("::1", None),  # an IPv6 address needs its brackets
        ("[::1", None),
        ("[127.0.0.1]", None),
        ("a b", None),
        ("a..b", None),
        ("host:port", None),
        ("host:123456", None),
        ("a:1:2", None),
        ("", None),
        ("http://localhost", None),
        ("user@localhost", None),
    ],
)
def test_host_name(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_defaults_serve_loopback_names_and_any_address() -> None:
    hosts = AllowedHosts()
    for ok in ("localhost", "a.b.localhost:1", "127.0.0.1", "[::1]:8080", "10.0.0.7", "[fe80::1]"):
        assert hosts.allows(ok), ok
    for bad in ("rebind.attacker.example:18080", "localhost.example", "xlocalhost", "", "[::1"):
        assert not hosts.allows(bad), bad


def test_patterns() -> None:
    hosts = AllowedHosts(["tasks.internal", ".Example.com.", "*.corp.test"])
    assert hosts.allows("tasks.internal:80")
    assert not hosts.allows("a.tasks.internal")
    assert hosts.allows("example.com") and hosts.allows("a.b.example.com")
    assert not hosts.allows("badexample.com") and not hosts.allows("example.com.evil")
    assert hosts.allows("x.corp.test") and not hosts.allows("corp.test")
    assert not hosts.allows("localhost")  # an explicit list replaces the defaults here
    assert AllowedHosts(["*"]).allows("anything.example")
    assert not AllowedHosts(["*"]).allows("bad host")


def test_for_server_adds_the_bound_name_but_not_an_address() -> None:
    assert AllowedHosts.for_server("tasks.lan").allows("tasks.lan:8080")
    assert AllowedHosts.for_server("tasks.lan").allows("localhost")
    wide = AllowedHosts.for_server("0.0.0.0", ["api.example"])
    assert wide.patterns == (".localhost", "api.example")
    assert wide.allows("api.example") and not wide.allows("other.example")


@pytest.mark.parametrize(
    "pattern", ["a.test:80", "http://a.test", "a b", "*a.test", "a.*.test", "", "[::1]"]
)
def test_bad_patterns_are_a_configuration_error(pattern: str) -> None:
    with pytest.raises(ConfigurationError, match="TASKENGINE_API_ALLOWED_HOSTS"):
        AllowedHosts([pattern])
