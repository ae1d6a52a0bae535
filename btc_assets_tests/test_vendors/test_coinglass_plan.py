"""The CoinGlass plan's 15m history depth, on both sides: the sandbox (modelling the vendor)
answers older windows with an empty success, and a client told the depth does not ask."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from btc_assets.defs.definitions import build_resources
from btc_assets.defs.resources import CoinGlassResource
from btc_assets.sandbox.credentials import SANDBOX_COINGLASS_KEY
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.settings import load_settings
from btc_assets.vendors.coinglass import CoinGlassClient, CoinGlassHistoryLimit
from btc_assets.vendors.coinglass_plan import HistoryWindow
from btc_assets.vendors.errors import VendorRefused

NOW = datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAYS = 90
FIRST_FULL = date(2024, 3, 4)  # 2024-06-01 12:07:30 - 90 days = 2024-03-03 12:07:30


def client(sandbox: SandboxTransport, history_days: int | None) -> CoinGlassClient:
    return CoinGlassClient(
        "http://sandbox.coinglass.invalid", SANDBOX_COINGLASS_KEY, transport=sandbox,
        now_ms=lambda: NOW_MS, history_days=history_days,
    )  # fmt: skip


def day(d: date) -> tuple[datetime, datetime]:
    start = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def test_the_first_full_day_of_the_window() -> None:
    window = HistoryWindow(DAYS)
    assert window.first_full_day(NOW_MS) == FIRST_FULL
    midnight = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
    assert window.first_full_day(midnight) == date(2024, 3, 3)  # that day is whole
    assert window.first_full_day(NOW_MS, 3_600_000) is None  # 1h is not limited
    assert HistoryWindow(None).first_full_day(NOW_MS) is None
    with pytest.raises(ValueError, match="history_days=0"):
        HistoryWindow(0)


def test_inside_the_window_the_client_gets_every_bar() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS, coinglass_history_days=DAYS)
    cg = client(sandbox, DAYS)
    assert cg.first_full_day() == FIRST_FULL
    frame = cg.price_history("BTCUSDT", "Binance", *day(FIRST_FULL))
    assert frame.height == 96 and sandbox.count() == 1


def test_outside_the_window_the_client_refuses_without_asking() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS, coinglass_history_days=DAYS)
    cg = client(sandbox, DAYS)
    edge_day = FIRST_FULL - timedelta(days=1)  # partly inside: still refused whole
    for start, end in (day(edge_day), (day(edge_day)[0], day(FIRST_FULL)[1])):
        with pytest.raises(CoinGlassHistoryLimit) as caught:
            cg.open_interest_history("BTCUSDT", "BTC", start, end)
        assert isinstance(caught.value, VendorRefused)  # a definite "no": fallbacks may act
    assert sandbox.count() == 0
    text = str(caught.value)
    assert "older than the plan's 90-day history" in text
    assert f"BTC_ASSETS_COINGLASS_HISTORY_DAYS=90: ask for days from {FIRST_FULL} on" in text
    hourly = cg.price_history("BTCUSDT", "Binance", *day(date(2024, 1, 2)), interval="1h")
    assert hourly.height == 24  # coarser intervals are not limited by the 15m depth


def test_a_client_not_told_the_depth_sees_the_vendors_empty_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS, coinglass_history_days=DAYS)
    with caplog.at_level(logging.WARNING, logger="btc_assets.vendors"):
        frame = client(sandbox, None).price_history("BTCUSDT", "Binance", *day(date(2024, 1, 2)))
    assert frame.height == 0
    assert sandbox.count() == 2  # the empty page is asked once more, then taken as a gap
    assert "0 of 96 bars (96 missing)" in caplog.text


def test_the_plan_setting_reaches_the_coinglass_client(tmp_path: Path) -> None:
    settings = replace(load_settings(), data_dir=tmp_path, coinglass_history_days=180)
    resource = build_resources(settings)["coinglass"]
    assert isinstance(resource, CoinGlassResource) and resource.history_days == 180
    assert resource.client().history == HistoryWindow(180)
    unlimited = build_resources(replace(settings, coinglass_history_days=None))["coinglass"]
    assert unlimited.client().history == HistoryWindow(None)  # type: ignore[attr-defined]
