"""US market calendars for the sandbox's macro world: when the NYSE trades (Alpha Vantage's
daily bars) and when the Federal Reserve publishes its daily series (FRED's H.10 / H.15
rates, ``"."`` on its holidays). Rule-based, no table to keep up to date.

NYSE closes on New Year's Day, Martin Luther King Jr. Day, Washington's Birthday, Good
Friday, Memorial Day, Juneteenth (from 2022), Independence Day, Labor Day, Thanksgiving and
Christmas, a Saturday holiday observed on the Friday before (except New Year's Day) and a
Sunday one on the Monday after. The Fed's holidays are the federal ones: no Good Friday, but
Columbus Day and Veterans Day, Juneteenth from 2021, Saturday holidays not moved.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` (0 = Monday) of the month; ``n = -1`` for the last."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (Anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    lm = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * lm) // 433
    month = (h + lm - 7 * m + 90) // 25
    return date(year, month, (h + lm - 7 * m + 33 * month + 19) % 32)


def _observed(day: date, saturday_to_friday: bool = True) -> date | None:
    if day.weekday() == 6:
        return day + timedelta(days=1)
    if day.weekday() == 5:
        return day - timedelta(days=1) if saturday_to_friday else None
    return day


@lru_cache(maxsize=64)
def nyse_holidays(year: int) -> frozenset[date]:
    fixed = [date(year, 7, 4), date(year, 12, 25)]
    if year >= 2022:
        fixed.append(date(year, 6, 19))
    days = {d for d in (_observed(x) for x in fixed) if d is not None}
    new_year = _observed(date(year, 1, 1), saturday_to_friday=False)  # no Friday before
    if new_year is not None:
        days.add(new_year)
    days |= {
        _nth_weekday(year, 1, 0, 3),  # MLK
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _easter(year) - timedelta(days=2),  # Good Friday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
    }
    return frozenset(days)


@lru_cache(maxsize=64)
def fed_holidays(year: int) -> frozenset[date]:
    fixed = [date(year, 1, 1), date(year, 7, 4), date(year, 11, 11), date(year, 12, 25)]
    if year >= 2021:
        fixed.append(date(year, 6, 19))
    days = {d for d in (_observed(x, saturday_to_friday=False) for x in fixed) if d is not None}
    days |= {
        _nth_weekday(year, 1, 0, 3),
        _nth_weekday(year, 2, 0, 3),
        _nth_weekday(year, 5, 0, -1),
        _nth_weekday(year, 9, 0, 1),
        _nth_weekday(year, 10, 0, 2),  # Columbus Day
        _nth_weekday(year, 11, 3, 4),
    }
    return frozenset(days)


def is_nyse_session(day: date) -> bool:
    return day.weekday() < 5 and day not in nyse_holidays(day.year)


def is_fed_business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in fed_holidays(day.year)
