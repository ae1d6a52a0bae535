"""The sandbox's US calendars against published holiday lists."""

from __future__ import annotations

from datetime import date

from btc_assets.sandbox.us_calendar import (
    fed_holidays,
    is_fed_business_day,
    is_nyse_session,
    nyse_holidays,
)


def test_nyse_2024_and_2022_as_published() -> None:
    assert sorted(nyse_holidays(2024)) == [
        date(2024, 1, 1), date(2024, 1, 15), date(2024, 2, 19), date(2024, 3, 29),
        date(2024, 5, 27), date(2024, 6, 19), date(2024, 7, 4), date(2024, 9, 2),
        date(2024, 11, 28), date(2024, 12, 25),
    ]  # fmt: skip
    # 2022: New Year on a Saturday is not moved; Juneteenth and Christmas on Sundays are.
    assert date(2021, 12, 31) not in nyse_holidays(2021)
    assert {date(2022, 6, 20), date(2022, 12, 26)} <= nyse_holidays(2022)
    assert date(2022, 1, 1) not in nyse_holidays(2022)


def test_fed_holidays_differ_from_the_exchange() -> None:
    assert {date(2024, 10, 14), date(2024, 11, 11)} <= fed_holidays(2024)  # Columbus, Veterans
    assert date(2024, 3, 29) not in fed_holidays(2024)  # Good Friday: the Fed publishes
    assert is_fed_business_day(date(2024, 3, 29)) and not is_nyse_session(date(2024, 3, 29))
    assert not is_nyse_session(date(2024, 6, 1))  # a Saturday
