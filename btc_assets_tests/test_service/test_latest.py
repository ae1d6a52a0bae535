"""GET /predict/latest: the newest usable features_1h row, never one from a blocked day, a
file that does not verify, or the other env."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from btc_assets.lake import Lake
from btc_assets_tests.test_service.conftest import (
    DAY,
    FEATURES,
    SYMBOL,
    Boosters,
    Gates,
    Running,
    features_day,
    flip_bytes,
    row_inputs,
    save,
    train,
    write_day,
)

PREVIOUS = DAY - timedelta(days=1)


def _latest(service: Running, symbol: str = SYMBOL) -> dict:
    answer = service.client.get("/predict/latest", params={"symbol": symbol})
    body = answer.json()
    assert body["model_version"] == answer.headers["x-model-version"] or (
        body["model_version"] is None and answer.headers["x-model-version"] == "none"
    )
    return {"status": answer.status_code, **body}


def test_predicts_on_the_newest_row(
    serve: Callable[..., Running], ready_lake: str, boosters: Boosters
) -> None:
    body = _latest(serve(), symbol="btcusdt")
    assert body["status"] == 200, body
    assert body["symbol"] == SYMBOL
    assert body["ts"] == "2024-03-11T00:00:00+00:00"  # the last bar of DAY closes at DAY+1 00:00
    assert body["features_day"] == DAY.isoformat()
    assert body["input_age_seconds"] == 600.0 and body["stale"] is False
    assert body["model_version"] == ready_lake and body["gate"] == "checked"
    x = row_inputs(features_day(DAY))  # its funding_rate is the day's only non-null one
    assert body["prediction"] == {
        "ret_1h_next": float(boosters.regressor.inplace_predict(x)[0]),
        "p_up": float(boosters.classifier.inplace_predict(x)[0]),
    }


def test_unknown_or_missing_symbol(serve: Callable[..., Running], ready_lake: str) -> None:
    service = serve()
    unknown = _latest(service, "DOGEUSDT")
    assert unknown["status"] == 404
    assert unknown["detail"] == "unknown symbol 'DOGEUSDT': configured symbols are ['BTCUSDT']"
    missing = service.client.get("/predict/latest")
    assert missing.status_code == 422
    assert "symbol is required" in missing.json()["detail"]


def test_a_blocked_day_falls_back_to_the_previous_good_one(
    serve: Callable[..., Running], ready_lake: str, gates: Gates
) -> None:
    gates.blocked[SYMBOL] = {DAY: "features_1h.quality failed: coverage 50%"}
    body = _latest(serve())
    assert body["status"] == 200
    assert body["features_day"] == PREVIOUS.isoformat()
    assert body["ts"] == "2024-03-10T00:00:00+00:00"
    assert body["skipped_days"] == {DAY.isoformat(): "blocked: features_1h.quality failed: "
                                    "coverage 50%"}  # fmt: skip


def test_503_when_every_recent_day_is_blocked(
    serve: Callable[..., Running], ready_lake: str, gates: Gates
) -> None:
    gates.blocked[SYMBOL] = {DAY: "bad", PREVIOUS: "worse"}
    body = _latest(serve())
    assert body["status"] == 503
    assert body["detail"] == (
        f"no usable features_1h row in the newest 2 day(s): {DAY}: blocked: bad; "
        f"{PREVIOUS}: blocked: worse"
    )
    assert body["input_age_seconds"] is None


def test_a_day_that_does_not_verify_is_not_served(
    serve: Callable[..., Running], ready_lake: str, lake: Path
) -> None:
    service = serve()
    assert _latest(service)["features_day"] == DAY.isoformat()
    flip_bytes(Lake(lake).day_file("features_1h", SYMBOL, DAY))  # rots after it was served
    service.wait_for(lambda: _latest(service)["features_day"] == PREVIOUS.isoformat())
    body = _latest(service)
    assert body["skipped_days"][DAY.isoformat()].startswith("does not verify: ")
    assert "sha256 mismatch" in body["skipped_days"][DAY.isoformat()]


def test_a_day_written_in_the_other_env_is_not_served(
    serve: Callable[..., Running], lake: Path, boosters: Boosters
) -> None:
    save(lake, boosters)
    write_day(lake, DAY, env="live")
    body = _latest(serve())
    assert body["status"] == 503
    assert "written in live env, this is sandbox" in body["detail"]


def test_never_built_and_no_model(serve: Callable[..., Running], lake: Path) -> None:
    service = serve()
    assert _latest(service)["detail"].startswith("no model promoted yet")
    save(lake, train())
    service.wait_for(lambda: _latest(service)["status"] == 503 and "never built" in str(
        _latest(service)["detail"]))  # fmt: skip


@pytest.mark.parametrize("extra", ["open_interest_zscore"])
def test_409_when_the_model_needs_a_column_the_table_lacks(
    serve: Callable[..., Running], lake: Path, extra: str
) -> None:
    features = (*FEATURES, extra)
    write_day(lake, DAY)
    save(lake, train(features), features=features)
    service = serve()
    body = _latest(service)
    assert body["status"] == 409
    assert body["columns"] == [f"{extra} (no such column)"]
    assert extra in body["detail"] and body["model_version"] is not None
    ready = service.client.get("/health/ready").json()
    assert any(extra in reason for reason in ready["reasons"])
