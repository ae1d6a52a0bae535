"""`make demo` over 10 days with one bad spot print: blocked exactly where it depends, at
every depth (lake tables, the feature table, DuckDB views, the QA report, BigQuery loads),
and every other day built everywhere. Run through the README's command, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from google.cloud import bigquery

from btc_assets import clock
from btc_assets.defs.day_gate import check_failures
from btc_assets.lake import Lake
from btc_assets_tests.emulators import BigQueryEmulator

SYMBOL = "BTCUSDT"
DAYS = 10
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def as_day(text: str) -> date:
    return date.fromisoformat(text)


def _days_in(con: duckdb.DuckDBPyConnection, view: str) -> set[str]:
    rows = con.execute(
        f'SELECT DISTINCT (ts - INTERVAL 1 MILLISECOND)::DATE FROM "{view}"'
    ).fetchall()
    return {str(d) for (d,) in rows}


def test_one_bad_print_blocks_its_day_at_every_depth_and_nothing_else(
    tmp_path: Path,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    end = clock.today_utc() - timedelta(days=1)
    days = [(end - timedelta(days=i)).isoformat() for i in range(DAYS - 1, -1, -1)]
    bad = days[4]
    # The demo reads history from the archive: the bad print is in the published spot file.
    fault = [{"kind": "bad_ohlc", "path": "/data/spot/*", "day": bad, "start_minute": 60}]
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BTC_ASSETS_", "BIGQUERY_"))},
        "DAGSTER_HOME": str(home),
        "BTC_ASSETS_ENV": "sandbox",
        "BTC_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "BTC_ASSETS_START_DATE": days[0],
        "BTC_ASSETS_SANDBOX_FAULTS": json.dumps(fault),
        "WAREHOUSE": "bigquery",
        "BIGQUERY_PROJECT": bq.project,
        "BIGQUERY_DATASET": bq_dataset,
        "BIGQUERY_API_ENDPOINT": bq.url,
    }
    demo = subprocess.run(
        [sys.executable, "-m", "btc_assets.ops.demo", "--days", str(DAYS)],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"spot_klines_15m: 1 day(s): {bad}" in demo.stdout
    assert f"bars_15m: 1 day(s): {bad}" in demo.stdout
    assert f"bq_spot_klines: 1 day(s): {bad}" in demo.stdout

    everything, without_bad = set(days), set(days) - {bad}
    # The lake: the raw day is stored (and failed its gate); nothing is derived from it.
    lake = Lake(tmp_path / "data" / "lake")
    stored = {n: {d.isoformat() for d in lake.days_present(n, SYMBOL)}
              for n in lake.tables()}  # fmt: skip
    assert stored["binance_spot_klines_1m"] == everything
    assert stored["spot_klines_15m"] == without_bad
    assert stored["bars_15m"] == without_bad
    assert stored["perp_klines_15m"] == everything  # the perp side does not depend on it

    # Dagster: the blocked pairs show with their cause, as failed gates.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        for name in ("spot_klines_15m", "bars_15m"):
            failed = check_failures(instance, [dg.AssetKey(name)], [as_day(d) for d in days])
            assert list(failed) == [as_day(bad)], name
            assert "blocked, not built" in failed[as_day(bad)][0]
            assert "ohlc_violations" in failed[as_day(bad)][0]  # the cause, down the chain

    # DuckDB: every view holds the nine good days and not the bad one.
    con = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    assert _days_in(con, "binance_spot_klines_1m") == without_bad
    assert _days_in(con, "spot_klines_15m") == without_bad
    assert _days_in(con, "bars_15m") == without_bad
    assert _days_in(con, "binance_perp_klines_1m") == everything

    # The QA report names the bad day as left out.
    report = json.loads((tmp_path / "data" / "reports" / "p1_qa_core.json").read_text())
    assert f"BTCUSDT {bad}" in report["left_out_days"]  # symbol and day

    # BigQuery: loaded everywhere except the blocked day.
    def loaded(table: str) -> set[str]:
        rows = bq_client.query(
            f"SELECT DISTINCT DATE(TIMESTAMP_SUB(ts, INTERVAL 1 MILLISECOND)) AS d "
            f"FROM `{bq.project}.{bq_dataset}.{table}`"
        ).result()
        return {str(row["d"]) for row in rows}

    assert loaded("spot_klines") == without_bad
    assert loaded("bars_15m") == without_bad
    assert loaded("perp_klines") == everything
