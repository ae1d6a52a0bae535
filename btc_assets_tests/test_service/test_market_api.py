"""The market-data routes on a live service: open-interest replay, liquidation heatmaps (JSON
and picture), signals and whale alerts; never a day that does not verify, is blocked by its
gate or was written in the other env; the seed's metric names with route-template labels."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from btc_assets.charts.heatmap import heatmap_png
from btc_assets.core.tables import HEATMAP_TILES, OPEN_INTEREST, SIGNALS, WHALE_ALERTS
from btc_assets.service.market_data import MarketData
from btc_assets_tests.test_service.conftest import PNG, SYMBOL, Running, flip_bytes
from btc_assets_tests.test_service.market_lake import (
    TableGates,
    alert,
    as_columns,
    heatmap_candles,
    heatmap_tiles,
    midnight,
    oi_day,
    write_alerts,
    write_heatmap,
    write_oi,
)

ETH = "ETHUSDT"
D1, D2, D3 = date(2024, 3, 8), date(2024, 3, 9), date(2024, 3, 10)  # NOW is D3+1 00:10
OI = "/replay/oi/{symbol}"


@pytest.fixture
def table_gates() -> TableGates:
    return TableGates()


@pytest.fixture
def market(serve: Callable[..., Running], table_gates: TableGates) -> Callable[..., Running]:
    def start(**overrides: object) -> Running:
        return serve(table_gate=table_gates, **overrides)

    return start


def _oi(service: Running, symbol: str = SYMBOL, **params: str) -> tuple[int, dict]:
    answer = service.client.get(f"/replay/oi/{symbol}", params=params)
    assert answer.headers["x-model-version"] == "none"  # the middleware stamps every answer
    return answer.status_code, answer.json()


def _written_oi(*days: date) -> pl.DataFrame:
    return pl.concat([oi_day(d, SYMBOL) for d in days])


# ---------------------------------------------------------------------- /replay/oi


def test_replay_returns_what_was_written(market: Callable[..., Running], lake: Path) -> None:
    for day in (D1, D2, D3):
        write_oi(lake, day, SYMBOL)
    status, body = _oi(market(), "btcusdt", start="2024-03-08", end="2024-03-11")
    assert status == 200, body
    assert body["symbol"] == SYMBOL and body["rows"] == 3 * 96
    assert body["columns"] == as_columns(_written_oi(D1, D2, D3),
                                         ("ts", "open", "high", "low", "close"))  # fmt: skip
    assert body["missing_days"] == {}
    source = body["source"]
    assert source["table"] == OPEN_INTEREST.name and source["env"] == "sandbox"
    assert source["gate"] == "checked" and list(source["days"]) == ["2024-03-08", "2024-03-09",
                                                                    "2024-03-10"]  # fmt: skip
    assert source["days"]["2024-03-09"]["host"] == "sandbox.invalid"


def test_replay_range_edges_and_defaults(market: Callable[..., Running], lake: Path) -> None:
    for day in (D2, D3):
        write_oi(lake, day, SYMBOL)
    service = market()
    # start excluded, end included; a naive date-time is UTC, an offset is converted
    status, body = _oi(service, start="2024-03-09T00:15:00", end="2024-03-09T02:00:00+01:00")
    assert status == 200, body
    assert body["columns"]["ts"] == ["2024-03-09T00:30:00.000Z", "2024-03-09T00:45:00.000Z",
                                     "2024-03-09T01:00:00.000Z"]  # fmt: skip
    assert body["start"] == "2024-03-09T00:15:00+00:00"
    assert body["end"] == "2024-03-09T01:00:00+00:00"
    # the last bar of D2 closes at D3 00:00 and lives in D2's file
    status, body = _oi(service, start="2024-03-09T23:45:00Z", end="2024-03-10")
    assert body["columns"]["ts"] == ["2024-03-10T00:00:00.000Z"] and body["missing_days"] == {}
    # default: the day before now (NOW = D3+1 00:10); D3+1 is not in the lake yet
    status, body = _oi(service)
    assert status == 200
    assert body["start"] == "2024-03-10T00:10:00+00:00" and body["rows"] == 96
    assert body["columns"]["ts"][0] == "2024-03-10T00:15:00.000Z"
    assert body["columns"]["ts"][-1] == "2024-03-11T00:00:00.000Z"
    assert body["missing_days"] == {"2024-03-11": "not in the lake"}


def test_replay_refusals_name_the_culprit(market: Callable[..., Running], lake: Path) -> None:
    write_oi(lake, D3, SYMBOL)
    service = market()
    status, body = _oi(service, "DOGEUSDT")
    assert status == 404
    assert body["detail"] == "unknown symbol 'DOGEUSDT': configured symbols are ['BTCUSDT']"
    status, body = _oi(service, start="2024-03-10", end="2024-03-10")
    assert status == 400
    assert body["detail"] == ("start 2024-03-10T00:00:00+00:00 must be before end "
                              "2024-03-10T00:00:00+00:00")  # fmt: skip
    status, body = _oi(service, start="2024-03-10T12:00:00Z", end="2024-03-10")
    assert status == 400 and "must be before end" in body["detail"]
    status, body = _oi(service, start="2023-12-01", end="2024-03-10")
    assert status == 400
    assert "spans 100.00 days, more than max_replay_days = 92" in body["detail"]
    assert _oi(service, start="2024-01-01", end="2024-03-11")[0] == 200  # 70 days: fine
    for name, value in (("start", "yesterday"), ("end", "2024-13-01"), ("start", "2024-02-30")):
        status, body = _oi(service, **{name: value})
        assert status == 400
        assert body["detail"].startswith(f"{name}={value!r}: expected an ISO date")
    status, body = _oi(service, start="2024-03-01", end="2024-03-05")
    assert status == 404
    assert body["detail"].startswith(
        f"no usable {OPEN_INTEREST.name} day for BTCUSDT in (2024-03-01T00:00:00+00:00, "
        "2024-03-05T00:00:00+00:00]: 2024-03-01: not in the lake; "
    )
    assert body["missing_days"] == dict.fromkeys(
        ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"], "not in the lake"
    )


def test_a_corrupt_day_is_listed_never_served_and_a_rewrite_is_seen(
    market: Callable[..., Running], lake: Path
) -> None:
    for day in (D1, D2, D3):
        write_oi(lake, day, SYMBOL)
    service = market()
    params = {"start": "2024-03-08", "end": "2024-03-11"}
    assert _oi(service, **params)[1]["rows"] == 288  # D2 verified once and cached
    flip_bytes(write_oi(lake, D2, SYMBOL))  # rots after it was served: same size
    status, body = _oi(service, **params)
    assert status == 200 and body["rows"] == 192
    reason = body["missing_days"]["2024-03-09"]
    assert reason.startswith("does not verify: ") and "sha256 mismatch" in reason
    assert not [t for t in body["columns"]["ts"] if t.startswith("2024-03-09T01")]
    assert "2024-03-09" not in body["source"]["days"]
    write_oi(lake, D2, SYMBOL, base=2e10)  # the day rewritten whole, with other values
    status, body = _oi(service, **params)
    assert body["rows"] == 288 and body["missing_days"] == {}
    expected = as_columns(oi_day(D2, SYMBOL, base=2e10), ("ts", "close"))
    assert body["columns"]["close"][96:192] == expected["close"]


def test_the_verification_is_reused_until_the_day_changes(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    data = MarketData(lake, "sandbox", None, 0.1)
    write_oi(lake, D2, SYMBOL)
    for _ in range(3):
        assert list(data.read(OPEN_INTEREST, SYMBOL, [D2]).used) == [D2]
    assert data.verifications == 1
    path = write_oi(lake, D2, SYMBOL, base=3e10)
    first_close = oi_day(D2, SYMBOL, 3e10)["close"][0]
    assert data.read(OPEN_INTEREST, SYMBOL, [D2]).frame["close"][0] == first_close
    assert data.verifications == 2
    flip_bytes(path)
    assert "sha256 mismatch" in data.read(OPEN_INTEREST, SYMBOL, [D2]).skipped[D2]
    data.read(OPEN_INTEREST, SYMBOL, [D2])
    assert data.verifications == 3  # a corrupt day is not hashed again either


def test_gate_blocked_and_other_env_days_are_not_served(
    market: Callable[..., Running], lake: Path, table_gates: TableGates
) -> None:
    write_oi(lake, D1, SYMBOL)
    write_oi(lake, D2, SYMBOL)
    write_oi(lake, D3, SYMBOL, env="live")
    table_gates.blocked[OPEN_INTEREST.name, SYMBOL] = {D1: "coinglass_open_interest.quality "
                                                            "failed: coverage 40%"}  # fmt: skip
    status, body = _oi(market(), start="2024-03-08", end="2024-03-11")
    assert status == 200
    assert body["rows"] == 96 and body["columns"]["ts"][0] == "2024-03-09T00:15:00.000Z"
    missing = body["missing_days"]
    assert missing["2024-03-08"] == "blocked: coinglass_open_interest.quality failed: coverage 40%"
    assert missing["2024-03-10"].startswith("written in live env, this is sandbox (")
    assert (OPEN_INTEREST.name, SYMBOL, (D1, D2, D3)) in table_gates.asked


def test_a_gate_that_cannot_be_asked_is_a_503(
    market: Callable[..., Running], lake: Path, table_gates: TableGates
) -> None:
    write_oi(lake, D3, SYMBOL)
    table_gates.error = "could not connect to server"
    status, body = _oi(market(), start="2024-03-10", end="2024-03-11")
    assert status == 503
    assert body["detail"] == (f"the quality gate of {OPEN_INTEREST.name} could not be asked "
                              "for BTCUSDT: could not connect to server")  # fmt: skip


# ---------------------------------------------------------------------- /heatmap


def test_heatmap_json_is_the_tiles_written(market: Callable[..., Running], lake: Path) -> None:
    write_heatmap(lake, D2, SYMBOL)
    write_heatmap(lake, D3, SYMBOL)
    client = market().client
    answer = client.get(f"/heatmap/{SYMBOL}")  # default: the newest day
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert answer.headers["x-heatmap-day"] == body["day"] == D3.isoformat()
    assert body["scope"] == "pair"
    tiles = heatmap_tiles(D3, SYMBOL).filter(pl.col("scope") == "pair").sort("ts", "price_level")
    assert body["tiles"] == as_columns(tiles, ("ts", "price_level", "intensity"))
    assert body["rows"] == 72 and body["y_levels"] == [60000.0 + 100 * k for k in range(8)]
    candles = heatmap_candles(D3, SYMBOL).filter(pl.col("scope") == "pair")
    assert body["candles"] == as_columns(candles, ("ts", "open", "high", "low", "close",
                                                   "volume_usd"))  # fmt: skip
    assert body["candles_missing"] is None and body["skipped_days"] == {}
    coin = client.get(f"/heatmap/{SYMBOL}", params={"day": "2024-03-09", "scope": "COIN"}).json()
    assert coin["day"] == "2024-03-09" and coin["scope"] == "coin"
    assert coin["tiles"] == {"ts": ["2024-03-09T12:00:00.000Z"], "price_level": [61000.0],
                             "intensity": [2.5e7]}  # fmt: skip


def test_heatmap_refusals_and_unusable_days(
    market: Callable[..., Running], lake: Path, table_gates: TableGates
) -> None:
    d0 = D1 - timedelta(days=1)
    write_heatmap(lake, d0, SYMBOL)
    write_heatmap(lake, D1, SYMBOL)
    write_heatmap(lake, D2, SYMBOL, env="live")
    path = write_heatmap(lake, D3, SYMBOL)
    table_gates.blocked[HEATMAP_TILES.name, SYMBOL] = {D1: "quality failed: 3 empty columns"}
    client = market().client

    def get(**params: str) -> tuple[int, dict]:
        answer = client.get(f"/heatmap/{SYMBOL}", params=params)
        return answer.status_code, answer.json()

    for name, value, expected in (
        ("scope", "exchange", "scope='exchange': expected one of ['pair', 'coin']"),
        ("format", "svg", "format='svg': expected one of ['json', 'png']"),
        ("day", "2024-3-9", "day='2024-3-9': expected a UTC day as YYYY-MM-DD"),
        ("day", "2024-02-30", "day='2024-02-30': expected a UTC day as YYYY-MM-DD"),
    ):
        assert get(**{name: value}) == (400, {"detail": expected})
    assert client.get("/heatmap/XRPUSDT").status_code == 404
    assert get(day="2024-03-01") == (
        404,
        {
            "detail": "no liquidation heatmap of BTCUSDT for "
            f"2024-03-01: {HEATMAP_TILES.name} not in the lake"
        },
    )
    status, body = get(day="2024-03-09")
    assert status == 404 and "written in live env, this is sandbox" in body["detail"]
    status, body = get(day="2024-03-08")
    assert (status, body["detail"]) == (404, "no liquidation heatmap of BTCUSDT for 2024-03-08: "
                                             f"{HEATMAP_TILES.name} blocked: quality failed: 3 "
                                             "empty columns")  # fmt: skip
    assert get(day="2024-03-10")[0] == 200
    flip_bytes(path)  # rots after it was served
    status, body = get(day="2024-03-10")
    assert status == 404 and "does not verify" in body["detail"]
    status, body = get()  # the newest usable day: D3 rots, D2 is live's, D1 is blocked
    assert status == 200 and body["day"] == d0.isoformat()
    assert list(body["skipped_days"]) == ["2024-03-10", "2024-03-09", "2024-03-08"]


def _colours(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 24) or [])


def test_heatmap_png_is_a_real_deterministic_picture(
    market: Callable[..., Running], lake: Path
) -> None:
    write_heatmap(lake, D3, SYMBOL)
    client = market().client
    answer = client.get(f"/heatmap/{SYMBOL}", params={"format": "png", "day": "2024-03-10"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    png = answer.content
    assert png.startswith(PNG)
    image = Image.open(io.BytesIO(png))
    assert image.size[0] >= 600 and image.size[1] >= 300
    assert _colours(png) > 50
    tiles = heatmap_tiles(D3, SYMBOL).filter(pl.col("scope") == "pair")
    candles = heatmap_candles(D3, SYMBOL).filter(pl.col("scope") == "pair")
    title = f"{SYMBOL} liquidation heatmap (pair), 2024-03-10 UTC"
    assert heatmap_png(tiles, candles, title) == png  # drawn again, byte for byte
    assert client.get(f"/heatmap/{SYMBOL}", params={"format": "png"}).content == png


def test_an_empty_heatmap_is_a_picture_that_says_so() -> None:
    tiles = heatmap_tiles(D3, SYMBOL).clear()
    png = heatmap_png(tiles, heatmap_candles(D3, SYMBOL).clear(), "nothing")
    assert png.startswith(PNG) and _colours(png) > 2
    with_line = heatmap_png(tiles, heatmap_candles(D3, SYMBOL), "line only")
    assert with_line != png and _colours(with_line) > _colours(png)


# ---------------------------------------------------------------------- alerts


def _signals(lake: Path) -> None:
    at = midnight(D3)
    write_alerts(lake, SIGNALS.name, D3, SYMBOL, [
        alert(at + timedelta(hours=2), SYMBOL, "oi_shock", "low", 2.1),
        alert(at + timedelta(hours=5), SYMBOL, "funding_anomaly", "medium", 3.2),
        alert(at + timedelta(hours=9), SYMBOL, "liquidation_cascade", "high", 5.5),
    ])  # fmt: skip
    write_alerts(lake, SIGNALS.name, D3, ETH, [
        alert(at + timedelta(hours=7), ETH, "oi_shock", "high", 4.0),
    ])  # fmt: skip
    write_alerts(lake, SIGNALS.name, D1, SYMBOL, [
        alert(midnight(D1) + timedelta(hours=1), SYMBOL, "oi_shock", "high", 9.9),
    ])  # fmt: skip


def test_signals_filters_newest_first(market: Callable[..., Running], lake: Path) -> None:
    _signals(lake)
    client = market(symbols=(SYMBOL, ETH)).client

    def get(**params: str) -> dict:
        answer = client.get("/signals", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    body = get()  # the last 24 h: D3's alerts of both symbols
    assert body["since"] == "2024-03-10T00:10:00+00:00" and body["rows"] == 4
    assert [(a["symbol"], a["kind"]) for a in body["alerts"]] == [
        (SYMBOL, "liquidation_cascade"), (ETH, "oi_shock"), (SYMBOL, "funding_anomaly"),
        (SYMBOL, "oi_shock"),
    ]  # fmt: skip
    first = body["alerts"][0]
    assert first["ts"] == "2024-03-10T09:00:00.000Z" and first["severity"] == "high"
    assert first["details"] == {"inputs": [5.5, 2.75], "window": "15m"}
    assert first["value"] == 5.5 and first["threshold"] == 2.75
    assert [a["severity"] for a in get(severity="medium")["alerts"]] == ["high", "high", "medium"]
    assert [a["symbol"] for a in get(severity="HIGH", symbol="ethusdt")["alerts"]] == [ETH]
    assert [a["kind"] for a in get(kind="oi_shock,funding_anomaly", symbol=SYMBOL)["alerts"]] == [
        "funding_anomaly", "oi_shock"]  # fmt: skip
    assert get(since="2024-03-10T05:00:00Z")["rows"] == 2  # ts > since: 05:00 itself is out
    older = get(since="2024-03-08", symbol=SYMBOL)
    assert older["rows"] == 4 and older["alerts"][-1]["value"] == 9.9
    assert older["missing_days"] == {SYMBOL: {"2024-03-09": "not in the lake",
                                              "2024-03-11": "not in the lake"}}  # fmt: skip


def test_signals_refusals(market: Callable[..., Running], lake: Path) -> None:
    _signals(lake)
    client = market().client
    answer = client.get("/signals", params={"severity": "critical"})
    assert answer.status_code == 400
    assert answer.json()["detail"] == ("severity='critical': expected one of "
                                       "['low', 'medium', 'high']")  # fmt: skip
    answer = client.get("/signals", params={"since": "2024-02-01"})
    assert answer.status_code == 400
    assert "more than max_alert_lookback_days = 31" in answer.json()["detail"]
    answer = client.get("/signals", params={"since": "last week"})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("since='last week'")
    answer = client.get("/signals", params={"symbol": "DOGEUSDT"})
    assert answer.status_code == 404 and "unknown symbol 'DOGEUSDT'" in answer.json()["detail"]
    assert client.get("/whales/alerts", params={"symbol": "DOGEUSDT"}).status_code == 404


def test_whale_alerts(market: Callable[..., Running], lake: Path) -> None:
    at = midnight(D3)
    write_alerts(lake, WHALE_ALERTS.name, D3, SYMBOL, [
        alert(at + timedelta(hours=3, seconds=7), SYMBOL, "whale_position", "medium", 2.5e7),
        alert(at + timedelta(hours=20), SYMBOL, "whale_alert", "high", 1.2e8),
    ])  # fmt: skip
    client = market().client
    body = client.get("/whales/alerts").json()
    assert [(a["kind"], a["ts"]) for a in body["alerts"]] == [
        ("whale_alert", "2024-03-10T20:00:00.000Z"),
        ("whale_position", "2024-03-10T03:00:07.000Z"),
    ]
    assert body["source"][SYMBOL]["table"] == WHALE_ALERTS.name
    later = client.get("/whales/alerts", params={"since": "2024-03-10T12:00", "symbol": SYMBOL})
    assert later.json()["rows"] == 1


# ---------------------------------------------------------------------- metrics and health


def _samples(service: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = service.client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_seed_metrics_with_route_templates(market: Callable[..., Running], lake: Path) -> None:
    write_oi(lake, D3, SYMBOL)
    write_heatmap(lake, D3, SYMBOL)
    service = market()
    before = _samples(service)
    for _ in range(2):
        assert _oi(service, start="2024-03-10", end="2024-03-11")[0] == 200
    assert _oi(service, "DOGEUSDT")[0] == 404
    assert service.client.get(f"/heatmap/{SYMBOL}").status_code == 200
    assert service.client.get("/signals").status_code == 200
    assert service.client.get("/no/such/path").status_code == 404
    after = _samples(service)

    def moved(name: str, *labels: tuple[str, str]) -> float:
        key = (name, tuple(sorted(labels)))
        return after.get(key, 0.0) - before.get(key, 0.0)

    get = ("method", "GET")
    assert moved("api_requests_total", ("endpoint", OI), get, ("status", "200")) == 2
    assert moved("api_requests_total", ("endpoint", OI), get, ("status", "404")) == 1
    assert moved("api_requests_total", ("endpoint", "other"), get, ("status", "404")) == 1
    assert moved("api_requests_total", ("endpoint", "/signals"), get, ("status", "200")) == 1
    assert moved("api_response_time_seconds_count", ("endpoint", OI)) == 3
    assert moved("api_response_time_seconds_bucket", ("endpoint", OI), ("le", "+Inf")) == 3
    assert moved("data_points_processed_total", ("endpoint", OI)) == 2 * 96
    assert moved("data_points_processed_total", ("endpoint", "/heatmap/{symbol}")) == 72 + 24
    assert moved("btc_assets_api_requests_total", ("endpoint", OI), ("status", "200")) == 2
    endpoints = {dict(labels).get("endpoint") for _, labels in after}
    assert f"/replay/oi/{SYMBOL}" not in endpoints and "/replay/oi/DOGEUSDT" not in endpoints


def test_ready_names_the_newest_market_days(
    market: Callable[..., Running], lake: Path, ready_lake: str
) -> None:
    write_oi(lake, D2, SYMBOL)
    write_oi(lake, D3, SYMBOL)
    ready = market().client.get("/health/ready")
    assert ready.status_code == 200  # informational: the missing market tables do not gate
    market_days = ready.json()["market"]
    assert market_days["gate"] == "checked"
    assert market_days["newest_days"][OPEN_INTEREST.name] == {SYMBOL: "2024-03-10"}
    assert market_days["newest_days"][SIGNALS.name] == {SYMBOL: None}


def test_serve_binds_the_table_gate_for_features_and_market(
    table_gates: TableGates, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from btc_assets.ops import serve as ops_serve
    from btc_assets.settings import load_settings

    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path))
    table_gates.blocked["features_1h", SYMBOL] = {D3: "features_1h.quality failed"}
    features = ops_serve.features_gate(table_gates)
    assert features is not None and ops_serve.features_gate(None) is None
    assert features(SYMBOL, [D2, D3]) == {D3: "features_1h.quality failed"}
    assert table_gates.asked == [("features_1h", SYMBOL, (D2, D3))]
    config = ops_serve.service_config(load_settings(), features, table_gates)
    assert config.table_gate is table_gates and config.market_gate_state == "checked"
    assert config.max_replay_days == 92 and config.max_alert_lookback_days == 31
