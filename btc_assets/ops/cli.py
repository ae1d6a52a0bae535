"""``btc-assets``: the few operations commands Dagster's own CLI does not cover.

    btc-assets verify [--table T] [--days N]   what the lake holds: coverage, gaps, freshness
    btc-assets reset [-f]                      wipe the lake, reports, DuckDB and asset history
    btc-assets sandbox [--port N]              serve the offline vendor on a loopback port
    btc-assets stream [--metrics-port N]       collect closed 1m candles from the websocket
    btc-assets serve [--host H] [--port N]     predictions, newest features, metrics over HTTP

Runs, backfills and Dagster-only wipes are Dagster's commands (see ``btc-assets --help``).
Paths come from ``settings.load_settings()``, the instance from ``DAGSTER_HOME``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from btc_assets import clock
from btc_assets.settings import SANDBOX_FAULTS_SETTING, Settings, SettingsError, load_settings

# backfill_policy is beta and partitioned checks are preview in dagster 1.13: known, chosen.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

OK, PROBLEMS, USAGE = 0, 1, 2
DESCRIPTION = "Operations commands for btc_assets that Dagster's own CLI does not cover."
DAGSTER_COMMANDS = """\
Dagster's own CLI does the rest (-m btc_assets.defs.definitions, DAGSTER_HOME set):
  backfill a range as ONE run (the daily assets have a single-run backfill policy):
    dagster asset materialize -m btc_assets.defs.definitions --select 'group:binance' \\
        --partition-range 2024-01-01...2024-01-31
  backfill through the daemon (queued, visible under Overview > Backfills in the UI):
    dagster job backfill -m btc_assets.defs.definitions -j btc_daily \\
        --from 2024-01-01 --to 2024-01-31 --noprompt
  one day:                dagster asset materialize -m btc_assets.defs.definitions \\
                              --select binance_spot_klines_1m --partition 2024-01-02
  asset history only:     dagster asset wipe --all       run history: dagster run wipe
"""
VERIFY_HELP = """\
Per lake table: days present in the window, coverage (present vs expected bars or
events, from core.quality, the figures the quality checks use), gaps (count and longest;
a missing day is a gap), days whose file no longer matches its MANIFEST (corrupt), the last
bar's ts and its lag from now.

Exit status: 0 when every table is complete; 1 when a table has gaps, corrupt days or no
days at all in the window; 2 on a usage error.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SettingsError as exc:
        print(f"btc-assets: {exc}", file=sys.stderr)
        return USAGE


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="btc-assets", description=DESCRIPTION, epilog=DAGSTER_COMMANDS,
        formatter_class=raw,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify", help="coverage, gaps and freshness of every lake table",
        description=VERIFY_HELP, epilog=DAGSTER_COMMANDS, formatter_class=raw,
    )  # fmt: skip
    verify.add_argument(
        "--table", action="append", metavar="NAME",
        help="only this table (repeatable); default: every lake table",
    )  # fmt: skip
    verify.add_argument(
        "--days", type=int, metavar="N",
        help="the N UTC days ending yesterday; default: first to last day present",
    )  # fmt: skip
    verify.add_argument("--symbol", help="default: the first of BTC_ASSETS_SYMBOLS")
    verify.set_defaults(run=_verify)
    reset = sub.add_parser(
        "reset", help="delete the lake, reports, DuckDB file and the assets' Dagster history",
        description="Deletes the lake (data/lake), the reports, the DuckDB warehouse file, and "
        "the materialization and check history of this project's assets in the Dagster "
        "instance (DAGSTER_HOME), so every partition shows as missing. Lists what will go and "
        "asks first; anything but y/yes changes nothing. Run history is kept (dagster run wipe).",
    )  # fmt: skip
    reset.add_argument("-f", "--force", action="store_true", help="do not ask")
    reset.set_defaults(run=_reset)
    sandbox = sub.add_parser(
        "sandbox", help="serve the offline vendor on a loopback port until Ctrl-C",
        description="Serves the sandbox vendor (Binance, CoinGlass, Telegram paths) over HTTP "
        "and prints the settings that point the live clients at it.",
    )  # fmt: skip
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=0, help="default: a free port")
    sandbox.add_argument("--faults", help="JSON fault plan; default: BTC_ASSETS_SANDBOX_FAULTS")
    sandbox.add_argument("--seed", type=int, help="default: BTC_ASSETS_SANDBOX_SEED")
    sandbox.set_defaults(run=_sandbox)
    stream = sub.add_parser(
        "stream", help="collect closed 1m candles of every symbol from Binance's websocket",
        description="Subscribes to the 1m kline streams of every configured symbol (spot and "
        "USD-M), stages closed candles under data/stream for the live_today job, fills any "
        "missed minute over REST, and serves Prometheus metrics. Runs until SIGTERM/Ctrl-C.",
    )  # fmt: skip
    stream.add_argument(
        "--metrics-port", type=int, metavar="N",
        help="default: BTC_ASSETS_STREAM_METRICS_PORT (0: no metrics server)",
    )  # fmt: skip
    stream.add_argument(
        "--sandbox-clock", metavar="START@SPEED",
        help="sandbox only: run the clock from START (ISO UTC) at SPEED times real time",
    )  # fmt: skip
    stream.set_defaults(run=_stream)
    serve = sub.add_parser(
        "serve", help="serve predictions of the promoted model over HTTP (FastAPI)",
        description="Serves /health/live, /health/ready, /predict, /predict/latest and /metrics "
        "(see btc_assets/service). The model is reloaded when its CURRENT pointer moves.",
    )  # fmt: skip
    serve.add_argument("--host", help="default: BTC_ASSETS_SERVE_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default: BTC_ASSETS_SERVE_PORT (8000)")
    serve.set_defaults(run=_serve)
    return parser


# --- verify ------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    from btc_assets.core.tables import lake_tables
    from btc_assets.lake import Lake
    from btc_assets.ops.verify import verify_table

    settings = load_settings()
    tables = {
        t.name: t for t in lake_tables(settings.bar_intervals, settings.forecast.joined_series())
    }
    unknown = sorted(set(args.table or ()) - set(tables))
    if unknown:
        print(f"btc-assets verify: unknown table(s) {unknown}; known: {sorted(tables)}",
              file=sys.stderr)  # fmt: skip
        return USAGE
    if args.days is not None and args.days < 1:
        print("btc-assets verify: --days must be at least 1", file=sys.stderr)
        return USAGE
    lake = Lake(settings.lake_location)
    basket = [s for s in settings.symbols if not args.symbol or s.perp == args.symbol.upper()]
    if not basket:
        print(f"btc-assets verify: {args.symbol} is not in the basket (BTC_ASSETS_SYMBOLS: "
              f"{', '.join(s.perp for s in settings.symbols)})", file=sys.stderr)  # fmt: skip
        return USAGE
    now = clock.now_utc()
    chosen = [tables[n] for n in args.table] if args.table else list(tables.values())
    # Spot tables hold a member under its spot pair; a perp without one has none.
    series = settings.forecast.published_names()
    names = [
        (t, name)
        for t in chosen
        for name in (
            # a published table's names are series, not members: all of them unless a
            # symbol narrows the check to the basket's tables
            (series.get(t.name, []) if not args.symbol else [])
            if t.published
            else dict.fromkeys(s.spot if t.market == "spot" else s.perp for s in basket)
        )
        if name
    ]
    reports = [verify_table(lake, t, name, args.days, now, settings.env) for t, name in names]
    window = f"the {args.days} UTC days ending yesterday" if args.days else "first to last day"
    shown = ", ".join(s.perp for s in basket)
    print(f"lake {settings.lake_location}  symbols {shown}  window: {window}  "
          f"now {now:%Y-%m-%d %H:%M} UTC")  # fmt: skip
    rows = [r.row() for r in reports]
    header = ("table", "days", "coverage", "gaps", "longest", "corrupt", "last ts (UTC)", "lag")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(str(x).ljust(w) for x, w in zip(cells, widths, strict=True)).rstrip()

    print(line(header))
    by_symbol = len({r.symbol for r in reports}) > 1
    for symbol in dict.fromkeys(r.symbol for r in reports):
        if by_symbol:
            print(f"-- {symbol}")
        for report in reports:
            if report.symbol == symbol:
                print(line(report.row()))
    empty = [f"{r.table} {r.symbol}" if by_symbol else r.table for r in reports if not r.window]
    problems = [p for r in reports if r.window for p in r.problems()]
    if empty:  # one line, not one per table: a young lake has many
        problems.append(f"{len(empty)} table(s) with no days in the lake: {', '.join(empty)}")
    from btc_assets.ops.verify_stream import verify_stream

    problems += verify_stream(settings, basket, now)
    from btc_assets.ops.verify_model import verify_model

    model_lines, model_problems = verify_model(settings)
    print("\n" + "\n".join(model_lines) if model_lines else "", end="\n" if model_lines else "")
    problems += model_problems
    if problems:
        print("\nproblems:")
        for problem in problems:
            print(f"  {problem}")
        return PROBLEMS
    print("\nevery table is complete in the window")
    return OK


# --- reset -------------------------------------------------------------------------------


def _describe(path: Path) -> str:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return f"{path}/  ({len(files)} files, {_size(sum(p.stat().st_size for p in files))})"
    return f"{path}  ({_size(path.stat().st_size)})"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def reset_targets(settings: Settings) -> list[Path]:
    """The files and folders ``reset`` deletes, those that exist (DuckDB may leave a .wal)."""
    wal = settings.warehouse_path.with_name(settings.warehouse_path.name + ".wal")
    lake = [] if settings.lake_on_gcs else [settings.lake_dir]
    paths = [*lake, settings.reports_dir, settings.warehouse_path, wal,
             settings.stream_dir]  # fmt: skip
    return [p for p in paths if p.exists()]


def _project_asset_keys() -> list[dg.AssetKey]:
    from btc_assets.defs.definitions import defs

    return list(defs.resolve_all_asset_keys())


def _reset(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        instance = dg.DagsterInstance.get()
    except dg.DagsterError as exc:  # DAGSTER_HOME unset, missing, or a bad dagster.yaml
        first = str(exc).strip().splitlines()[0]
        print(f"btc-assets reset: no Dagster instance: {first} (the Makefile uses "
              ".dagster_home)", file=sys.stderr)  # fmt: skip
        return USAGE
    with instance:
        stored = set(instance.get_asset_keys())
        keys = sorted((k for k in _project_asset_keys() if k in stored), key=str)
        paths = reset_targets(settings)
        for path in paths:  # a wrong BTC_ASSETS_DATA_DIR must not take a home folder with it
            if path in (Path(path.anchor), Path.home()):
                print(f"btc-assets reset: refusing to delete {path}", file=sys.stderr)
                return USAGE
        if not paths and not keys:
            print("Nothing to reset: no lake, reports or DuckDB file, and no asset history.")
            return OK
        print("This deletes:")
        for path in paths:
            print(f"  {_describe(path)}")
        if settings.lake_on_gcs:  # a shared bucket is not one machine's to wipe
            print(f"  (not the lake at {settings.lake_location}: delete that prefix yourself, "
                  "e.g. gcloud storage rm -r, if you mean to)")  # fmt: skip
        if keys:
            names = ", ".join(k.to_user_string() for k in keys)
            where = instance.root_directory or "the instance"
            print(
                "  Dagster history (materializations, partition status, check results) of "
                f"{len(keys)} asset(s) in {where}: {names}"
            )
        if not args.force and not _confirmed("Delete all of the above? [y/N] "):
            print("Nothing was changed.")
            return PROBLEMS
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        instance.wipe_assets(keys)
        print(f"Deleted {len(paths)} path(s) and the history of {len(keys)} asset(s).")
    return OK


def _confirmed(prompt: str) -> bool:
    try:
        answer = input(prompt)
    except EOFError:  # no terminal (a pipe, CI): the safe answer
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


# --- stream ------------------------------------------------------------------------------


def _stream(args: argparse.Namespace) -> int:
    import logging

    from btc_assets.ops.stream import run_stream

    settings = load_settings()
    # Ours at INFO (model swaps, refusals); the libraries' chatter (alembic, Dagster's
    # instance) only when it is a warning.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("btc_assets").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per gap-fill request
    if args.sandbox_clock:
        if not settings.is_sandbox:
            print("btc-assets stream: --sandbox-clock is for BTC_ASSETS_ENV=sandbox only",
                  file=sys.stderr)  # fmt: skip
            return USAGE
        try:
            clock.run_from(*_clock_option(args.sandbox_clock))
        except ValueError as exc:
            print(f"btc-assets stream: --sandbox-clock {args.sandbox_clock}: {exc}",
                  file=sys.stderr)  # fmt: skip
            return USAGE
    return run_stream(settings, args.metrics_port)


def _clock_option(text: str) -> tuple[float, float]:
    from datetime import datetime

    start, _, speed = text.partition("@")
    at = datetime.fromisoformat(start.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError("START needs a UTC offset, e.g. 2026-12-06T10:00:00Z")
    factor = float(speed or 1)
    if not factor > 0:
        raise ValueError("SPEED must be > 0")
    return at.timestamp(), factor


# --- serve -------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    import logging

    from btc_assets.ops.serve import run_serve

    settings = load_settings()
    # Ours at INFO (model swaps, refusals); the libraries' chatter (alembic, Dagster's
    # instance) only when it is a warning.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("btc_assets").setLevel(logging.INFO)
    return run_serve(settings, args.host, args.port)


# --- sandbox -----------------------------------------------------------------------------


def sandbox_settings(base_url: str, stream_urls: tuple[str, str] | None = None) -> dict[str, str]:
    """The environment that points the live clients at a served sandbox."""
    from btc_assets.sandbox.credentials import (
        SANDBOX_BINANCE_API_KEY,
        SANDBOX_BINANCE_API_SECRET,
        SANDBOX_COINGLASS_KEY,
        SANDBOX_TELEGRAM_CHAT_ID,
        SANDBOX_TELEGRAM_TOKEN,
    )

    streams = {}
    if stream_urls:
        streams = {"BINANCE_SPOT_STREAM_URL": stream_urls[0],
                   "BINANCE_FUTURES_STREAM_URL": stream_urls[1]}  # fmt: skip

    return {
        # live: the clients use these URLs rather than the in-process sandbox transport
        "BTC_ASSETS_ENV": "live",
        "BINANCE_SPOT_BASE_URL": base_url,
        "BINANCE_FUTURES_BASE_URL": base_url,
        **streams,
        "BINANCE_API_KEY": SANDBOX_BINANCE_API_KEY,
        "BINANCE_API_SECRET": SANDBOX_BINANCE_API_SECRET,
        "COINGLASS_BASE_URL": base_url,
        "COINGLASS_API_KEY": SANDBOX_COINGLASS_KEY,
        "TELEGRAM_BASE_URL": base_url,
        "TELEGRAM_BOT_TOKEN": SANDBOX_TELEGRAM_TOKEN,
        "TELEGRAM_CHAT_ID": SANDBOX_TELEGRAM_CHAT_ID,
    }


def _sandbox(args: argparse.Namespace) -> int:
    from btc_assets.sandbox.binance_stream import SandboxStream
    from btc_assets.sandbox.faults import FaultPlan, FaultPlanError
    from btc_assets.sandbox.server import serve_sandbox
    from btc_assets.sandbox.stream_server import serve_sandbox_stream

    settings = load_settings()
    seed = settings.sandbox_seed if args.seed is None else args.seed
    if seed < 0:
        print(f"btc-assets sandbox: --seed {seed}: expected a whole number >= 0", file=sys.stderr)
        return USAGE
    try:  # the error names where the plan came from
        if args.faults is None:
            faults = FaultPlan.from_json(settings.sandbox_faults, source=SANDBOX_FAULTS_SETTING)
        else:
            faults = FaultPlan.from_json(args.faults, source="--faults")
    except FaultPlanError as exc:
        print(f"btc-assets sandbox: {exc}", file=sys.stderr)
        return USAGE
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `docker stop`, like Ctrl-C
    try:
        with (
            serve_sandbox(args.host, args.port, seed=seed, faults=faults) as base_url,
            serve_sandbox_stream(SandboxStream(seed=seed), args.host) as stream_urls,
        ):
            print(f"sandbox vendor on {base_url} (seed {seed}), its kline websocket on "
                  f"{stream_urls[1]}; Ctrl-C stops it. Set:")  # fmt: skip
            for name, value in sandbox_settings(base_url, stream_urls).items():
                print(f"export {name}={value}")
            sys.stdout.flush()
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    except OSError as exc:  # port taken, address not local
        print(f"btc-assets sandbox: cannot listen on {args.host}:{args.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return USAGE
    print("sandbox stopped")
    return OK


if __name__ == "__main__":
    sys.exit(main())
