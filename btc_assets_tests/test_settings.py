"""Every setting is checked when it is read: a bad value stops ``load_settings()``, the CLI
and the definitions with one line naming the variable, the value and what is expected."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.defs.definitions import build_resources
from btc_assets.defs.resources import BinanceResource, CoinGlassResource, SandboxResource
from btc_assets.ops.cli import main
from btc_assets.settings import SettingsError, load_settings
from btc_assets.vendors.hosts import LIVE_BINANCE_SPOT_URL

ROOT = Path(__file__).resolve().parent.parent

# (variable, bad value, what the error must say it expects)
BAD_VALUES = [
    ("BTC_ASSETS_ENV", "production", "'sandbox' or 'live'"),
    ("BTC_ASSETS_SYMBOL", "BTC-USDT", "a Binance symbol"),
    ("BTC_ASSETS_SYMBOL", "", "set but empty"),
    ("BTC_ASSETS_SYMBOLS", "", "set but empty"),
    ("BTC_ASSETS_SYMBOLS", "BTCUSDT,ethusdt", "entry 'ethusdt': the perp symbol 'ethusdt' is not"),
    ("BTC_ASSETS_SYMBOLS", "BTCUSDT,ETHUSDT,BTCUSDT", "BTCUSDT is listed twice"),
    ("BTC_ASSETS_SYMBOLS", "BTCUSDT,,ETHUSDT", "entry #2 is empty"),
    ("BTC_ASSETS_SYMBOLS", " , ", "no symbol given"),
    ("BTC_ASSETS_SYMBOLS", "BTC/USDT", "entry 'BTC/USDT'"),
    ("BTC_ASSETS_SYMBOLS", "1000PEPEUSDT:spot:PEPEUSDT", "'spot' is not an option"),
    ("BTC_ASSETS_SANDBOX_COINGLASS_HISTORY_DAYS", "0", "a whole number of days >= 1"),
    ("BTC_ASSETS_SANDBOX_COINGLASS_HISTORY_DAYS", "ninety", "a whole number of days >= 1"),
    ("BTC_ASSETS_COINGLASS_HISTORY_DAYS", "-90", "a whole number of days >= 1"),
    ("BTC_ASSETS_COINGLASS_HISTORY_DAYS", "90.5", "a whole number of days >= 1"),
    ("BTC_ASSETS_SANDBOX_LATENCY_MS", "-1", "a whole number of milliseconds >= 0"),
    ("BTC_ASSETS_SANDBOX_LATENCY_MS", "fast", "a whole number of milliseconds >= 0"),
    ("BTC_ASSETS_SANDBOX_LATENCY_MS", "", "set but empty"),
    ("BTC_ASSETS_START_DATE", "yesterday", "YYYY-MM-DD"),
    ("BTC_ASSETS_START_DATE", "2024-02-30", "YYYY-MM-DD"),
    ("BTC_ASSETS_START_DATE", "2999-01-01", "after today"),
    ("BTC_ASSETS_DATA_DIR", "", "set but empty"),
    ("BTC_ASSETS_TAIL_DAYS", "two", "a whole number of days > 0"),
    ("BTC_ASSETS_TAIL_DAYS", "0", "a whole number of days > 0"),
    ("BTC_ASSETS_SYMBOL_WORKERS", "0", "basket members each asset works on at once"),
    ("BTC_ASSETS_SYMBOL_WORKERS", "four", "a whole number > 0"),
    ("COINGLASS_REQUESTS_PER_MINUTE", "abc", "a whole number > 0"),
    ("COINGLASS_REQUESTS_PER_MINUTE", "0", "a whole number > 0"),
    ("COINGLASS_REQUESTS_PER_MINUTE", "-300", "a whole number > 0"),
    ("COINGLASS_REQUESTS_PER_MINUTE", "2.5", "a whole number > 0"),
    ("BTC_ASSETS_LIVE_INTERVAL_SECONDS", "0", "a whole number of seconds > 0"),
    ("BTC_ASSETS_LIVE_INTERVAL_SECONDS", "15m", "a whole number of seconds > 0"),
    ("BTC_ASSETS_FRESHNESS_SLACK_MINUTES", "-1", "a whole number of minutes >= 0"),
    ("BTC_ASSETS_SANDBOX_SEED", "abc", "a whole number >= 0"),
    ("BTC_ASSETS_SANDBOX_SEED", "-7", "a whole number >= 0"),
    ("BTC_ASSETS_VENDOR_MAX_WAIT_SECONDS", "0", "a number of seconds > 0"),
    ("BTC_ASSETS_VENDOR_MAX_WAIT_SECONDS", "-5", "a number of seconds > 0"),
    ("BTC_ASSETS_VENDOR_MAX_WAIT_SECONDS", "inf", "a number of seconds > 0"),
    ("BTC_ASSETS_VENDOR_MAX_WAIT_SECONDS", "two minutes", "a number of seconds > 0"),
    ("BTC_ASSETS_AUTOMATION", "maybe", "on or off"),
    ("BTC_ASSETS_AUTOMATION", "enabled", "on or off"),
    ("BTC_ASSETS_AUTOMATION", "", "set but empty"),
    ("BTC_ASSETS_TAIL_REFRESH_CRON", "daily", "a cron expression of 5 fields"),
    ("BTC_ASSETS_TAIL_REFRESH_CRON", "0 0 * * * *", "a cron expression of 5 fields"),
    ("BTC_ASSETS_TAIL_REFRESH_CRON", "61 0 * * *", "a cron expression of 5 fields"),
    ("BTC_ASSETS_TAIL_REFRESH_CRON", "0 0 30 2 *", "never fires"),
    ("BINANCE_SPOT_BASE_URL", "", "set but empty"),
    ("BINANCE_SPOT_BASE_URL", "api.binance.com", "an http(s) URL"),
    ("BINANCE_FUTURES_BASE_URL", "ftp://fapi.binance.com", "an http(s) URL"),
    ("COINGLASS_BASE_URL", "http://", "an http(s) URL"),
    ("TELEGRAM_BASE_URL", "telegram", "an http(s) URL"),
    ("COINGLASS_EXCHANGE", "", "set but empty"),
    ("COINGLASS_EXCHANGE_LIST", "Binance,,OKX", "an empty name in the list"),
    ("WAREHOUSE", "oracle", "'duckdb' or 'bigquery'"),
    ("BIGQUERY_DATASET", "my-dataset", "letters, digits, underscores"),
    ("BIGQUERY_LOCATION", "", "set but empty"),
    ("BIGQUERY_API_ENDPOINT", "127.0.0.1:9050", "an emulator's http(s) URL"),
    ("GCS_STAGING_BUCKET", "My_Bucket", "a GCS bucket name"),
    ("BTC_ASSETS_INTERVALS", "15m,2m", "'2m' is not one of 1m, 3m"),
    ("BTC_ASSETS_INTERVALS", "1w", "'1w' is not one of"),
    ("BTC_ASSETS_INTERVALS", "1H", "'1H' is not one of"),  # Binance's names are case-sensitive
    ("BTC_ASSETS_INTERVALS", "1h,4h,1h", "1h listed twice"),
    ("BTC_ASSETS_INTERVALS", "1h,,4h", "an empty entry"),
    ("BTC_ASSETS_INTERVALS", "", "set but empty"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD_VALUES)
def test_a_bad_value_names_the_variable_the_value_and_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r}: ")
    assert expected in message and "expected" in message
    assert "\n" not in message and "pydantic" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_every_bad_variable_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COINGLASS_REQUESTS_PER_MINUTE", "abc")
    monkeypatch.setenv("BTC_ASSETS_SANDBOX_SEED", "abc")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "COINGLASS_REQUESTS_PER_MINUTE='abc'" in message
    assert "BTC_ASSETS_SANDBOX_SEED='abc'" in message and "\n" not in message


def test_the_start_date_is_judged_by_the_projects_clock(
    monkeypatch: pytest.MonkeyPatch, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(datetime(2024, 5, 1, 12, tzinfo=UTC))
    monkeypatch.setenv("BTC_ASSETS_START_DATE", "2024-05-01")
    assert load_settings().start_date.isoformat() == "2024-05-01"
    monkeypatch.setenv("BTC_ASSETS_START_DATE", "2024-05-02")
    with pytest.raises(SettingsError, match=r"after today \(2024-05-01, UTC\)"):
        load_settings()


def test_defaults_and_the_accepted_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.env, settings.symbol, settings.start_date.isoformat()) == (
        "sandbox", "BTCUSDT", "2020-01-01",
    )  # fmt: skip
    assert (settings.tail_days, settings.coinglass_requests_per_minute) == (2, 300)
    assert (settings.live_interval_seconds, settings.freshness_slack_minutes) == (900, 20)
    assert (settings.sandbox_seed, settings.sandbox_faults, settings.automation_on) == (
        7,
        "",
        False,
    )
    assert settings.vendor_max_wait_seconds == 120.0
    assert settings.tail_refresh_cron == "30 0 * * *"
    for on in ("on", "ON", "true", "yes", "1"):
        monkeypatch.setenv("BTC_ASSETS_AUTOMATION", on)
        assert load_settings().automation_on is True, on
    for off in ("off", "False", "no", "0"):
        monkeypatch.setenv("BTC_ASSETS_AUTOMATION", off)
        assert load_settings().automation_on is False, off
    monkeypatch.setenv("BTC_ASSETS_SYMBOL", " ethusdt ")
    monkeypatch.setenv("BTC_ASSETS_ENV", "live")
    monkeypatch.setenv("COINGLASS_BASE_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("BTC_ASSETS_VENDOR_MAX_WAIT_SECONDS", "7.5")
    monkeypatch.setenv("BTC_ASSETS_TAIL_REFRESH_CRON", "@daily")
    settings = load_settings()
    assert (settings.symbol, settings.coin) == ("ETHUSDT", "ETH")
    assert settings.coinglass_base_url == "http://127.0.0.1:8080"  # no trailing slash
    assert settings.binance_spot_base_url == LIVE_BINANCE_SPOT_URL  # live's default
    assert settings.vendor_max_wait_seconds == 7.5
    assert settings.tail_refresh_cron == "@daily"


CRONS = [
    *("30 0 * * *", "*/15 * * * *", "0 0 * * MON-FRI", "@hourly", "0 0 31 2,3 *"),
    *("daily", "", "0 0 * * * *", "61 0 * * *", "0 0 30 2 *", "H 0 * * *", "@reboot"),
]


@pytest.mark.parametrize("cron", CRONS)
def test_a_cron_the_settings_accept_is_one_dagster_accepts(
    monkeypatch: pytest.MonkeyPatch, cron: str
) -> None:
    """The settings read the cron with croniter (the parser Dagster vendors) and Dagster's
    five-field rule; whatever they let through, Dagster's schedule takes."""
    monkeypatch.setenv("BTC_ASSETS_TAIL_REFRESH_CRON", cron)
    try:
        load_settings()
    except SettingsError as exc:
        assert str(exc).startswith(f"BTC_ASSETS_TAIL_REFRESH_CRON={cron!r}: ")
        return
    dg.ScheduleDefinition(name="check", cron_schedule=cron, job_name="any")  # raises if not


# --- the CLI: one line, no traceback, non-zero exit ---------------------------------------


@pytest.mark.parametrize(
    "command", [["verify"], ["verify", "--days", "3"], ["reset", "-f"], ["sandbox"]]
)
def test_every_cli_command_prints_one_line_naming_the_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COINGLASS_REQUESTS_PER_MINUTE", "abc")
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("btc-assets: COINGLASS_REQUESTS_PER_MINUTE='abc': expected ")
    assert err.count("\n") == 1 and not (tmp_path / "data").exists()


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_btc_assets_verify_as_a_process_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = _run(
        "from btc_assets.ops.cli import main; import sys; sys.exit(main(['verify']))",
        {"BTC_ASSETS_SANDBOX_SEED": "abc", "BTC_ASSETS_DATA_DIR": str(tmp_path)},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "btc-assets: BTC_ASSETS_SANDBOX_SEED='abc': expected a whole number >= 0 "
        "(the synthetic market's seed)\n"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"COINGLASS_REQUESTS_PER_MINUTE": "0"},
            "COINGLASS_REQUESTS_PER_MINUTE='0': expected a whole number > 0",
        ),
        (
            {"BTC_ASSETS_SANDBOX_FAULTS": '[{"kind": "429"}, {"kind": "gap"}]'},
            "BTC_ASSETS_SANDBOX_FAULTS: fault #1 (gap): a gap needs 'day' as YYYY-MM-DD",
        ),
    ],
)
def test_loading_the_definitions_fails_with_the_same_message(
    env: dict[str, str], message: str
) -> None:
    done = _run("import btc_assets.defs.definitions", env)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"btc_assets.settings.SettingsError: {message}")
    # The error is raised "from None": no pydantic dump or JSON error chained under it.
    assert "During handling" not in done.stderr and "ValidationError" not in done.stderr


# --- the sandbox fault plan, checked when the definitions load -----------------------------

BAD_PLANS = [
    ("{not json", "BTC_ASSETS_SANDBOX_FAULTS is not valid JSON"),
    ('[{"kind": "429"}, {"kind": "explode"}]', "fault #1: kind 'explode' unknown; expected"),
    ('[{"path": "/api/v3/klines"}]', "fault #0: no 'kind'; expected one of"),
    ('[{"kind": "500", "colour": "red"}]', "fault #0: unknown keys ['colour']"),
    ('[{"kind": "gap", "path": "/fapi/v1/klines"}]', "fault #0 (gap): a gap needs 'day'"),
    ('[{"kind": "gap", "day": "2024-02-30"}]', "fault #0 (gap): day='2024-02-30': Input"),
    ('[{"kind": "gap", "day": "1999-12-31"}]', "fault #0 (gap): day='1999-12-31' is outside"),
    ('[{"kind": "500", "day": "2024-03-01"}]', "fault #0 (500): ['day'] apply only to"),
    ('[{"kind": "gap", "day": "2024-03-01", "start_minute": 1440}]', "start_minute=1440"),
    ('[{"kind": "gap", "day": "2024-03-01", "minutes": 0}]', "minutes=0"),
    ('[{"kind": "500", "count": "2"}]', "fault #0 (500): count='2': Input should be"),
    ('[{"kind": "500", "count": -2}]', "count=-2: Input should be greater than or equal to -1"),
    ('[{"kind": "429", "retry_after": -1}]', "retry_after=-1: Input should be greater"),
    ('[{"kind": "500", "path": "api/v3/klines"}]', "path='api/v3/klines': a path starts"),
    ("[42]", "fault #0: expected an object, got 42"),
]


@pytest.mark.parametrize(("plan", "problem"), BAD_PLANS)
def test_a_bad_fault_plan_stops_the_definitions_naming_the_entry(
    tmp_path: Path, plan: str, problem: str
) -> None:
    settings = replace(load_settings(), env="sandbox", data_dir=tmp_path, sandbox_faults=plan)
    with pytest.raises(SettingsError) as caught:
        build_resources(settings)
    message = str(caught.value)
    assert message.startswith("BTC_ASSETS_SANDBOX_FAULTS")
    assert problem in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_good_plan_reaches_the_sandbox_and_live_mode_ignores_the_plan(tmp_path: Path) -> None:
    plan = '[{"kind": "gap", "path": "/fapi/v1/klines", "day": "2024-03-02", "minutes": 30}]'
    settings = replace(load_settings(), data_dir=tmp_path, sandbox_faults=plan)
    sandbox = build_resources(settings)["sandbox"]
    assert isinstance(sandbox, SandboxResource) and sandbox.faults == plan
    live = replace(settings, env="live", sandbox_faults="{not json")
    assert build_resources(live)["sandbox"].enabled is False  # type: ignore[attr-defined]


def test_vendor_max_wait_reaches_both_rate_limited_resources(tmp_path: Path) -> None:
    settings = replace(load_settings(), data_dir=tmp_path, vendor_max_wait_seconds=42.5)
    resources = build_resources(settings)
    binance, coinglass = resources["binance"], resources["coinglass"]
    assert isinstance(binance, BinanceResource) and isinstance(coinglass, CoinGlassResource)
    assert binance.max_wait_seconds == coinglass.max_wait_seconds == 42.5


@pytest.mark.parametrize(
    ("value", "built"),
    [
        (None, ("15m", "1h")),
        # 15m and 1h join: bars_15m and features_1h read them
        ("1d, 4h", ("15m", "1h", "4h", "1d")),
        ("1d,1m,30m,15m", ("1m", "15m", "30m", "1h", "1d")),  # shortest first
    ],
)
def test_intervals_shortest_first_and_15m_1h_always_built(
    monkeypatch: pytest.MonkeyPatch, value: str | None, built: tuple[str, ...]
) -> None:
    if value is None:
        monkeypatch.delenv("BTC_ASSETS_INTERVALS", raising=False)
    else:
        monkeypatch.setenv("BTC_ASSETS_INTERVALS", value)
    assert load_settings().bar_intervals == built
