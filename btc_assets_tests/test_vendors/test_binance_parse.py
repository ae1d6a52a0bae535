"""Binance's parsers: kline arrays and funding objects as they come off the wire (strings or
numbers, ms or µs, extra fields), and drift that loses a field refused naming the row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from btc_assets.vendors.binance import BinanceClient, parse_funding_rows, parse_kline_rows
from btc_assets.vendors.errors import VendorResponseError

START = datetime(2024, 1, 2, tzinfo=UTC)
END = START + timedelta(days=1)
NOW_MS = int(datetime(2024, 1, 5, 12, 0, 30, tzinfo=UTC).timestamp() * 1000)
SPOT, FAPI, FUNDING = "/api/v3/klines", "/fapi/v1/klines", "/fapi/v1/fundingRate"


def test_parser_accepts_numbers_strings_and_microseconds() -> None:
    row_ms = [1704153600000, "42000.10", 42001, "41999.5", 42000.25, "1.5", 1704153659999,
              "63000.15", 12, "0.75", "31500.07", "0"]  # fmt: skip
    row_us = [1704153660000000, *row_ms[1:6], 1704153719999000, *row_ms[7:], "extra"]
    frame = parse_kline_rows([row_ms, row_us], SPOT)
    assert frame["open_ms"].to_list() == [1704153600000, 1704153660000]
    assert frame["close_ms"].to_list() == [1704153659999, 1704153719999]
    assert frame["open"].to_list() == [42000.10, 42000.10]
    assert frame["high"].to_list() == [42001.0, 42001.0]
    assert frame["close"].to_list() == [42000.25, 42000.25]


def test_parser_reads_decimal_strings_exactly() -> None:
    texts = ["0.1", "0.30000000000000004", "63201.05000000", "1e-8", "123456789.12345678"]
    row = [0, *texts[:4], texts[4], 59999, texts[0], 1, texts[1], texts[2]]
    frame = parse_kline_rows([row], SPOT)
    assert frame.row(0, named=True)["open"] == float(texts[0])
    assert frame["high"][0] == float(texts[1]) and frame["low"][0] == float(texts[2])
    assert frame["close"][0] == 1e-8 and frame["volume"][0] == float(texts[4])


@pytest.mark.parametrize(
    "rows",
    [[[1704153600000, "1", "2", "3"]], [None], {"code": 1}, [[0, "x", *["1"] * 9]]],
)
def test_parser_rejects_drift_that_loses_fields(rows: Any) -> None:
    with pytest.raises(VendorResponseError) as err:
        parse_kline_rows(rows, FAPI)
    assert FAPI in str(err.value)


def test_funding_parser_needs_time_and_rate() -> None:
    with pytest.raises(VendorResponseError, match="lacks \\['fundingRate'\\]"):
        parse_funding_rows([{"symbol": "BTCUSDT", "fundingTime": 1}], FUNDING)
    frame = parse_funding_rows(
        [{"fundingTime": 5, "fundingRate": -0.0001, "markPrice": "", "new": 1}], FUNDING
    )
    assert frame.row(0, named=True) == {
        "time_ms": 5, "funding_rate": -0.0001, "mark_price": None, "symbol": ""
    }  # fmt: skip


def test_short_row_from_the_wire_names_the_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[[1704153600000, "1", "2"]])

    client = BinanceClient(
        "https://api.binance.com", "https://fapi.binance.com",
        transport=httpx.MockTransport(handler), now_ms=lambda: NOW_MS,
    )  # fmt: skip
    with pytest.raises(VendorResponseError) as err:
        client.spot_klines("BTCUSDT", "1m", START, END)
    assert str(err.value).startswith(f"binance GET {SPOT} {{symbol=BTCUSDT, interval=1m,")
    assert "kline row 0 has the wrong shape" in str(err.value)
