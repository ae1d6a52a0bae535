"""``btc-assets``: verify reports a known gap, corruption and window; reset changes nothing
unless told yes; sandbox serves until Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pytest
from websockets.sync.client import connect as websocket_connect

from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import FRED_SERIES, FUNDING, PERP_1M, SPOT_1M
from btc_assets.lake import Lake
from btc_assets.ops.cli import main
from btc_assets.sandbox.credentials import SANDBOX_TELEGRAM_CHAT_ID, SANDBOX_TELEGRAM_TOKEN
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import BinanceClient
from btc_assets_tests.test_assets.helpers import lake_digest, resources, run_range

FUNDING_KEY = dg.AssetKey(FUNDING.name)
DAYS = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
GAP = [{"kind": "gap", "path": "/fapi/v1/klines", "day": "2024-01-02", "start_minute": 600,
        "minutes": 30}]  # fmt: skip


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings and DAGSTER_HOME of a throwaway project."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BTC_ASSETS_ENV", "sandbox")
    return tmp_path / "data"


def write_days(
    root: Path, days: list[date], faults: list[dict[str, object]] | None = None,
    now_ms: int | None = None,
) -> Lake:  # fmt: skip
    """Spot and perp 1m days and funding from the sandbox (with ``faults``) into the lake."""
    lake = Lake(root / "lake")
    transport = SandboxTransport(faults=json.dumps(faults or []), now_ms=now_ms)
    client = BinanceClient("http://spot.invalid", "http://fapi.invalid", transport=transport)
    made = {"env": "sandbox"}  # what the raw assets record; verify leaves out other envs
    for day in days:
        start, end = day_bounds(day)
        lake.write_day(
            SPOT_1M.name, "BTCUSDT", day, client.spot_klines("BTCUSDT", "1m", start, end), made
        )
        lake.write_day(PERP_1M.name, "BTCUSDT", day,
                       client.futures_klines("BTCUSDT", "1m", start, end), made)  # fmt: skip
        lake.write_day(
            FUNDING.name, "BTCUSDT", day, client.funding_rate("BTCUSDT", start, end), made
        )
    return lake


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["verify", *args])
    return code, capsys.readouterr().out


# --- verify ------------------------------------------------------------------------------


def test_verify_reports_the_known_gap_and_fails(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_days(data_dir, DAYS, GAP)
    code, out = verify(capsys, "--table", PERP_1M.name)
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith(PERP_1M.name))
    # 3 days of 1440 bars, 30 missing: 4290 / 4320
    assert row.split()[1:6] == ["3/3", "99.306%", "1", "30", "bars"]
    assert "2024-01-04 00:00" in row  # the last closed bar of 2024-01-03
    assert "1 gap(s): 2024-01-02 10:01 .. 2024-01-02 10:30 (30 bars)" in out


def test_verify_passes_a_complete_table_and_counts_missing_days_as_gaps(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_days(data_dir, DAYS, GAP)
    code, out = verify(capsys, "--table", SPOT_1M.name)
    assert code == 0 and "every table is complete" in out and "100.000%" in out
    lake = write_days(data_dir, [date(2024, 1, 5)])  # 2024-01-04 never fetched
    code, out = verify(capsys, "--table", SPOT_1M.name)
    assert code == 1 and "4/5" in out
    assert "1 day(s) missing: 2024-01-04" in out
    assert "2024-01-04 00:01 .. 2024-01-05 00:00 (1440 bars)" in out
    assert lake.days_present(SPOT_1M.name, "BTCUSDT")[-1] == date(2024, 1, 5)


def test_verify_reports_what_is_not_a_committed_day_of_this_env(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = write_days(data_dir, DAYS)
    directory = lake.day_dir(SPOT_1M.name, "BTCUSDT", DAYS[0])
    (directory / ".part-20240101.parquet.99.dead.tmp").write_bytes(b"half a write")
    frame = pl.read_parquet(lake.day_file(SPOT_1M.name, "BTCUSDT", DAYS[2]))
    lake.write_day(SPOT_1M.name, "BTCUSDT", DAYS[2], frame, {"env": "live"})
    code, out = verify(capsys, "--table", SPOT_1M.name)
    assert code == 1
    assert "2024-01-01 has 1 file(s) no manifest names" in out and "dead.tmp" in out
    assert "2024-01-03 written in live env, this is sandbox" in out


def test_verify_names_a_corrupt_day(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = write_days(data_dir, DAYS)
    day_file = lake.day_file(SPOT_1M.name, "BTCUSDT", DAYS[1])
    raw = bytearray(day_file.read_bytes())
    raw[100] ^= 0xFF  # same size, different content
    day_file.write_bytes(bytes(raw))
    code, out = verify(capsys, "--table", SPOT_1M.name)
    assert code == 1 and f"{SPOT_1M.name} BTCUSDT: 2024-01-02 corrupt" in out
    assert "sha256 mismatch" in out and str(day_file) in out


def test_verify_days_is_a_window_ending_yesterday(
    data_dir: Path, capsys: pytest.CaptureFixture[str], pinned_clock: Callable[[datetime], None]
) -> None:
    now = datetime(2024, 5, 2, 10, 7, 30, tzinfo=UTC)
    pinned_clock(now)
    yesterday = now.date() - timedelta(days=1)
    recent = [yesterday - timedelta(days=i) for i in (2, 1, 0)]
    write_days(data_dir, recent, now_ms=int(now.timestamp() * 1000))
    code, out = verify(capsys, "--table", SPOT_1M.name, "--days", "3")
    assert code == 0 and "3/3" in out
    lag_row = next(line for line in out.splitlines() if line.startswith(SPOT_1M.name))
    # The newest bar closes at midnight, 10 h 07 min before now.
    assert "2024-05-02 00:00" in lag_row and "10:07" in lag_row, lag_row
    code, out = verify(capsys, "--table", SPOT_1M.name, "--days", "5")
    assert code == 1 and "3/5" in out and "2 day(s) missing" in out


def test_verify_counts_funding_events_per_day(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_days(data_dir, [*DAYS, date(2024, 1, 5)])  # 2024-01-04 never fetched
    code, out = verify(capsys, "--table", FUNDING.name)
    row = next(line for line in out.splitlines() if line.startswith(FUNDING.name))
    # 8h settlements: 3 a day, 15 expected over 5 days, 12 present; longest wait 1 day 8 h
    assert code == 1 and row.split()[1:6] == ["4/5", "80.000%", "1", "1d", "08:00"]
    assert "1 day(s) short of events: 2024-01-04 (0/3)" in out


def test_verify_usage_errors_and_an_empty_lake(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(capsys)
    assert code == 1 and "table(s) with no days in the lake" in out
    assert main(["verify", "--table", "nope"]) == 2
    assert "unknown table(s) ['nope']" in capsys.readouterr().err
    assert main(["verify", "--days", "0"]) == 2


def test_help_points_to_dagsters_backfill_commands_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--help"], ["verify", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "dagster asset materialize" in out and "--partition-range" in out
    assert "dagster job backfill" in out and "Exit status: 0" in out


# --- reset -------------------------------------------------------------------------------


@pytest.fixture
def materialized(data_dir: Path) -> Path:
    """A lake, a report, a DuckDB file, and Dagster history: two funding days materialized
    through Dagster, with their checks."""
    with dg.DagsterInstance.get() as instance:
        result = run_range(instance, resources(data_dir), "2024-01-01", "2024-01-02",
                           selection=[FUNDING.name])  # fmt: skip
        assert result.success
        assert instance.get_materialized_partitions(FUNDING_KEY) == {
            "2024-01-01",
            "2024-01-02",
        }
    (data_dir / "reports").mkdir(parents=True)
    (data_dir / "reports" / "p1_qa_core.json").write_text("{}")
    (data_dir / "warehouse.duckdb").write_bytes(b"duckdb")
    return data_dir


def materialized_partitions() -> set[str]:
    with dg.DagsterInstance.get() as instance:
        return instance.get_materialized_partitions(FUNDING_KEY)


@pytest.mark.parametrize("answer", ["n\n", "\n", "whatever\n", ""])
def test_reset_without_yes_changes_nothing(
    materialized: Path, answer: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    before = lake_digest(materialized)
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    assert main(["reset"]) == 1
    out = capsys.readouterr().out
    assert f"{materialized / 'lake'}/" in out and "warehouse.duckdb" in out
    assert "reports" in out and FUNDING.name in out and "Nothing was changed." in out
    assert lake_digest(materialized) == before
    assert materialized_partitions() == {"2024-01-01", "2024-01-02"}


@pytest.mark.parametrize("argv", [["reset"], ["reset", "-f"]])
def test_reset_with_yes_or_force_wipes_lake_and_history(
    materialized: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n" if argv == ["reset"] else ""))
    assert main(argv) == 0
    assert not any((materialized / p).exists() for p in ("lake", "reports", "warehouse.duckdb"))
    assert materialized_partitions() == set()
    with dg.DagsterInstance.get() as instance:
        assert FUNDING_KEY not in instance.get_asset_keys()
    assert "Deleted 3 path(s) and the history of 1 asset(s)" in capsys.readouterr().out
    assert main(["reset", "-f"]) == 0  # nothing left: says so
    assert "Nothing to reset" in capsys.readouterr().out


# --- sandbox -----------------------------------------------------------------------------


def test_sandbox_serves_until_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "BTC_ASSETS_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "btc_assets.ops.cli", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline()]  # blocks until it listens (or dies: then empty)
        assert lines[0].startswith("sandbox vendor on http://127.0.0.1:"), lines
        base_url = lines[0].split()[3]
        with httpx.Client(base_url=base_url, timeout=5) as http:
            klines = http.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m",
                                                        "limit": 2})  # fmt: skip
            sent = http.post(f"/bot{SANDBOX_TELEGRAM_TOKEN}/sendMessage",
                             json={"chat_id": SANDBOX_TELEGRAM_CHAT_ID, "text": "up"})  # fmt: skip
        assert klines.status_code == 200 and len(klines.json()) == 2
        assert sent.json()["ok"] is True
        futures_ws = lines[0].split()[-5].rstrip(";")  # "... websocket on ws://...; Ctrl-C"
        assert futures_ws.startswith("ws://127.0.0.1:") and futures_ws.endswith("/market")
        with websocket_connect(f"{futures_ws}/stream?streams=btcusdt@kline_1m") as ws:
            message = json.loads(ws.recv(timeout=5))  # a forming update comes every 250 ms
        assert message["stream"] == "btcusdt@kline_1m" and message["data"]["e"] == "kline"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=10) == 0, proc.stderr.read()  # type: ignore[union-attr]
        lines += proc.stdout.readlines()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]
    assert f"export BINANCE_SPOT_BASE_URL={base_url}\n" in lines
    assert f"export BINANCE_FUTURES_STREAM_URL={futures_ws}\n" in lines
    assert f"export TELEGRAM_BASE_URL={base_url}\n" in lines
    assert lines[-1] == "sandbox stopped\n"


def test_verify_reads_published_tables_per_series_and_names_a_contract_break(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # FRED rows stored by when they became known: one series id per lake name, no expected
    # count (a day may publish nothing); a row known before its period began breaks it.
    lake = Lake(data_dir / "lake")
    made = {"env": "sandbox"}
    day = date(2024, 1, 3)
    known = datetime(2024, 1, 3, 6, tzinfo=UTC)
    good = pl.DataFrame(
        {"symbol": ["DGS10"], "ts": [known], "event_time": [datetime(2024, 1, 2, tzinfo=UTC)],
         "available_at": [known], "value": [4.0], "missing": [False],
         "vintage_date": [date(2024, 1, 2)]},
        schema=dict(FRED_SERIES.schema),
    )  # fmt: skip
    lake.write_day(FRED_SERIES.name, "DGS10", day, good, made)
    early = good.with_columns(
        symbol=pl.lit("DTWEXBGS"), event_time=pl.lit(known + timedelta(1))
    ).cast(dict(FRED_SERIES.schema))
    lake.write_day(FRED_SERIES.name, "DTWEXBGS", day, early, made)
    code, out = verify(capsys, "--table", FRED_SERIES.name)
    assert code == 1
    assert "-- DGS10" in out and "-- DTWEXBGS" in out
    assert "fred_series DTWEXBGS: 2024-01-03 breaks the contract: published_early=1" in out
    assert "fred_series DGS10: 2024-01-03 breaks" not in out
