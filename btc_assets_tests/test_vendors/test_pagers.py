"""Every pager refuses a page that does not move past its cursor, instead of asking the same
question for ever: a vendor stuck on one page (it ignores startTime / start_time) answers
every request with the first page it served, and a spin guard turns a regression into a
failure rather than a hung test run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from btc_assets.sandbox.credentials import SANDBOX_COINGLASS_KEY
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.coinglass import (
    FUNDING_OI_WEIGHT,
    FUNDING_VOL_WEIGHT,
    LIQUIDATION,
    OI_HISTORY,
    PAIR_TAKER,
    PRICE_HISTORY,
    SPOT_AGG_TAKER,
    CoinGlassClient,
)
from btc_assets.vendors.errors import VendorResponseError
from btc_assets_tests.test_vendors.helpers import stuck_on_first_page

START = datetime(2024, 1, 2, tzinfo=UTC)
NOW_MS = int(datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC).timestamp() * 1000)
SPOT, FAPI, CONT, FUNDING = (
    "/api/v3/klines", "/fapi/v1/klines", "/fapi/v1/continuousKlines", "/fapi/v1/fundingRate"
)  # fmt: skip


# --- Binance ------------------------------------------------------------------------------


def _stuck_client() -> tuple[BinanceClient, list[str]]:
    """A client whose vendor answers every page with the first real page it served."""
    transport, asked = stuck_on_first_page(SandboxTransport(now_ms=NOW_MS))
    client = BinanceClient(
        "http://sandbox.binance.invalid", "http://sandbox.fapi.binance.invalid",
        transport=transport, now_ms=lambda: NOW_MS,
    )  # fmt: skip
    return client, asked


@pytest.mark.parametrize(("what", "path"), [("spot", SPOT), ("perp", FAPI), ("continuous", CONT)])
def test_kline_pager_refuses_a_full_page_that_does_not_advance(what: str, path: str) -> None:
    client, asked = _stuck_client()
    end = START + timedelta(days=2)  # 2880 bars: more than one page on every market
    with pytest.raises(VendorResponseError) as caught:
        if what == "spot":
            client.spot_klines("BTCUSDT", "1m", START, end)
        else:
            client.futures_klines("BTCUSDT", "1m", START, end, continuous=what == "continuous")
    message = str(caught.value)
    assert message.startswith(f"binance GET {path} {{"), message
    assert "did not advance past startTime=" in message
    assert len(asked) == 2  # the first page, then the repeat it refused


def test_funding_pager_refuses_a_full_page_that_does_not_advance() -> None:
    client, asked = _stuck_client()
    start = datetime(2022, 1, 1, tzinfo=UTC)
    with pytest.raises(VendorResponseError) as caught:  # 1,095 settlements: two pages
        client.funding_rate("BTCUSDT", start, start + timedelta(days=365))
    message = str(caught.value)
    assert message.startswith(f"binance GET {FUNDING} {{symbol=BTCUSDT, startTime="), message
    assert "did not advance past startTime=" in message
    assert len(asked) == 2


# --- CoinGlass ----------------------------------------------------------------------------

CG_END = START + timedelta(days=11)  # 1056 bars at 15m: two pages of at most 1000
EXCHANGES = "Binance,OKX,Bybit"
CG_PAGERS: dict[str, tuple[str, Callable[[CoinGlassClient], pl.DataFrame]]] = {
    "price": (PRICE_HISTORY, lambda c: c.price_history("BTCUSDT", "Binance", START, CG_END)),
    "oi": (OI_HISTORY, lambda c: c.open_interest_history("BTCUSDT", "BTC", START, CG_END)),
    "funding_oi": (
        FUNDING_OI_WEIGHT, lambda c: c.funding_history("BTCUSDT", "BTC", START, CG_END, "oi")
    ),
    "funding_vol": (
        FUNDING_VOL_WEIGHT, lambda c: c.funding_history("BTCUSDT", "BTC", START, CG_END, "vol")
    ),
    "pair_taker": (
        PAIR_TAKER, lambda c: c.pair_taker_history("BTCUSDT", "Binance", START, CG_END)
    ),
    "aggregated_taker": (  # spot is paged first
        SPOT_AGG_TAKER,
        lambda c: c.aggregated_taker_history("BTCUSDT", "BTC", EXCHANGES, START, CG_END),
    ),
    "liquidation": (
        LIQUIDATION, lambda c: c.liquidation_history("BTCUSDT", "BTC", EXCHANGES, START, CG_END)
    ),
}  # fmt: skip


@pytest.mark.parametrize("table", sorted(CG_PAGERS))
def test_coinglass_pager_refuses_a_page_that_repeats_earlier_history(table: str) -> None:
    path, fetch = CG_PAGERS[table]
    transport, asked = stuck_on_first_page(SandboxTransport(now_ms=NOW_MS))
    client = CoinGlassClient("http://sandbox.coinglass.invalid", SANDBOX_COINGLASS_KEY,
                             transport=transport, now_ms=lambda: NOW_MS)  # fmt: skip
    first = int(START.timestamp() * 1000)
    with pytest.raises(VendorResponseError) as caught:
        fetch(client)
    message = str(caught.value)
    assert message.startswith(f"coinglass GET {path} {{"), message
    cursor = first + 1000 * 900_000  # the second window's start
    assert f"did not advance past start_time={cursor}" in message
    assert f"start_time={cursor}, end_time=" in message  # the request is named in full
    assert len(asked) == 2  # the first page, then the repeat it refused


def test_coinglass_pager_accepts_pages_that_move_on() -> None:
    """The guard does not fire on an honest vendor: the same window, two pages, no error."""
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = CoinGlassClient("http://sandbox.coinglass.invalid", SANDBOX_COINGLASS_KEY,
                             transport=sandbox, now_ms=lambda: NOW_MS)  # fmt: skip
    for path, fetch in CG_PAGERS.values():
        assert fetch(client).height == 11 * 96, path
    assert sandbox.count(PRICE_HISTORY) == 2
