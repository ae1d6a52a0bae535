"""Binance's bulk archive (data.binance.vision) as partition days in the ``core.schema`` contract.

    with ArchiveClient(transport=...) as archive:
        got = archive.fetch_days(ArchiveDataset.SPOT_KLINES_1M, "BTCUSDT", days, today)
        got.days[d].frame        # KLINE_SCHEMA rows with ts in (d, d+1], checksum verified
        got.unavailable[d]       # why the archive cannot give d: take REST for it

Planning: a calendar month that has ended and whose every day is asked for is one monthly
zip (a 404 there, as before Binance publishes it on the month's first Monday, falls back
to that month's daily zips); other days are daily zips; fundingRate exists monthly only,
metrics daily only. A day not over yet (``day >= today``), or a month not over for a
monthly-only dataset, is not published: it goes to ``unavailable`` without a request.

Rows are split into partition days by the (D, D+1] rule. A daily kline file for D is
exactly partition D (opens D 00:00..23:59, ts = open + 1m). Funding and metrics files for
D hold times D 00:00..23:55: their 00:00 row belongs to D-1, so the file after the last day
asked is fetched too; if it is not there the day is simply ``short``.

Every zip is checked against its ``.CHECKSUM`` before it is parsed; a mismatch, a broken
zip or a CSV that does not parse raises :class:`ArchiveIntegrityError` naming the file, and
nothing of the fetch is returned. A day with fewer rows than a full day has is ``short``
(reported and logged, never passed off as complete). Files download on ``max_workers``
threads: the archive is a static CDN, and there is no rate-limit weight to spend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import Enum
from typing import Literal

import httpx
import polars as pl

from btc_assets.core.schema import (
    FUNDING_SCHEMA,
    KLINE_SCHEMA,
    METRICS_SCHEMA,
    conform,
    partition_day_expr,
)
from btc_assets.vendors.binance_archive_parse import (
    VENDOR,
    ArchiveIntegrityError,
    parse_checksum,
    parse_funding_csv,
    parse_kline_csv,
    parse_metrics_csv,
    unzip_csv,
    verify_sha256,
)
from btc_assets.vendors.errors import VendorError, VendorRefused
from btc_assets.vendors.hosts import LIVE_BINANCE_ARCHIVE_URL
from btc_assets.vendors.http import SessionClient, VendorHttpClient

__all__ = [
    "ArchiveClient", "ArchiveDataset", "ArchiveDay", "ArchiveFetch", "ArchiveIntegrityError",
    "ArchiveNotFound", "archive_path",
]  # fmt: skip
log = logging.getLogger("btc_assets.vendors")
Period = Literal["daily", "monthly"]
MINUTE_MS = 60_000


class ArchiveNotFound(VendorRefused):
    """HTTP 404: the archive has no such file (not published yet, or never)."""


class ArchiveDataset(Enum):
    """The archive datasets this client reads, each parsed into its core schema."""

    SPOT_KLINES_1M = "spot_klines_1m"  # data/spot/.../klines/{S}/1m -> KLINE_SCHEMA
    UM_KLINES_1M = "um_klines_1m"  # data/futures/um/.../klines/{S}/1m -> KLINE_SCHEMA
    UM_FUNDING_RATE = "um_funding_rate"  # monthly only -> FUNDING_SCHEMA, mark_price null
    UM_METRICS = "um_metrics"  # daily only -> METRICS_SCHEMA


@dataclass(frozen=True)
class _Spec:
    market: str
    data_type: str
    interval: str | None
    periods: tuple[Period, ...]
    schema: dict[str, pl.DataType]
    full_day: int  # rows in a complete partition day (funding: from the file's interval)
    midnight_in_next: bool  # partition D's row at D+1 00:00 is in the file for D+1

    @property
    def daily(self) -> bool:
        return "daily" in self.periods


_SPECS: dict[ArchiveDataset, _Spec] = {
    ArchiveDataset.SPOT_KLINES_1M: _Spec(
        "spot", "klines", "1m", ("monthly", "daily"), KLINE_SCHEMA, 1440, False
    ),
    ArchiveDataset.UM_KLINES_1M: _Spec(
        "futures/um", "klines", "1m", ("monthly", "daily"), KLINE_SCHEMA, 1440, False
    ),
    ArchiveDataset.UM_FUNDING_RATE: _Spec(
        "futures/um", "fundingRate", None, ("monthly",), FUNDING_SCHEMA, 3, True
    ),
    ArchiveDataset.UM_METRICS: _Spec(
        "futures/um", "metrics", None, ("daily",), METRICS_SCHEMA, 288, True
    ),
}


def archive_path(dataset: ArchiveDataset, symbol: str, period: Period, day: date) -> str:
    """The URL path of the file holding ``day`` (its month's file when ``monthly``)."""
    spec = _SPECS[dataset]
    stamp = day.strftime("%Y-%m-%d" if period == "daily" else "%Y-%m")
    tag = spec.interval or spec.data_type
    folder = f"{symbol}/{spec.interval}" if spec.interval else symbol
    return f"/data/{spec.market}/{period}/{spec.data_type}/{folder}/{symbol}-{tag}-{stamp}.zip"


@dataclass(frozen=True)
class ArchiveDay:
    """One partition day from the archive: its rows and where they came from."""

    frame: pl.DataFrame  # the dataset's core schema, ts in (day, day + 1], sorted
    file: str  # the zip holding the day's own times (its midnight row may come from `also_from`)
    url: str
    sha256: str  # verified against the file's .CHECKSUM
    period: Period
    rows: int
    expected_rows: int
    short: bool  # fewer rows than a full day: never a complete day
    also_from: tuple[str, ...] = ()  # URLs of other files that gave rows (the midnight row)


@dataclass
class ArchiveFetch:
    days: dict[date, ArchiveDay] = field(default_factory=dict)
    unavailable: dict[date, str] = field(default_factory=dict)  # day -> why (take REST)
    requests: int = 0  # on the wire for this fetch, .CHECKSUM files and retries included


@dataclass(frozen=True)
class _File:
    path: str
    period: Period
    days: tuple[date, ...]  # the UTC days whose times the file holds

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


@dataclass(frozen=True)
class _Got:
    url: str
    sha256: str
    frame: pl.DataFrame  # ts + value columns, no symbol


def _month_days(day: date) -> tuple[date, ...]:
    first = day.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return tuple(first + timedelta(n) for n in range((following - first).days))


class ArchiveClient(SessionClient):
    """data.binance.vision over the shared HTTP session (retries, redaction, errors).

    ``base_url`` is the archive host (the live one by default; the sandbox answers any).
    ``max_workers`` files download at once; ``sleep``/``clock`` make retry waits fake.
    """

    def __init__(
        self,
        base_url: str = LIVE_BINANCE_ARCHIVE_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_wait_seconds: float = 300.0,
        max_workers: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers={max_workers!r}; expected at least 1")
        self.max_workers = max_workers
        self.http = VendorHttpClient(
            VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
            backoff_base=backoff_base, backoff_cap=backoff_cap,
            max_wait_seconds=max_wait_seconds, sleep=sleep, clock=clock,
            base_url_setting="BINANCE_ARCHIVE_BASE_URL", error_hook=_refine,
        )  # fmt: skip

    def url(self, path: str) -> str:
        return self.http.base_url + path

    def published_sha256(self, urls: Iterable[str]) -> dict[str, str | None]:
        """The sha256 each file's ``.CHECKSUM`` publishes now, None where the file is gone
        (404): one small request per file, so a stored day can be checked for an upstream
        replacement without downloading it again."""
        base = self.http.base_url

        def one(url: str) -> str | None:
            if not url.startswith(base):
                raise ValueError(f"{url} is not on the archive host {base}")
            path = url[len(base) :]
            try:
                text = self.http.get_bytes(path + ".CHECKSUM")
            except ArchiveNotFound:
                return None
            return parse_checksum(text, url + ".CHECKSUM", path.rsplit("/", 1)[1])

        unique = sorted(set(urls))
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return dict(zip(unique, pool.map(one, unique), strict=True))

    def fetch_days(
        self, dataset: ArchiveDataset, symbol: str, days: Iterable[date], today: date
    ) -> ArchiveFetch:
        """Partition ``days`` of ``dataset`` for ``symbol`` from the archive.

        ``today`` (UTC) decides what can be published. Raises :class:`ArchiveIntegrityError`
        if any file fails verification, and the session's :class:`VendorError` if the host
        keeps failing; a 404 is not an error but an ``unavailable`` day.
        """
        spec = _SPECS[dataset]
        before = self.request_count
        out = ArchiveFetch()
        wanted: list[date] = []
        for day in sorted(set(days)):
            reason = self._unpublished(spec, day, today)
            if reason:
                out.unavailable[day] = reason
            else:
                wanted.append(day)
        sources = set(wanted)
        if spec.midnight_in_next:
            sources |= {d + timedelta(days=1) for d in wanted}
        plan = self._plan(dataset, symbol, spec, sources, today)
        got, missing = self._fetch_all(plan, symbol, spec)
        fallback = [
            _File(archive_path(dataset, symbol, "daily", d), "daily", (d,))
            for f in plan
            if f in missing and f.period == "monthly" and spec.daily
            for d in f.days
            if d in sources
        ]
        if fallback:
            log.info("%s: %d monthly zips missing; %d daily zips instead", VENDOR,
                     sum(f.period == "monthly" for f in missing), len(fallback))  # fmt: skip
            more_got, more_missing = self._fetch_all(fallback, symbol, spec)
            got.update(more_got)
            missing.update(more_missing)
        self._assemble(out, symbol, spec, wanted, got, missing)
        out.requests = self.request_count - before
        return out

    @staticmethod
    def _unpublished(spec: _Spec, day: date, today: date) -> str:
        if day >= today:
            return f"not yet published: the archive has a day only after it ends (today {today})"
        if not spec.daily and _month_days(day)[-1] >= today:
            return (
                f"not yet published: {spec.data_type} comes in monthly files only, and "
                f"{day:%Y-%m} has not ended (today {today})"
            )
        return ""

    @staticmethod
    def _plan(
        dataset: ArchiveDataset, symbol: str, spec: _Spec, sources: set[date], today: date
    ) -> list[_File]:
        plan: list[_File] = []
        for month in sorted({d.replace(day=1) for d in sources}):
            month_days = _month_days(month)
            ended = month_days[-1] < today
            whole = all(d in sources for d in month_days)
            if "monthly" in spec.periods and ended and (whole or not spec.daily):
                path = archive_path(dataset, symbol, "monthly", month)
                plan.append(_File(path, "monthly", month_days))
            elif spec.daily:
                plan.extend(
                    _File(archive_path(dataset, symbol, "daily", d), "daily", (d,))
                    for d in month_days
                    if d in sources and d < today
                )
        return plan

    def _fetch_all(
        self, files: list[_File], symbol: str, spec: _Spec
    ) -> tuple[dict[_File, _Got], dict[_File, str]]:
        def one(f: _File) -> _Got | str:
            return self._fetch_file(f, spec)

        if self.max_workers == 1 or len(files) <= 1:
            results = [one(f) for f in files]
        else:
            with ThreadPoolExecutor(min(self.max_workers, len(files))) as pool:
                results = list(pool.map(one, files))
        got = {f: r for f, r in zip(files, results, strict=True) if isinstance(r, _Got)}
        missing = {f: r for f, r in zip(files, results, strict=True) if isinstance(r, str)}
        return got, missing

    def _fetch_file(self, f: _File, spec: _Spec) -> _Got | str:
        """The verified, parsed file, or why the archive has none (its 404)."""
        url = self.url(f.path)
        try:
            checksum = self.http.get_bytes(f.path + ".CHECKSUM")
            expected = parse_checksum(checksum, url + ".CHECKSUM", f.name)
            content = self.http.get_bytes(f.path)
        except ArchiveNotFound as exc:
            return f"the archive has no {exc.endpoint} (HTTP 404)"
        sha256 = verify_sha256(content, expected, url)
        csv = unzip_csv(content, url)
        if spec.data_type == "klines":
            frame = parse_kline_csv(csv, url, MINUTE_MS)
        elif spec.data_type == "fundingRate":
            frame = parse_funding_csv(csv, url)
        else:
            frame = parse_metrics_csv(csv, url)
        return _Got(url, sha256, frame)

    def _assemble(
        self,
        out: ArchiveFetch,
        symbol: str,
        spec: _Spec,
        wanted: list[date],
        got: dict[_File, _Got],
        missing: dict[_File, str],
    ) -> None:
        # The file answering for each day's own times: a fetched file beats a missing one,
        # and a daily fallback (planned later) beats its missing month.
        owner: dict[date, _File] = {}
        for f in [*missing, *got]:
            owner.update(dict.fromkeys(f.days, f))
        files = list(got)
        frames = [
            got[f].frame.with_columns(pl.lit(i, pl.Int32).alias("_file"))
            for i, f in enumerate(files)
        ]
        parts: dict[date, pl.DataFrame] = {}
        if frames:
            rows = (
                pl.concat(frames, how="vertical_relaxed")
                .with_columns(
                    partition_day_expr("ts").alias("_day"), pl.lit(symbol).alias("symbol")
                )
                .filter(pl.col("_day").is_in(wanted))
                .sort("ts", "_file")  # a row two files hold counts once
                .unique("ts", keep="first", maintain_order=True)
            )
            parts = {k[0]: v for k, v in rows.partition_by("_day", as_dict=True).items()}
        for day in wanted:
            f = owner.get(day)
            if f is None or f not in got:
                out.unavailable[day] = missing[f] if f is not None else "no archive file planned"
                continue
            part = parts.get(day)
            if part is None or part.height == 0:
                out.unavailable[day] = f"{got[f].url} has no rows for {day}"
                continue
            expected = spec.full_day
            if spec.data_type == "fundingRate":
                expected = 24 // max(1, int(part["interval_hours"][-1]))
                part = part.with_columns(pl.lit(None, pl.Float64).alias("mark_price"))
            main = files.index(f)
            also = tuple(sorted({got[files[i]].url for i in part["_file"].unique() if i != main}))
            frame = conform(part, spec.schema)
            short = frame.height < expected
            if short:
                log.warning("%s %s %s: %d of %d rows (%s)", VENDOR, symbol, day, frame.height,
                            expected, got[f].url)  # fmt: skip
            out.days[day] = ArchiveDay(
                frame, f.name, got[f].url, got[f].sha256, f.period, frame.height, expected,
                short, also,
            )  # fmt: skip


def _refine(err: VendorError) -> VendorError:
    if err.status == 404:
        return err.evolve(ArchiveNotFound, "the archive has no such file (yet)")
    return err
