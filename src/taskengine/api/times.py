"""Times as API inputs: RFC 3339 date-times (what OpenAPI's `date-time` means) and epoch seconds.

The grammar is the one JSON Schema validators check `format: date-time` against, so a value the
document calls valid is one the server takes: ASCII digits, `T` or `t`, an offset (`Z`, `z` or
`+hh:mm`) always present, a leap second only at 23:59:60 UTC, years 0000 to 9999.
"""

from __future__ import annotations

import calendar
import re
from datetime import date

DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
# Epoch seconds in a query string: a plain decimal, at most 15 integer digits (no float overflow).
SECONDS_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]+)?$"
_SECONDS = re.compile(SECONDS_PATTERN)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_GREGORIAN_CYCLE_DAYS = 146_097  # 400 years: the calendar repeats, which reaches the year 0


def parse_date_time(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 date-time; ValueError if `text` is not one."""
    match = DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = float("0" + match.group(7)) if match.group(7) else 0.0
    offset = 0
    if match.group(9):
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError(f"invalid UTC offset in {text!r}")
        offset = (offset_hours * 60 + offset_minutes) * (1 if match.group(9) == "+" else -1)
    if not 1 <= month <= 12 or not 1 <= day <= _days_in(year, month):
        raise ValueError(f"no such date in {text!r}")
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"no such time in {text!r}")
    if second == 60 and (hour * 60 + minute - offset) % 1440 != 23 * 60 + 59:
        raise ValueError(f"a leap second is 23:59:60 UTC, not {text!r}")
    days = _ordinal(year, month, day) - _EPOCH_DAY
    return days * 86400.0 + hour * 3600 + (minute - offset) * 60 + second + fraction


def parse_seconds(text: str) -> float:
    """Epoch seconds written as a plain decimal; ValueError otherwise."""
    if _SECONDS.fullmatch(text) is None:
        raise ValueError(f"not a number of seconds: {text!r}")
    return float(text)


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year or 400, month)[1]


def _ordinal(year: int, month: int, day: int) -> int:
    if year == 0:  # before date's range; 400 years on is the same day of the cycle
        return date(400, month, day).toordinal() - _GREGORIAN_CYCLE_DAYS
    return date(year, month, day).toordinal()
