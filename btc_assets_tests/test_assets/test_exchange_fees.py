"""exchange_fees end to end: today's snapshot in basis points with provenance, a past day
kept or recorded as "no snapshot" without a request, missing credentials skipped (run not
failed), Binance's refusals as null rows with the reason, a transient failure failing the
step, and the key, secret and signatures absent from logs, events, metadata and the lake."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from btc_assets.assets.exchange_fees import NO_CREDENTIALS, exchange_fees, no_snapshot_note
from btc_assets.core.tables import EXCHANGE_FEES
from btc_assets.defs import definitions
from btc_assets.defs.checks import QUALITY
from btc_assets.defs.resources import BinanceAccountResource
from btc_assets.lake import Lake
from btc_assets.sandbox.binance_account import commission
from btc_assets.sandbox.credentials import SANDBOX_BINANCE_API_KEY, SANDBOX_BINANCE_API_SECRET
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.settings import load_settings
from btc_assets.vendors import binance_signed
from btc_assets_tests.test_assets.helpers import (
    build_catalog,
    evaluations,
    failure_text,
    lake_digest,
    latest_metadata,
    resources,
    run_range,
)

NOW = datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
TODAY, YESTERDAY = "2024-03-05", "2024-03-04"
SYMBOLS = ("BTCUSDT", "1000PEPEUSDT")
BASKET = "BTCUSDT,1000PEPEUSDT:spot=PEPEUSDT:coin=PEPE"
FAKE_KEY = "FAKEKEYp3Xq8Lm2Vz7Rt5Nw1Bc9Hd4Jf6Gk0Ya"
FAKE_SECRET = "FAKESECRETs9Dq2Wm7Lx4Tz1Vr8Nb5Hc3Kf6Jg0"


@pytest.fixture(autouse=True)
def _today(pinned_clock: Callable[[datetime], None]) -> None:
    pinned_clock(NOW)  # "today" for the asset, the client's timestamps and the sandbox


def materialize(
    instance: dg.DagsterInstance, res: dict[str, Any], day: str, end: str | None = None
) -> dg.ExecuteInProcessResult:
    return run_range(instance, res, day, end or day, [EXCHANGE_FEES.name])


def fee_resources(tmp_path: Path, faults: str = "", **account: Any) -> dict[str, Any]:
    """The project's sandbox resources; ``account`` overrides BinanceAccountResource fields."""
    res = resources(tmp_path, symbols=BASKET, sandbox_faults=faults)
    current: Any = res["binance_account"]
    fields = {name: getattr(current, name) for name in (
        "futures_base_url", "api_key", "api_secret", "sandbox")}  # fmt: skip
    res["binance_account"] = BinanceAccountResource(**{**fields, **account})
    return res


def stored(tmp_path: Path, symbol: str, day: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    read = Lake(tmp_path / "lake").read_days(EXCHANGE_FEES.name, symbol, [date.fromisoformat(day)])
    (written,) = read.committed.values()
    return read.frame.collect(), dict(written.provenance)


def logs(instance: dg.DagsterInstance, run_id: str, level: int) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.level == level]


def verdict(result: dg.ExecuteInProcessResult, day: str) -> dg.AssetCheckEvaluation:
    (found,) = [e for e in evaluations(result) if e.check_name == QUALITY and e.partition == day]
    return found


class NoRequests:
    """Fails the test if the asset builds an account client (so no request can be sent)."""

    def __call__(self, *_: Any) -> Any:
        raise AssertionError("a past day must not ask Binance")


# --- today --------------------------------------------------------------------------------


def test_today_takes_one_snapshot_per_symbol_in_basis_points(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    result = materialize(instance, fee_resources(tmp_path), TODAY)
    assert result.success
    for symbol in SYMBOLS:
        frame, provenance = stored(tmp_path, symbol, TODAY)
        rates = commission(symbol)
        assert frame.height == 1 and frame.schema == EXCHANGE_FEES.schema
        row = frame.row(0, named=True)
        assert row["maker_bps"] == float(Decimal(rates["makerCommissionRate"]) * 10_000)
        assert row["taker_bps"] == float(Decimal(rates["takerCommissionRate"]) * 10_000)
        assert (row["source"], row["note"]) == ("commissionRate", None)
        assert NOW <= row["ts"] < NOW + timedelta(minutes=1)  # when it was taken
        assert provenance["env"] == "sandbox" and provenance["snapshot"] is True
        assert provenance["endpoint"] == "/fapi/v1/commissionRate"
        assert provenance["host"] == "sandbox.fapi.binance.invalid"  # the sandbox's URL
        assert provenance["closed"] is False
    pepe = stored(tmp_path, "1000PEPEUSDT", TODAY)[0].row(0, named=True)
    assert (pepe["maker_bps"], pepe["taker_bps"]) == (1.8, 4.5)  # exact, from "0.00018"
    meta = latest_metadata(instance, EXCHANGE_FEES.name, TODAY)
    assert meta["dagster/row_count"] == 2 and meta["snapshot"] == "taken"
    assert meta["run_http_requests"] == 2 and "lake_path" in meta and "preview" in meta
    assert [c.name for c in meta["dagster/column_schema"].columns] == list(EXCHANGE_FEES.schema)
    assert verdict(result, TODAY).passed


def test_a_past_day_without_a_snapshot_gets_null_fees_and_a_note_and_no_request(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BinanceAccountResource, "client", NoRequests())
    result = materialize(instance, fee_resources(tmp_path), "2024-03-01", YESTERDAY)
    assert result.success
    frame, provenance = stored(tmp_path, "BTCUSDT", "2024-03-02")
    assert frame.row(0) == ("BTCUSDT", datetime(2024, 3, 3, tzinfo=UTC), None, None, None,
                            no_snapshot_note(date(2024, 3, 2)))  # fmt: skip
    assert "only the current rate" in frame["note"][0]
    assert provenance["snapshot"] is False and provenance["source"] == "none"
    check = verdict(result, "2024-03-02")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN  # shown, no block
    assert latest_metadata(instance, EXCHANGE_FEES.name, YESTERDAY)["run_http_requests"] == 0


def test_a_stored_snapshot_is_kept_once_its_day_is_past(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pinned_clock: Callable[[datetime], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res = fee_resources(tmp_path)
    assert materialize(instance, res, TODAY).success
    before = lake_digest(tmp_path / "lake")
    pinned_clock(NOW + timedelta(days=1))  # TODAY is now yesterday: it cannot be fetched
    monkeypatch.setattr(BinanceAccountResource, "client", NoRequests())
    assert materialize(instance, res, TODAY).success
    assert lake_digest(tmp_path / "lake") == before
    assert latest_metadata(instance, EXCHANGE_FEES.name, TODAY)["snapshot"] == "kept"


def test_a_range_fetches_only_today(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    result = materialize(instance, fee_resources(tmp_path), "2024-03-03", TODAY)
    assert result.success
    assert stored(tmp_path, "BTCUSDT", TODAY)[0]["maker_bps"][0] == 2.0
    assert stored(tmp_path, "BTCUSDT", YESTERDAY)[0]["maker_bps"].is_null().all()


def test_duckdb_serves_the_fee_table_as_a_view(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = fee_resources(tmp_path)
    assert materialize(instance, res, YESTERDAY, TODAY).success
    assert build_catalog(instance, res).success
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT symbol, maker_bps, taker_bps, note IS NULL FROM exchange_fees ORDER BY symbol, ts"
    ).fetchall()
    assert rows == [("1000PEPEUSDT", None, None, False), ("1000PEPEUSDT", 1.8, 4.5, True),
                    ("BTCUSDT", None, None, False), ("BTCUSDT", 2.0, 5.0, True)]  # fmt: skip


# --- no credentials -------------------------------------------------------------------------


def test_live_secrets_are_env_vars_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    live = replace(load_settings(), env="live")
    secrets = definitions._secrets(live)
    assert secrets["binance_key"] is None and secrets["binance_secret"] is None
    monkeypatch.setenv("BINANCE_API_KEY", FAKE_KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", FAKE_SECRET)
    secrets = definitions._secrets(live)
    assert secrets["binance_key"] == dg.EnvVar("BINANCE_API_KEY")
    assert secrets["binance_secret"] == dg.EnvVar("BINANCE_API_SECRET")


def test_missing_credentials_in_live_skip_with_a_warning_and_do_not_fail(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    live = replace(load_settings(), env="live", data_dir=tmp_path, symbols=(
        load_settings().symbols))  # fmt: skip
    res = definitions.build_resources(live)
    only = {"dataset": res["dataset"], "binance_account": res["binance_account"]}
    result = dg.materialize([exchange_fees], instance=instance, resources=only,
                            partition_key=TODAY, raise_on_error=False)  # fmt: skip
    assert result.success  # no request could even be sent: live hosts are not reachable here
    frame, provenance = stored(tmp_path, "BTCUSDT", TODAY)
    assert frame["note"].to_list() == [NO_CREDENTIALS] and frame["maker_bps"].is_null().all()
    assert NO_CREDENTIALS == "credentials not set (BINANCE_API_KEY, BINANCE_API_SECRET)"
    assert provenance["env"] == "live" and provenance["snapshot"] is False
    (warning,) = [w for w in logs(instance, result.run_id, logging.WARNING) if "fee" in w]
    assert "BINANCE_API_KEY and BINANCE_API_SECRET are not both set" in warning
    assert latest_metadata(instance, EXCHANGE_FEES.name, TODAY)["skipped"].startswith(
        NO_CREDENTIALS
    )
    # The next run finds the day's row and leaves it: nothing churns every live interval.
    before = lake_digest(tmp_path / "lake")
    again = dg.materialize([exchange_fees], instance=instance, resources=only,
                           partition_key=TODAY, raise_on_error=False)  # fmt: skip
    assert again.success and lake_digest(tmp_path / "lake") == before


def test_a_snapshot_taken_today_stays_when_the_credentials_go(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    assert materialize(instance, fee_resources(tmp_path), TODAY).success
    before = lake_digest(tmp_path / "lake")
    result = materialize(instance, fee_resources(tmp_path, api_key=None), TODAY)
    assert result.success and lake_digest(tmp_path / "lake") == before
    meta = latest_metadata(instance, EXCHANGE_FEES.name, TODAY)
    assert meta["snapshot"] == "kept" and meta["not_refreshed"] == NO_CREDENTIALS


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "code", "setting"),
    [({"api_key": FAKE_KEY}, -2015, "BINANCE_API_KEY"),
     ({"api_secret": FAKE_SECRET}, -1022, "BINANCE_API_SECRET")],
)  # fmt: skip
def test_a_refusal_is_a_null_row_with_the_reason_and_the_run_succeeds(
    tmp_path: Path, instance: dg.DagsterInstance, account: dict[str, str], code: int, setting: str
) -> None:
    result = materialize(instance, fee_resources(tmp_path, **account), TODAY)
    assert result.success
    for symbol in SYMBOLS:
        frame, provenance = stored(tmp_path, symbol, TODAY)
        note = frame["note"][0]
        assert frame["maker_bps"].is_null().all() and frame["source"].is_null().all()
        assert f"code {code}" in note and setting in note and symbol in note
        assert "timestamp" not in note and provenance["snapshot"] is False
    (error,) = logs(instance, result.run_id, logging.ERROR)
    assert "refused every symbol" in error and setting in error
    meta = latest_metadata(instance, EXCHANGE_FEES.name, TODAY)
    assert meta["refused"] == "1000PEPEUSDT, BTCUSDT"
    assert verdict(result, TODAY).severity == dg.AssetCheckSeverity.WARN


def test_a_refusal_keeps_an_earlier_snapshot_of_the_day(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    assert materialize(instance, fee_resources(tmp_path), TODAY).success
    before = lake_digest(tmp_path / "lake")
    assert materialize(instance, fee_resources(tmp_path, api_key=FAKE_KEY), TODAY).success
    assert lake_digest(tmp_path / "lake") == before
    meta = latest_metadata(instance, EXCHANGE_FEES.name, TODAY)
    # Each symbol's reason names it, so they differ: by_symbol holds them.
    assert meta["snapshot"] == "kept" and "-2015" in meta["by_symbol"]["BTCUSDT"]["not_refreshed"]


def test_a_transient_failure_fails_the_step_and_writes_nothing(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    faults = json.dumps([{"kind": "503", "path": "/fapi/v1/commissionRate", "count": -1}])
    result = materialize(instance, fee_resources(tmp_path, faults, max_retries=1), TODAY)
    assert not result.success
    text = failure_text(result)
    assert "HTTP 503" in text and "not a refusal" in text
    assert not (tmp_path / "lake" / EXCHANGE_FEES.name).exists()


# --- secrets --------------------------------------------------------------------------------


@contextmanager
def live_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, secret: str, faults: str = "[]"
) -> Iterator[dict[str, Any]]:
    """Live-mode resources (secrets through dg.EnvVar) pointed at a served sandbox."""
    monkeypatch.setenv("BINANCE_API_KEY", key)
    monkeypatch.setenv("BINANCE_API_SECRET", secret)
    with serve_sandbox(transport=SandboxTransport(faults=faults)) as url:
        settings = replace(load_settings(), env="live", data_dir=tmp_path,
                           binance_futures_base_url=url)  # fmt: skip
        res = definitions.build_resources(settings)
        account: Any = res["binance_account"]
        assert account.api_key == dg.EnvVar("BINANCE_API_KEY")
        assert account.api_secret == dg.EnvVar("BINANCE_API_SECRET")
        assert not account.sandbox.enabled and account.futures_base_url == url
        # One retry, not five, for the 503 case: the same resource otherwise.
        fast = BinanceAccountResource(
            futures_base_url=account.futures_base_url, api_key=account.api_key,
            api_secret=account.api_secret, max_retries=1, sandbox=account.sandbox,
        )  # fmt: skip
        yield {"dataset": res["dataset"], "binance_account": fast}


def test_key_secret_and_signatures_never_in_logs_events_metadata_or_the_lake(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    signatures: list[str] = []
    real_sign = binance_signed.sign

    def recording_sign(query: str, secret: str) -> str:
        signatures.append(real_sign(query, secret))
        return signatures[-1]

    monkeypatch.setattr(binance_signed, "sign", recording_sign)
    lake_dir = tmp_path / "data"
    runs: list[dg.ExecuteInProcessResult] = []

    def run(res: dict[str, Any]) -> None:
        runs.append(dg.materialize([exchange_fees], instance=instance, resources=res,
                                   partition_key=TODAY, raise_on_error=False))  # fmt: skip

    with live_on_loopback(lake_dir, monkeypatch, FAKE_KEY, FAKE_SECRET) as res:
        run(res)  # -2015
    with live_on_loopback(lake_dir, monkeypatch, SANDBOX_BINANCE_API_KEY, FAKE_SECRET) as res:
        run(res)  # -1022
    with live_on_loopback(lake_dir, monkeypatch, SANDBOX_BINANCE_API_KEY,
                          SANDBOX_BINANCE_API_SECRET) as res:  # fmt: skip
        run(res)  # accepted: its signature must not show either
    failing = json.dumps([{"kind": "503", "path": "/fapi/v1/commissionRate", "count": -1}])
    with live_on_loopback(lake_dir, monkeypatch, FAKE_KEY, FAKE_SECRET, failing) as res:
        run(res)  # a failed step: its error text is recorded in the event log
    assert [r.success for r in runs] == [True, True, True, False]
    assert len(signatures) == 4  # one per run and symbol (a retry resends the same request)
    texts = [caplog.text, "\n".join(r.getMessage() for r in caplog.records), failure_text(runs[3])]
    for result in runs:
        texts += [dg.serialize_value(e) for e in instance.all_logs(result.run_id)]  # type: ignore[arg-type]
    texts.append(repr(latest_metadata(instance, EXCHANGE_FEES.name, TODAY)))
    # Every file the runs left: the lake (parquet, MANIFEST provenance) and the instance's
    # storage (event log database, captured compute logs).
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "MANIFEST.tsv" for p in files) and any(p.suffix == ".db" for p in files)
    assert "signature=***" in "\n".join(texts)  # the requests were logged, masked
    for secret in (FAKE_KEY, FAKE_SECRET, *signatures):
        assert not [t for t in texts if secret in t], secret
        assert not [p for p in files if secret.encode() in p.read_bytes()], secret
