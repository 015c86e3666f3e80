"""api/times.py: exactly the `date-time` JSON Schema validators check, as epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskengine.api.times import parse_date_time, parse_seconds

jsonschema_rs = pytest.importorskip("jsonschema_rs")
DATE_TIME = jsonschema_rs.validator_for(
    {"type": "string", "format": "date-time"}, validate_formats=True
)

CORPUS = [
    "2026-01-31T12:00:00Z",
    "2026-01-31t12:00:00z",
    "2026-01-31T12:00:00.123456789+05:30",
    "2016-12-31T23:59:60Z",
    "2016-12-31T18:59:60-05:00",
    "2016-12-31T12:00:60Z",
    "0000-02-29T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "2024-02-29T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:60:00Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+00:60",
    "2026-01-01T00:00:00",
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00Z",
    "2026-01-01T00:00:00.Z",
    "2026-01-01T00:00:00+0100",
    "2026-01-01",
    "\u0662026-01-01T00:00:00Z",
    "",
]


@pytest.mark.parametrize("text", CORPUS)
def test_takes_what_the_date_time_format_takes(text: str) -> None:
    try:
        parse_date_time(text)
    except ValueError:
        taken = False
    else:
        taken = True
    assert taken is DATE_TIME.is_valid(text)


def test_a_leap_second_is_the_next_second() -> None:
    assert parse_date_time("2016-12-31T23:59:60Z") == datetime(2017, 1, 1, tzinfo=UTC).timestamp()
    assert (
        parse_date_time("0000-03-01T00:00:00Z") - parse_date_time("0000-02-28T00:00:00Z")
        == 2 * 86400
    )  # the year 0 is a leap year


offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(timezones=offsets))
def test_agrees_with_datetime(when: datetime) -> None:
    text = when.isoformat()
    assert DATE_TIME.is_valid(text)
    assert parse_date_time(text) == pytest.approx(when.timestamp(), abs=1e-6)


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("1769860800.5", 1769860800.5), ("-1", -1.0)]
)
def test_seconds_are_plain_decimals(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1e9", " 1", "1_000", "nan", "inf", "9" * 16, ".5", "1."])
def test_anything_else_is_not_seconds(text: str) -> None:
    with pytest.raises(ValueError, match="not a number of seconds"):
        parse_seconds(text)
