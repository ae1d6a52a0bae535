"""/health/live answers while the process does; /health/ready only when a model serves and
every symbol's newest usable features are fresh, listing every reason when not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from btc_assets_tests.test_service.conftest import DAY, NOW, SYMBOL, Gates, Running, write_day


def test_ready_with_a_model_and_fresh_features(
    serve: Callable[..., Running], ready_lake: str
) -> None:
    client = serve().client
    live = client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "live", "model_version": ready_lake}
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["reasons"] == []
    assert body["model_version"] == ready_lake == ready.headers["x-model-version"]
    assert body["gate"] == "checked" and body["last_refusal"] is None
    assert body["input_age_seconds"] == 600.0  # NOW is 10 min after the last bar's close
    assert body["symbols"][SYMBOL]["features_day"] == DAY.isoformat()


def test_not_ready_without_a_model_but_live(serve: Callable[..., Running], lake: Path) -> None:
    write_day(lake, DAY)
    client = serve().client
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["reasons"] == ["no model promoted yet: materialize baseline_model"]
    assert ready.json()["model_version"] is None


def test_not_ready_when_the_features_are_stale(
    serve: Callable[..., Running], ready_lake: str
) -> None:
    service = serve()
    service.clock.at = NOW + timedelta(hours=3)
    ready = service.client.get("/health/ready")
    assert ready.status_code == 503
    (reason,) = ready.json()["reasons"]
    assert reason.startswith(f"{SYMBOL}: newest usable features_1h row closed at 2024-03-11T00:00")
    assert "190 min ago, older than the 120 min allowed" in reason
    latest = service.client.get(f"/predict/latest?symbol={SYMBOL}")
    assert latest.status_code == 200  # still answered, and said to be stale
    assert latest.json()["stale"] is True
    assert latest.json()["input_age_seconds"] == 3 * 3600 + 600


def test_not_ready_when_the_gate_blocks_every_recent_day(
    serve: Callable[..., Running], ready_lake: str, gates: Gates
) -> None:
    gates.blocked[SYMBOL] = {
        DAY: "features_1h.quality failed: coverage 50%",
        DAY - timedelta(days=1): "features_1h.quality failed: gap",
    }
    ready = serve().client.get("/health/ready")
    assert ready.status_code == 503
    (reason,) = ready.json()["reasons"]
    assert "blocked: features_1h.quality failed: coverage 50%" in reason
    assert ready.json()["symbols"][SYMBOL]["skipped_days"] == {
        DAY.isoformat(): "blocked: features_1h.quality failed: coverage 50%",
        (DAY - timedelta(days=1)).isoformat(): "blocked: features_1h.quality failed: gap",
    }


def test_every_symbol_counts_and_no_gate_is_said_so(
    serve: Callable[..., Running], ready_lake: str
) -> None:
    ready = serve(symbols=(SYMBOL, "ETHUSDT"), gate=None).client.get("/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["gate"] == "unchecked"
    (reason,) = body["reasons"]
    assert reason.startswith("ETHUSDT: features_1h never built for ETHUSDT")
    assert body["symbols"][SYMBOL]["input_age_seconds"] == 600.0


def test_a_gate_that_cannot_be_asked_keeps_the_last_row_but_is_not_ready(
    serve: Callable[..., Running], ready_lake: str, gates: Gates
) -> None:
    service = serve()
    assert service.client.get("/health/ready").status_code == 200
    gates.error = "could not connect to server: Connection refused"
    service.wait_for(lambda: service.client.get("/health/ready").status_code == 503)
    (reason,) = service.client.get("/health/ready").json()["reasons"]
    assert reason == f"{SYMBOL}: refresh failed: could not connect to server: Connection refused"
    latest = service.client.get("/predict/latest", params={"symbol": SYMBOL})
    assert latest.status_code == 200 and latest.json()["features_day"] == DAY.isoformat()
    gates.error = None
    service.wait_for(lambda: service.client.get("/health/ready").status_code == 200)
