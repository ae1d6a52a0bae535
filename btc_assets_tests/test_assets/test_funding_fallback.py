"""The funding fallback: a definite refusal moves to Binance settlements placed on every bar
(the first day of history included); anything else fails the step and falls back to nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from btc_assets.assets.coinglass_funding import NOT_A_REFUSAL, is_refusal
from btc_assets.core.schema import day_bounds
from btc_assets.defs.checks import QUALITY
from btc_assets.defs.partitions import DAILY
from btc_assets.defs.resources import CoinGlassResource
from btc_assets.lake import Lake
from btc_assets.vendors.coinglass import (
    FUNDING_OI_WEIGHT,
    FUNDING_VOL_WEIGHT,
    CoinGlassKeyInvalid,
    CoinGlassPlanError,
)
from btc_assets.vendors.errors import (
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets_tests.test_assets.helpers import (
    evaluations,
    failure_text,
    latest_metadata,
    resources,
    run_range,
)

SYMBOL = "BTCUSDT"
FUNDING = "coinglass_funding"
BAR = timedelta(minutes=15)
UPGRADE_PLAN = {"kind": "error200", "path": "/api/futures/funding-rate/*", "count": -1,
                "code": 401, "msg": "Upgrade plan"}  # fmt: skip
FIRST = DAILY.start.date()  # the first day of history: no partition before it
DAYS = [FIRST + timedelta(days=k) for k in range(3)]


def _with_coinglass(res: dict[str, object], **changes: Any) -> dict[str, object]:
    """The same resources with the CoinGlass client configured otherwise."""
    cg = res["coinglass"]
    assert isinstance(cg, CoinGlassResource)
    fields = {"base_url": cg.base_url, "api_key": cg.api_key, "sandbox": cg.sandbox}
    return {**res, "coinglass": CoinGlassResource(**{**fields, **changes})}


def _in_force(settlements: pl.DataFrame, bar: datetime) -> tuple[float, datetime]:
    """The latest settlement at or before ``bar``, found by hand (the oracle)."""
    before = [(t, r) for t, r in settlements.select("ts", "funding_rate").rows() if t <= bar]
    settled_at, rate = max(before)
    return rate, settled_at


def test_plan_refusal_feeds_every_bar_from_binance_from_the_first_day(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path, sandbox_faults=json.dumps([UPGRADE_PLAN]))
    result = run_range(instance, res, DAYS[0].isoformat(), DAYS[-1].isoformat())
    assert result.success
    lake = Lake(tmp_path / "lake")
    quality = {
        e.partition: e
        for e in evaluations(result)
        if e.asset_key.path[-1] == "bars_15m" and e.check_name == QUALITY
    }
    binance = res["binance"].client()  # type: ignore[attr-defined]
    for day in DAYS:
        bars = pl.read_parquet(lake.day_file("bars_15m", SYMBOL, day))
        assert bars.height == 96
        assert bars["funding_now"].null_count() == 0, day
        assert (bars["funding_source"] == "binance_settlement").all(), day
        assert not bars["funding_now_imputed"].any(), day
        assert quality[day.isoformat()].passed, quality[day.isoformat()].description

        meta = latest_metadata(instance, FUNDING, day)
        assert meta["funding_source"] == "binance_settlement"
        assert "oi-weight" in meta["fallback_reasons"] and "vol-weight" in meta["fallback_reasons"]
        assert "Upgrade plan" in meta["fallback_reasons"]
        assert meta["bars_without_settlement"] == 0
        # The day's 00:00 settlement lives in the partition before (absent on the first day),
        # yet it is the one the first bars use.
        assert meta["binance_settlements"].startswith(f"{day:%Y-%m-%d} 00:00")

        # Point in time: each stored row is the latest real settlement at or before its bar.
        raw = pl.read_parquet(lake.day_file(FUNDING, SYMBOL, day))
        start = day_bounds(day)[0]
        settlements = binance.funding_rate(SYMBOL, start - timedelta(days=1), start + 96 * BAR)
        assert raw["ts"].to_list() == [start + k * BAR for k in range(1, 97)]
        for ts, rate in raw.select("ts", "funding_rate").rows():
            want, settled_at = _in_force(settlements, ts)
            assert rate == want and ts - settled_at < timedelta(hours=8), ts
        assert raw["funding_rate"][0] == _in_force(settlements, start)[0]

    # A one-day fetch of the middle day writes the very same file (24h of look-back suffice).
    alone = resources(tmp_path / "alone", sandbox_faults=json.dumps([UPGRADE_PLAN]))
    day = DAYS[1].isoformat()
    assert run_range(instance, alone, day, day, selection=[FUNDING]).success
    one = Lake(tmp_path / "alone" / "lake").day_file(FUNDING, SYMBOL, DAYS[1]).read_bytes()
    assert one == lake.day_file(FUNDING, SYMBOL, DAYS[1]).read_bytes()


def test_empty_history_is_a_refusal(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    empty = [{"kind": "empty", "path": "/api/futures/funding-rate/*", "count": -1}]
    res = resources(tmp_path, sandbox_faults=json.dumps(empty))
    day = DAYS[1]
    assert run_range(instance, res, day.isoformat(), day.isoformat(), selection=[FUNDING]).success
    meta = latest_metadata(instance, FUNDING, day)
    assert meta["funding_source"] == "binance_settlement"
    assert meta["fallback_reasons"].count(f"no rows for the closed day {day}") == 2
    frame = pl.read_parquet(Lake(tmp_path / "lake").day_file(FUNDING, SYMBOL, day))
    assert frame.height == 96 and (frame["funding_source"] == "binance_settlement").all()


def test_today_without_rows_waits_instead_of_falling_back(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    """An empty answer for today's partial day may be CoinGlass lagging, not a refusal."""
    now = datetime(2024, 5, 2, 10, 7, 30, tzinfo=UTC)
    pinned_clock(now)
    empty = [{"kind": "empty", "path": "/api/futures/funding-rate/*", "count": -1}]
    res = resources(tmp_path, sandbox_faults=json.dumps(empty))
    today = now.date().isoformat()
    assert run_range(instance, res, today, today, selection=[FUNDING]).success
    meta = latest_metadata(instance, FUNDING, now.date())
    assert (meta["funding_source"], meta["fallback_reasons"]) == ("none", "none")
    assert pl.read_parquet(Lake(tmp_path / "lake").day_file(FUNDING, SYMBOL, now.date())).is_empty()


def test_a_day_missing_at_coinglass_comes_from_binance_between_coinglass_days(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """CoinGlass days, a day it has no history for, CoinGlass again: per day, the first
    source that serves it, and funding on every bar of bars_15m across the switches."""
    hole = {"kind": "gap", "path": "/api/futures/funding-rate/*", "day": DAYS[1].isoformat(),
            "start_minute": 0, "minutes": 24 * 60}  # fmt: skip
    res = resources(tmp_path, sandbox_faults=json.dumps([hole]))
    result = run_range(instance, res, DAYS[0].isoformat(), DAYS[-1].isoformat())
    assert result.success
    lake = Lake(tmp_path / "lake")
    expected = {DAYS[0]: "coinglass_oi_weight", DAYS[1]: "binance_settlement",
                DAYS[2]: "coinglass_oi_weight"}  # fmt: skip
    for day, source in expected.items():
        meta = latest_metadata(instance, FUNDING, day)
        assert meta["funding_source"] == source, day
        bars = pl.read_parquet(lake.day_file("bars_15m", SYMBOL, day))
        assert bars.height == 96 and bars["funding_now"].null_count() == 0, day
        assert (bars["funding_source"] == source).all() and not bars["funding_now_imputed"].any()
    assert latest_metadata(instance, FUNDING, DAYS[0])["fallback_reasons"] == "none"
    reasons = latest_metadata(instance, FUNDING, DAYS[1])["fallback_reasons"]
    assert reasons == "; ".join(
        f"{w}-weight: no rows for the closed day {DAYS[1]}" for w in ("oi", "vol")
    )


@pytest.mark.parametrize(
    ("faults", "endpoint", "outcome"),
    [
        ([{"kind": "500", "path": "/api/futures/funding-rate/*", "count": -1}],
         FUNDING_OI_WEIGHT, "HTTP 500"),
        # the OI series refused, the volume series down: still no fallback to Binance
        ([dict(UPGRADE_PLAN, path=FUNDING_OI_WEIGHT),
          {"kind": "503", "path": FUNDING_VOL_WEIGHT, "count": -1}],
         FUNDING_VOL_WEIGHT, "HTTP 503"),
    ],
)  # fmt: skip
def test_transient_failure_fails_the_step_and_falls_back_to_nothing(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    faults: list[dict[str, Any]],
    endpoint: str,
    outcome: str,
) -> None:
    res = _with_coinglass(resources(tmp_path, sandbox_faults=json.dumps(faults)), max_retries=1)
    day = DAYS[1]
    result = run_range(instance, res, day.isoformat(), day.isoformat(), selection=[FUNDING])
    assert not result.success
    text = failure_text(result)
    assert endpoint in text and outcome in text and NOT_A_REFUSAL in text
    assert not Lake(tmp_path / "lake").day_file(FUNDING, SYMBOL, day).exists()
    assert instance.get_materialized_partitions(dg.AssetKey(FUNDING)) == set()


def test_a_rejected_key_is_not_a_refusal(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    res = _with_coinglass(resources(tmp_path), api_key="not-a-sandbox-key")
    day = DAYS[1]
    result = run_range(instance, res, day.isoformat(), day.isoformat(), selection=[FUNDING])
    assert not result.success
    text = failure_text(result)
    assert "CoinGlassKeyInvalid" in text and FUNDING_OI_WEIGHT in text
    assert not Lake(tmp_path / "lake").day_file(FUNDING, SYMBOL, day).exists()


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        (CoinGlassPlanError("coinglass", FUNDING_OI_WEIGHT, status=200, code="401"), True),
        (VendorRefused("coinglass", FUNDING_OI_WEIGHT, status=200), True),
        (VendorError("coinglass", FUNDING_OI_WEIGHT, status=404), True),
        (VendorError("coinglass", FUNDING_OI_WEIGHT, status=400, code="400"), False),
        (VendorUnavailable("coinglass", FUNDING_OI_WEIGHT, status=503), False),
        (VendorUnavailable("coinglass", FUNDING_OI_WEIGHT, status=404), False),
        (VendorRateLimited("coinglass", FUNDING_OI_WEIGHT, status=429), False),
        (VendorResponseError("coinglass", FUNDING_OI_WEIGHT, status=200), False),
        (CoinGlassKeyInvalid("coinglass", FUNDING_OI_WEIGHT, status=401), False),
    ],
)
def test_what_counts_as_a_refusal(error: VendorError, refusal: bool) -> None:
    assert is_refusal(error) is refusal
