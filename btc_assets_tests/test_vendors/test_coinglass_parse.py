"""CoinGlass's row parser: numbers as numbers or strings, times in ms, s or µs, and drift
that loses a field refused naming the endpoint, the row and the key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from btc_assets.vendors.coinglass import LIQUIDATION, PRICE_HISTORY, CoinGlassClient, parse_rows
from btc_assets.vendors.errors import VendorResponseError

START = datetime(2024, 1, 2, tzinfo=UTC)
END = datetime(2024, 1, 3, tzinfo=UTC)
NOW_MS = int(datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC).timestamp() * 1000)


def test_parser_accepts_numbers_strings_and_time_units() -> None:
    fields = {"close": "close", "volume_usd": "v"}
    rows = [
        {"time": 1704153600000, "close": "92730", "volume_usd": 1166471854.3026},
        {"time": "1704154500000", "close": 92858.2, "volume_usd": " 0.1 ", "new": [1]},
        {"time": 1704155400, "close": 1, "volume_usd": ""},  # seconds
        {"time": 1704156300000000, "close": "1e-8", "volume_usd": None},  # µs
    ]
    frame = parse_rows(rows, PRICE_HISTORY, fields)
    assert frame["time_ms"].to_list() == [1704153600000 + k * 900_000 for k in range(4)]
    assert frame["close"].to_list() == [92730.0, 92858.2, 1.0, 1e-8]
    assert frame["v"].to_list() == [1166471854.3026, 0.1, None, None]


@pytest.mark.parametrize(
    ("rows", "text"),
    [
        ([{"time": 1, "open": "1"}], "row 0 lacks required key(s) ['close']"),
        ([{"close": "1"}], "lacks required key(s) ['time']"),
        ([{"time": 1, "close": "abc"}], "field 'close' is not a number: 'abc'"),
        ([{"time": 1, "close": True}], "field 'close' is not a number"),
        ([["1", "2"]], "row 0 is not an object"),
        ({"time": 1}, "'data' is a dict, expected a list"),
    ],
)
def test_parser_rejects_drift_that_loses_fields(rows: Any, text: str) -> None:
    with pytest.raises(VendorResponseError) as err:
        parse_rows(rows, PRICE_HISTORY, {"close": "close"})
    assert PRICE_HISTORY in str(err.value) and text in str(err.value)


def test_missing_field_on_the_wire_names_request_and_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": "0", "data": [{"time": 1704153600000}]})

    transport = httpx.MockTransport(handler)
    client = CoinGlassClient("https://open-api-v4.coinglass.com", "k3y-value",
                             transport=transport, now_ms=lambda: NOW_MS)  # fmt: skip
    with pytest.raises(VendorResponseError) as err:
        client.liquidation_history("BTCUSDT", "BTC", "Binance,OKX,Bybit", START, END)
    text = str(err.value)
    assert text.startswith(f"coinglass GET {LIQUIDATION} {{exchange_list=Binance,OKX,Bybit,")
    assert "lacks required key(s) ['aggregated_long_liquidation_usd'" in text
