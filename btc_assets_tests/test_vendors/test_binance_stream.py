"""Binance kline websocket messages: closed vs forming, malformed, replies, other units."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from btc_assets.stream.staging import Staging
from btc_assets.vendors.binance_stream import (
    combined_url,
    connection_groups,
    parse_message,
    stream_name,
)
from btc_assets.vendors.errors import VendorResponseError
from btc_assets_tests.test_stream.helpers import make_collector

ORIGIN = "wss://fstream.binance.com/market/stream"
# The documented example (vendor-apis.md §2.7), closed.
KLINE = {"t": 1638747660000, "T": 1638747719999, "s": "BTCUSDT", "i": "1m", "f": 100,
         "L": 200, "o": "0.0010", "c": "0.0020", "h": "0.0025", "l": "0.0015", "v": "1000",
         "n": 100, "x": True, "q": "1.0000", "V": "500", "Q": "0.500", "B": "123456"}  # fmt: skip


def message(**changes: object) -> str:
    k = {**KLINE, **changes}
    data = {"e": "kline", "E": 1638747720001, "s": "BTCUSDT", "k": k}
    return json.dumps({"stream": "btcusdt@kline_1m", "data": data})


def test_names_urls_and_connection_limits() -> None:
    assert stream_name("1000PEPEUSDT") == "1000pepeusdt@kline_1m"
    url = combined_url("wss://fstream.binance.com/market/", ["a@kline_1m", "b@kline_1m"])
    assert url == "wss://fstream.binance.com/market/stream?streams=a@kline_1m/b@kline_1m"
    streams = [f"s{i}@kline_1m" for i in range(450)]
    assert [len(g) for g in connection_groups("perp", streams)] == [200, 200, 50]
    assert [len(g) for g in connection_groups("spot", streams)] == [450]


def test_a_closed_kline_becomes_the_rest_array() -> None:
    update = parse_message(message(), ORIGIN)
    assert update is not None and update.closed and update.stream == "btcusdt@kline_1m"
    assert update.row == [1638747660000, "0.0010", "0.0025", "0.0015", "0.0020", "1000",
                          1638747719999, "1.0000", 100, "500", "0.500", "0"]  # fmt: skip
    forming = parse_message(message(x=False), ORIGIN)
    assert forming is not None and not forming.closed


def test_replies_and_other_events_are_not_klines() -> None:
    assert parse_message('{"result": null, "id": 1}', ORIGIN) is None
    other = {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade"}}
    assert parse_message(json.dumps(other), ORIGIN) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"stream": "btcusdt@kline_1m", "data": {"e": "kl', "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"code": -1121, "msg": "Invalid symbol."}', "error -1121: Invalid symbol."),
        (message(x="true"), "'x' is 'true', not a boolean"),
        (json.dumps({"stream": "b", "data": {"e": "kline", "k": {"t": 1}}}), "kline lacks"),
        (message(t="soon"), "times 'soon'"),
    ],
    ids=["truncated", "array", "error-object", "x-string", "missing-fields", "bad-time"],
)
def test_malformed_messages_name_the_endpoint_and_the_problem(text: str, says: str) -> None:
    with pytest.raises(VendorResponseError) as err:
        parse_message(text, ORIGIN)
    assert says in str(err.value) and ORIGIN in str(err.value)


def test_microsecond_times_are_staged_as_the_same_minute(tmp_path: Path) -> None:
    # Spot streams opened with ?timeUnit=MICROSECOND send t/T in µs.
    collector, _ = make_collector(tmp_path)
    conn = collector.status.connections[1]
    micro = message(t=KLINE["t"] * 1000, T=KLINE["T"] * 1000 + 999)
    collector.handle("perp", ORIGIN, micro, conn)
    collector.handle("perp", ORIGIN, message(), conn)  # the same candle in ms: a duplicate
    staged = Staging(tmp_path).staged_day("binance_perp_klines_1m", "BTCUSDT", date(2021, 12, 5))
    assert staged is not None and staged.frame.height == 1
    row = staged.frame.row(0, named=True)
    assert row["ts"].isoformat() == "2021-12-05T23:42:00+00:00" and row["close"] == 0.002
    assert collector.status.targets["binance_perp_klines_1m/BTCUSDT"].duplicates == 1
