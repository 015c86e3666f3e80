"""Cron entries, their slots and their configuration: pure, nothing running."""

from __future__ import annotations

import pytest

from taskengine.errors import ConfigurationError, ValidationError
from taskengine.policy.cron import CronEntry, check_unique, due_slots, slot_key
from taskengine.settings import Settings

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def test_slots_are_utc_and_in_the_half_open_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    daily = due_slots("0 6 * * *", T0, T0 + 2 * 86400)
    assert daily == [1_700_028_000.0, 1_700_114_400.0]  # 06:00Z on the 15th and the 16th
    assert due_slots("*/5 * * * *", T0, 1_700_000_100.0) == [1_700_000_100.0]  # `until` included
    assert due_slots("*/5 * * * *", 1_700_000_100.0, 1_700_000_399.0) == []  # `after` excluded


def test_six_fields_take_seconds_last_and_the_limit_holds() -> None:
    assert due_slots("* * * * * */10", T0, T0 + 35) == [T0 + 10, T0 + 20, T0 + 30]
    assert len(due_slots("* * * * * *", T0, T0 + 3600, limit=7)) == 7


def test_slot_keys_name_the_entry_and_the_second() -> None:
    assert slot_key("nightly", 1_700_028_000.0) == "cron:nightly:1700028000"


@pytest.mark.parametrize(
    "fields",
    [
        {"cron": "not cron"},
        {"cron": "61 * * * *"},
        {"name": "has space"},
        {"type": ""},
    ],
)
def test_invalid_entries_are_refused(fields: dict[str, str]) -> None:
    values = {"name": "n", "cron": "* * * * *", "type": "t", **fields}
    with pytest.raises(ValidationError):
        CronEntry(**values)


def test_names_are_unique() -> None:
    entry = CronEntry(name="n", cron="* * * * *", type="t")
    check_unique([entry, CronEntry(name="m", cron="* * * * *", type="t")])
    with pytest.raises(ValidationError, match="named 'n'"):
        check_unique([entry, entry])


def test_cron_from_the_environment() -> None:
    raw = (
        '[{"name": "tick", "cron": "*/2 * * * *", "type": "time.sleep", "payload": {"seconds": 0}}]'
    )
    settings = Settings.from_env({"TASKENGINE_CRON": raw})
    assert settings.cron == (
        CronEntry(name="tick", cron="*/2 * * * *", type="time.sleep", payload={"seconds": 0}),
    )
    for bad in ("[{", '[{"name": "x"}]', '[{"name": "x", "cron": "bad", "type": "t"}]'):
        with pytest.raises(ConfigurationError):
            Settings.from_env({"TASKENGINE_CRON": bad})
    entry = '{"name": "a", "cron": "* * * * *", "type": "t"}'
    twice = f"[{entry}, {entry}]"
    with pytest.raises(ConfigurationError, match="named 'a'"):
        Settings.from_env({"TASKENGINE_CRON": twice})
