"""The sandbox's universe: every instrument gets plausible, distinct data from every route,
on its own tick, only between its listing and delisting; exchangeInfo agrees with the data;
the CoinGlass plan's history depth and the per-request latency."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from btc_assets.sandbox.credentials import SANDBOX_COINGLASS_KEY
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.sandbox.universe import INSTRUMENTS, Instrument

NOW_MS = 1_717_243_650_000  # 2024-06-01 12:07:30 UTC
DAY_MS = 1_717_113_600_000  # 2024-05-31 00:00 UTC: every perpetual listed, none delisted
MINUTE, BAR, DAY = 60_000, 900_000, 86_400_000
EXCHANGES = "Binance,OKX,Bybit"
TRADING_PERPS = [i for i in INSTRUMENTS if i.is_perpetual and i.status == "TRADING"]


def get(sandbox: SandboxTransport, path: str, **params: Any) -> httpx.Response:
    headers = {"CG-API-KEY": SANDBOX_COINGLASS_KEY}
    with httpx.Client(transport=sandbox, base_url="http://any.host", headers=headers) as client:
        return client.get(path, params=params)


def klines(
    sandbox: SandboxTransport, path: str, symbol: str, interval: str = "1m", **params: Any
) -> list[list[Any]]:
    response = get(sandbox, path, symbol=symbol, interval=interval, **params)
    assert response.status_code == 200, response.text
    return response.json()


def coinglass(sandbox: SandboxTransport, path: str, **params: Any) -> list[dict[str, Any]]:
    body = get(sandbox, path, interval="15m", **params).json()
    assert body["code"] == "0", body
    return body["data"]


def closes(rows: list[list[Any]]) -> np.ndarray:
    return np.array([float(r[4]) for r in rows])


@pytest.fixture(scope="module")
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=NOW_MS)


def test_the_universe_is_about_twenty_perpetuals_and_two_that_are_not() -> None:
    assert len(TRADING_PERPS) >= 20
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT",
            "1000PEPEUSDT"} <= {i.perp for i in TRADING_PERPS}  # fmt: skip
    others = {i.perp: (i.contract_type, i.status) for i in INSTRUMENTS if i not in TRADING_PERPS}
    assert others == {
        "MATICUSDT": ("PERPETUAL", "SETTLING"),
        "BTCUSDT_261225": ("CURRENT_QUARTER", "TRADING"),
    }


def test_every_perpetual_has_distinct_plausible_data_from_every_route(
    sandbox: SandboxTransport,
) -> None:
    window = {"startTime": DAY_MS, "limit": 240}
    perp_closes: dict[str, np.ndarray] = {}
    for inst in TRADING_PERPS:
        perp = klines(sandbox, "/fapi/v1/klines", inst.perp, **window)
        assert len(perp) == 240, inst.perp
        perp_closes[inst.perp] = closes(perp)
        if inst.spot is not None:
            spot = closes(klines(sandbox, "/api/v3/klines", inst.spot, **window))
            # The perp trades at `multiplier` coins of spot, within the premium.
            ratio = perp_closes[inst.perp] / (spot * inst.multiplier)
            assert np.all(np.abs(ratio - 1) < 0.02), inst.perp
        funding = get(sandbox, "/fapi/v1/fundingRate", symbol=inst.perp,
                      startTime=DAY_MS + MINUTE, endTime=DAY_MS + DAY + MINUTE).json()  # fmt: skip
        assert len(funding) == 3 and all(abs(float(f["fundingRate"])) < 0.01 for f in funding)
        span = {"start_time": DAY_MS, "end_time": DAY_MS + DAY - 1}
        pair = {"exchange": "Binance", "symbol": inst.perp, **span}
        price = coinglass(sandbox, "/api/futures/price/history", **pair)
        assert len(price) == 96
        # CoinGlass's price of the pair is the Binance perp's, give or take a tick.
        perp_15m = closes(klines(sandbox, "/fapi/v1/klines", inst.perp, "15m", startTime=DAY_MS,
                                 limit=96))  # fmt: skip
        tick = 10.0 ** -inst.perp_decimals[0]
        assert np.all(np.abs(np.array([float(r["close"]) for r in price]) - perp_15m)
                      <= 1.5 * tick), inst.perp  # fmt: skip
        assert len(coinglass(sandbox, "/api/futures/v2/taker-buy-sell-volume/history", **pair))
        coin = {"symbol": inst.coin, **span}
        listed = {"exchange_list": EXCHANGES, **coin}
        oi = coinglass(sandbox, "/api/futures/open-interest/aggregated-history", **coin)
        assert len(oi) == 96 and all(float(r["close"]) > 0 for r in oi)
        for path in ("/api/futures/funding-rate/oi-weight-history",
                     "/api/futures/aggregated-taker-buy-sell-volume/history",
                     "/api/futures/liquidation/aggregated-history"):  # fmt: skip
            assert len(coinglass(sandbox, path, **(listed if "aggregated-" in path else coin)))
        spot_flows = coinglass(
            sandbox, "/api/spot/aggregated-taker-buy-sell-volume/history", **listed
        )
        assert len(spot_flows) == (96 if inst.spot is not None else 0), inst.perp
    # Each symbol its own path: no two series move together minute by minute.
    returns = {s: np.diff(np.log(c)) for s, c in perp_closes.items()}
    names = sorted(returns)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert abs(np.corrcoef(returns[a], returns[b])[0, 1]) < 0.5, (a, b)
    levels = sorted(float(c[0]) for c in perp_closes.values())
    assert levels[0] < 0.1 and levels[-1] > 10_000  # PEPE-like to BTC-like prices


def _on_tick(values: np.ndarray, tick: float) -> bool:
    steps = values / tick
    return bool(np.all(np.abs(steps - np.round(steps)) < 1e-6))


def test_exchange_info_agrees_with_the_klines(sandbox: SandboxTransport) -> None:
    futures = {s["symbol"]: s for s in get(sandbox, "/fapi/v1/exchangeInfo").json()["symbols"]}
    spot = {s["symbol"]: s for s in get(sandbox, "/api/v3/exchangeInfo").json()["symbols"]}
    assert set(futures) == {i.perp for i in INSTRUMENTS}
    assert set(spot) == {i.spot for i in INSTRUMENTS if i.spot}
    for inst in TRADING_PERPS:
        entry = futures[inst.perp]
        filters = {f["filterType"]: f for f in entry["filters"]}
        tick, step = (
            float(filters["PRICE_FILTER"]["tickSize"]),
            float(filters["LOT_SIZE"]["stepSize"]),
        )
        rows = klines(sandbox, "/fapi/v1/klines", inst.perp, startTime=DAY_MS, limit=60)
        prices = np.array([[float(x) for x in r[1:5]] for r in rows])
        assert _on_tick(prices, tick), inst.perp
        assert _on_tick(np.array([float(r[5]) for r in rows]), step), inst.perp
        onboard = entry["onboardDate"]
        before = klines(sandbox, "/fapi/v1/klines", inst.perp, endTime=onboard - 1)
        first = klines(sandbox, "/fapi/v1/klines", inst.perp, startTime=onboard - DAY, limit=1)
        assert before == [] and first[0][0] == onboard, inst.perp
        if inst.spot is not None:
            sfilters = {f["filterType"]: f for f in spot[inst.spot]["filters"]}
            rows = klines(sandbox, "/api/v3/klines", inst.spot, startTime=DAY_MS, limit=60)
            prices = np.array([[float(x) for x in r[1:5]] for r in rows])
            assert _on_tick(prices, float(sfilters["PRICE_FILTER"]["tickSize"])), inst.spot


def test_exchange_info_query_rules_and_weights(sandbox: SandboxTransport) -> None:
    fapi = get(sandbox, "/fapi/v1/exchangeInfo", symbol="NOPEUSDT")  # ignored, as live
    assert fapi.status_code == 200 and len(fapi.json()["symbols"]) == len(INSTRUMENTS)
    assert list(fapi.json()) == ["timezone", "serverTime", "futuresType", "rateLimits",
                                 "exchangeFilters", "assets", "symbols"]  # fmt: skip
    one = get(sandbox, "/api/v3/exchangeInfo", symbol="PEPEUSDT").json()["symbols"]
    assert [s["symbol"] for s in one] == ["PEPEUSDT"]
    halted = get(sandbox, "/api/v3/exchangeInfo", symbolStatus="BREAK").json()["symbols"]
    assert [s["symbol"] for s in halted] == ["MATICUSDT"]
    for params in ({"symbol": "1000PEPEUSDT"}, {"symbols": '["BTCUSDT","NOPEUSDT"]'}):
        refused = get(sandbox, "/api/v3/exchangeInfo", **params)
        assert (refused.status_code, refused.json()) == (
            400, {"code": -1121, "msg": "Invalid symbol."},
        )  # fmt: skip
    bad = get(sandbox, "/api/v3/exchangeInfo", symbols="BTCUSDT")
    assert (bad.status_code, bad.json()["code"]) == (400, -1100)
    fresh = SandboxTransport(now_ms=NOW_MS, clock=lambda: 600.0)
    weights = [int(get(fresh, p).headers["x-mbx-used-weight-1m"])
               for p in ("/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo")]  # fmt: skip
    assert weights == [20, 1]


def test_delisted_and_dated_contracts(sandbox: SandboxTransport) -> None:
    matic = next(i for i in INSTRUMENTS if i.perp == "MATICUSDT")
    assert matic.perp_end_ms is not None and matic.spot_end_ms is not None
    later = SandboxTransport(now_ms=matic.perp_end_ms + 30 * DAY)
    last = klines(later, "/fapi/v1/klines", "MATICUSDT", endTime=matic.perp_end_ms + DAY)
    assert last and last[-1][0] == matic.perp_end_ms - MINUTE  # nothing opens at or after
    assert klines(later, "/fapi/v1/klines", "MATICUSDT", startTime=matic.perp_end_ms) == []
    spot_last = klines(later, "/api/v3/klines", "MATICUSDT", endTime=matic.perp_end_ms + DAY)
    assert spot_last[-1][0] == matic.spot_end_ms - MINUTE
    funding = get(later, "/fapi/v1/fundingRate", symbol="MATICUSDT", limit=5).json()
    assert len(funding) == 5  # the last five settlements, none after the delisting
    assert matic.perp_end_ms - 8 * 3_600_000 < funding[-1]["fundingTime"] <= matic.perp_end_ms + 10
    after = coinglass(later, "/api/futures/price/history", exchange="Binance",
                      symbol="MATICUSDT", start_time=matic.perp_end_ms)  # fmt: skip
    assert after == []
    quarterly = next(i for i in INSTRUMENTS if i.perp == "BTCUSDT_261225")
    during = SandboxTransport(now_ms=quarterly.perp_listed_ms + DAY)
    assert klines(during, "/fapi/v1/klines", quarterly.perp, limit=5)
    assert get(during, "/fapi/v1/fundingRate", symbol=quarterly.perp).json() == []
    continuous = get(during, "/fapi/v1/continuousKlines", pair=quarterly.perp,
                     contractType="PERPETUAL", interval="1m")  # fmt: skip
    assert continuous.json()["code"] == -1130


def test_coin_endpoints_map_a_multiplier_contract_to_its_coin(sandbox: SandboxTransport) -> None:
    span = {"start_time": DAY_MS, "end_time": DAY_MS + 4 * BAR - 1}
    coins = coinglass(sandbox, "/api/futures/open-interest/aggregated-history", symbol="PEPE",
                      unit="coin", **span)  # fmt: skip
    usd = coinglass(sandbox, "/api/futures/open-interest/aggregated-history", symbol="PEPE",
                    **span)  # fmt: skip
    perp = klines(sandbox, "/fapi/v1/klines", "1000PEPEUSDT", startTime=DAY_MS, limit=60)
    price_per_coin = closes(perp)[14] / 1000  # OI counts coins; the perp quotes 1000 of them
    assert float(usd[0]["close"]) == pytest.approx(
        float(coins[0]["close"]) * price_per_coin, rel=1e-3
    )
    for symbol in ("1000PEPE", "PEPEUSDT"):
        body = get(sandbox, "/api/futures/open-interest/aggregated-history", symbol=symbol,
                   interval="15m").json()  # fmt: skip
        assert (body["code"], body["msg"]) == ("400", f"Unsupported symbol: {symbol}")


@pytest.mark.parametrize("days", [90, 180])
def test_coinglass_history_depth(days: int) -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS, coinglass_history_days=days)
    edge = NOW_MS - days * DAY
    pair = {"exchange": "Binance", "symbol": "BTCUSDT"}
    inside = coinglass(sandbox, "/api/futures/price/history", start_time=edge + DAY,
                       end_time=edge + 2 * DAY - 1, **pair)  # fmt: skip
    assert len(inside) == 96
    outside = get(sandbox, "/api/futures/price/history", interval="15m",
                  start_time=edge - 2 * DAY, end_time=edge - DAY, **pair).json()  # fmt: skip
    assert outside == {"code": "0", "msg": "success", "data": []}
    straddle = coinglass(sandbox, "/api/futures/open-interest/aggregated-history", symbol="BTC",
                         start_time=edge - DAY, end_time=edge + DAY)  # fmt: skip
    assert straddle and min(r["time"] for r in straddle) >= edge
    assert min(r["time"] for r in straddle) < edge + BAR  # the inside part is all there
    hourly = get(sandbox, "/api/futures/price/history", interval="1h",
                 start_time=edge - 2 * DAY, end_time=edge - DAY, **pair).json()  # fmt: skip
    assert len(hourly["data"]) == 24  # the plan's 15m depth does not limit 1h bars
    unlimited = SandboxTransport(now_ms=NOW_MS)
    assert len(coinglass(unlimited, "/api/futures/price/history", start_time=edge - 2 * DAY,
                         end_time=edge - DAY - 1, **pair)) == 96  # fmt: skip


def test_coinglass_history_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="coinglass_history_days=0"):
        SandboxTransport(coinglass_history_days=0)


def test_latency_is_slept_once_per_request() -> None:
    slept: list[float] = []
    sandbox = SandboxTransport(now_ms=NOW_MS, latency_seconds=0.25, sleep=slept.append)
    get(sandbox, "/fapi/v1/exchangeInfo")
    klines(sandbox, "/api/v3/klines", "BTCUSDT", limit=1)
    get(sandbox, "/no/such/path")
    assert slept == [0.25, 0.25, 0.25]
    quiet: list[float] = []
    get(SandboxTransport(now_ms=NOW_MS, sleep=quiet.append), "/fapi/v1/exchangeInfo")
    assert quiet == []
    with pytest.raises(ValueError, match="latency_seconds"):
        SandboxTransport(latency_seconds=-1)


def test_instruments_have_a_coin_and_a_consistent_multiplier() -> None:
    by_perp: dict[str, Instrument] = {i.perp: i for i in INSTRUMENTS}
    assert (by_perp["1000PEPEUSDT"].coin, by_perp["1000PEPEUSDT"].spot) == ("PEPE", "PEPEUSDT")
    assert (by_perp["BTCDOMUSDT"].spot, by_perp["BTCUSDT"].coin) == (None, "BTC")
    for inst in INSTRUMENTS:
        assert inst.perp_listed_ms < (inst.perp_end_ms or 2**62), inst.perp
