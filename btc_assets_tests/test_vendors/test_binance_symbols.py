"""exchangeInfo through BinanceClient against the sandbox (loopback), and the basket's check:
unknown, delisted, dated and spot-less symbols are each named; facts match the klines."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from btc_assets.core.symbols import SymbolSpec, parse_symbols, symbol_spec
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import (
    FUTURES_EXCHANGE_INFO,
    SPOT_EXCHANGE_INFO,
    BinanceClient,
    BinanceSymbolError,
)
from btc_assets.vendors.binance_symbols import (
    FuturesSymbolInfo,
    SpotSymbolInfo,
    UnknownSymbolError,
    check_symbols,
    parse_futures_exchange_info,
    parse_spot_exchange_info,
    validate_symbols,
)
from btc_assets.vendors.errors import VendorConfigError, VendorResponseError

NOW_MS = int(datetime(2024, 11, 5, 12, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[BinanceClient, SandboxTransport]]:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    with serve_sandbox(transport=sandbox) as url:
        client = BinanceClient(url, url, now_ms=lambda: NOW_MS, max_retries=2)
        yield client, sandbox
        client.close()


@pytest.fixture(scope="module")
def info(
    served: tuple[BinanceClient, SandboxTransport],
) -> tuple[dict[str, FuturesSymbolInfo], dict[str, SpotSymbolInfo]]:
    client, _ = served
    return client.futures_exchange_info(), client.spot_exchange_info()


def test_futures_exchange_info_lists_contracts_with_their_filters(
    info: tuple[dict[str, FuturesSymbolInfo], dict[str, SpotSymbolInfo]],
) -> None:
    futures, _ = info
    btc = futures["BTCUSDT"]
    assert (btc.contract_type, btc.status, btc.base_asset, btc.quote_asset) == (
        "PERPETUAL", "TRADING", "BTC", "USDT",
    )  # fmt: skip
    assert (btc.tick_size, btc.step_size) == (Decimal("0.1"), Decimal("0.001"))
    assert btc.onboard_ms == int(datetime(2019, 9, 8, tzinfo=UTC).timestamp() * 1000)
    pepe = futures["1000PEPEUSDT"]
    assert (pepe.base_asset, pepe.tick_size, pepe.step_size) == (
        "1000PEPE", Decimal("1E-7"), Decimal(1),
    )  # fmt: skip
    assert futures["MATICUSDT"].status == "SETTLING"
    assert futures["BTCUSDT_261225"].contract_type == "CURRENT_QUARTER"
    assert sum(i.status == "TRADING" and i.contract_type == "PERPETUAL" for i in futures.values())
    assert len({i.tick_size for i in futures.values()}) > 4  # ticks differ per contract


def test_spot_exchange_info_all_or_named(
    served: tuple[BinanceClient, SandboxTransport],
    info: tuple[dict[str, FuturesSymbolInfo], dict[str, SpotSymbolInfo]],
) -> None:
    client, sandbox = served
    _, spot = info
    assert "1000PEPEUSDT" not in spot and "BTCDOMUSDT" not in spot
    assert (spot["PEPEUSDT"].base_asset, spot["PEPEUSDT"].tick_size) == ("PEPE", Decimal("1E-8"))
    assert spot["MATICUSDT"].status == "BREAK"
    named = client.spot_exchange_info(["PEPEUSDT", "BTCUSDT"])
    assert sorted(named) == ["BTCUSDT", "PEPEUSDT"]
    assert named["BTCUSDT"] == spot["BTCUSDT"]
    before = sandbox.count(SPOT_EXCHANGE_INFO)
    with pytest.raises(BinanceSymbolError) as caught:
        client.spot_exchange_info(["BTCUSDT", "NOPEUSDT"])
    assert sandbox.count(SPOT_EXCHANGE_INFO) == before + 1  # a definite "no", not retried
    assert "NOPEUSDT" in str(caught.value) and "-1121" in str(caught.value)


def test_a_good_basket_has_no_problem_and_its_facts(
    info: tuple[dict[str, FuturesSymbolInfo], dict[str, SpotSymbolInfo]],
) -> None:
    specs = parse_symbols("BTCUSDT,ETHUSDT,1000PEPEUSDT,BTCDOMUSDT:spot=-")
    assert validate_symbols(specs, *info) == []
    facts = check_symbols(specs, *info)
    assert list(facts) == ["BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "BTCDOMUSDT"]
    btc, eth, pepe, dom = facts.values()
    assert (btc.listing_day, btc.first_full_day) == (date(2019, 9, 8), date(2019, 9, 8))
    assert eth.listed_at == datetime(2019, 11, 27, 8, tzinfo=UTC)
    assert (eth.listing_day, eth.first_full_day) == (date(2019, 11, 27), date(2019, 11, 28))
    assert (pepe.spot, pepe.spot_status, pepe.spot_tick_size) == (
        "PEPEUSDT", "TRADING", Decimal("1E-8"),
    )  # fmt: skip
    assert (pepe.tick_size, pepe.step_size) == (Decimal("1E-7"), Decimal(1))
    assert (dom.spot, dom.spot_status, dom.spot_tick_size) == (None, None, None)


def test_listing_facts_match_the_first_klines(
    served: tuple[BinanceClient, SandboxTransport],
    info: tuple[dict[str, FuturesSymbolInfo], dict[str, SpotSymbolInfo]],
) -> None:
    client, _ = served
    facts = check_symbols(parse_symbols("SOLUSDT"), *info)["SOLUSDT"]
    assert facts.listed_at is not None
    day = datetime.combine(facts.listing_day, datetime.min.time(), UTC)  # type: ignore[arg-type]
    bars = client.futures_klines("SOLUSDT", "1m", day - timedelta(days=1), day + timedelta(days=1))
    assert bars["ts"].min() == facts.listed_at + timedelta(minutes=1)  # close-labelled
    ticks = (bars["close"] / float(facts.tick_size)).round(6)  # type: ignore[arg-type]
    assert (ticks == ticks.round(0)).all()  # every price on the listed tick


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (symbol_spec("WIFUSDT"), "WIFUSDT is unknown to Binance USD-M futures"),
        (symbol_spec("MATICUSDT"), "MATICUSDT is not trading on USD-M (status SETTLING"),
        (symbol_spec("MATICUSDT"), "its spot pair MATICUSDT is not trading (status BREAK)"),
        (SymbolSpec("BTCUSDT_261225", None, "BTC", "BTCUSDT_261225"),
         "BTCUSDT_261225 is a CURRENT_QUARTER contract, not a PERPETUAL"),
        (symbol_spec("BTCDOMUSDT"), "BTCDOMUSDT: its spot pair BTCDOMUSDT is unknown to "
         "Binance spot (name it with :spot=PAIR, or write :spot=- if it has none)"),
        (symbol_spec("1000PEPEUSDT", spot="1000PEPEUSDT"), "spot pair 1000PEPEUSDT is unknown"),
    ],
)  # fmt: skip
def test_each_bad_symbol_is_named(
    info: tuple[dict[str, FuturesSymbolInfo], dict[str, SpotSymbolInfo]],
    spec: SymbolSpec,
    problem: str,
) -> None:
    specs = [symbol_spec("BTCUSDT"), spec]
    problems = validate_symbols(specs, *info)
    assert any(problem in p for p in problems), problems
    assert not any("BTCUSDT:" in p or p.startswith("BTCUSDT ") for p in problems)


def test_check_names_every_problem_at_once_and_the_setting(
    info: tuple[dict[str, FuturesSymbolInfo], dict[str, SpotSymbolInfo]],
) -> None:
    specs = parse_symbols("BTCUSDT,WIFUSDT,MATICUSDT,BTCDOMUSDT")
    with pytest.raises(UnknownSymbolError) as caught:
        check_symbols(specs, *info)
    error = caught.value
    assert isinstance(error, VendorConfigError) and len(error.problems) == 4
    text = str(error)
    assert text.startswith("BTC_ASSETS_SYMBOLS: 4 symbols Binance does not serve as configured")
    for name in ("WIFUSDT", "MATICUSDT is not", "MATICUSDT is not trading", "BTCDOMUSDT"):
        assert name in text
    again = pickle.loads(pickle.dumps(error))  # Dagster may ship it across processes
    assert str(again) == text


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ([], "expected a JSON object, got list"),
        ({"code": -1000, "msg": "An unknown error occurred"}, "error code -1000"),
        ({"timezone": "UTC"}, "no 'symbols' list"),
        ({"symbols": [{"status": "TRADING"}]}, "symbols[0] has no 'symbol'"),
        ({"symbols": [{"symbol": "X", "filters": [{"filterType": "PRICE_FILTER",
                                                   "tickSize": "abc"}]}]},
         "X: PRICE_FILTER.tickSize='abc' is not a number"),
        ({"symbols": [{"symbol": "X", "onboardDate": "soon"}]}, "X: onboardDate='soon'"),
    ],
)  # fmt: skip
def test_a_malformed_answer_is_refused_naming_the_endpoint(payload: Any, said: str) -> None:
    with pytest.raises(VendorResponseError) as caught:
        parse_futures_exchange_info(payload, FUTURES_EXCHANGE_INFO)
    assert said in str(caught.value) and FUTURES_EXCHANGE_INFO in str(caught.value)


def test_numbers_may_come_as_json_numbers_and_missing_filters_are_none() -> None:
    payload = {"symbols": [
        {"symbol": "A", "status": "TRADING", "filters": [
            {"filterType": "LOT_SIZE", "stepSize": 1}, {"filterType": "PRICE_FILTER",
                                                       "tickSize": 0.01}]},
        {"symbol": "B", "status": "BREAK"},
    ]}  # fmt: skip
    spot = parse_spot_exchange_info(payload, SPOT_EXCHANGE_INFO)
    assert (spot["A"].tick_size, spot["A"].step_size) == (Decimal("0.01"), Decimal(1))
    assert (spot["B"].tick_size, spot["B"].status) == (None, "BREAK")
