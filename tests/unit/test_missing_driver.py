"""A broker whose client library is not installed is a configuration error naming the extra."""

import sys

import pytest

from taskengine.brokers import open_broker
from taskengine.errors import ConfigurationError


def _without(monkeypatch: pytest.MonkeyPatch, driver: str, package: str) -> None:
    """Make `import driver` fail as it does where the extra is not installed."""
    for name in list(sys.modules):
        if name == driver or name.startswith((f"{driver}.", f"taskengine.brokers.{package}")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, driver, None)  # None in sys.modules: ModuleNotFoundError


@pytest.mark.parametrize(
    ("url", "driver", "package", "extra"),
    [
        ("redis://127.0.0.1:6379/0", "redis", "redis", "redis"),
        ("rediss://127.0.0.1:6379/0", "redis", "redis", "redis"),
        ("postgresql://u@127.0.0.1/db", "asyncpg", "postgres", "postgres"),
        ("postgres://u@127.0.0.1/db", "asyncpg", "postgres", "postgres"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, driver: str, package: str, extra: str
) -> None:
    _without(monkeypatch, driver, package)
    with pytest.raises(ConfigurationError) as raised:
        open_broker(url)
    message = str(raised.value)
    assert f"pip install 'task-engine[{extra}]'" in message
    assert f"the {extra!r} extra" in message
    assert driver in message


def test_another_missing_module_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the driver's own absence is translated: any other missing module propagates."""
    _without(monkeypatch, "redis", "redis")
    monkeypatch.delitem(sys.modules, "redis")  # the driver is there again...
    monkeypatch.setitem(sys.modules, "taskengine.brokers.redis", None)  # ...but this is not
    with pytest.raises(ModuleNotFoundError, match=r"taskengine\.brokers\.redis"):
        open_broker("redis://127.0.0.1:6379/0")
