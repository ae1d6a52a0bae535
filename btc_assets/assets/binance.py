"""Binance feeds: spot and USD-M perp 1m klines, funding settlements and the metrics snapshots.

History comes from Binance's public archive (data.binance.vision): a monthly zip for each
whole month of the range, daily zips for the rest, every zip checked against its
``.CHECKSUM`` before it is read. REST takes the tail (the last ``tail_days``, which Binance
still revises) and any day the archive lacks or has not published yet. Each day records its
``source`` (archive or rest) and, for the archive, the zip and its sha256; on a re-run a
stored archive day whose published checksum changed is fetched again, and says so.

REST is fetched one day at a time: the request count per day (2 spot, 1 perp, 1 funding) is
part of the contract and shows in each day's metadata. Metrics over REST
(``openInterestHist``) reach only the last 30 days and carry no ratios; older days come from
the archive or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from btc_assets import clock
from btc_assets.assets.raw import FetchDays, Fetched, raw_asset
from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import BINANCE_TABLES, FUNDING, METRICS, PERP_1M, SPOT_1M, Table
from btc_assets.lake import DayWrite
from btc_assets.stream.staging import Staging, wait_for_healthy_day
from btc_assets.vendors.binance import (
    FUNDING_RATE,
    FUTURES_KLINES,
    OPEN_INTEREST_HIST,
    SPOT_KLINES,
    BinanceClient,
)
from btc_assets.vendors.binance_archive import (
    ArchiveClient,
    ArchiveDataset,
    ArchiveIntegrityError,
    archive_path,
)

DayFetch = Callable[[BinanceClient, str, datetime, datetime], pl.DataFrame]
# openInterestHist keeps "the latest 1 month"; a day starting earlier is not asked for.
OI_HIST_REACH = timedelta(days=29)


@dataclass(frozen=True)
class Feed:
    table: Table
    rest: DayFetch
    rest_path: str
    rest_futures: bool  # on the USD-M host (else spot)
    archive: ArchiveDataset
    rest_reach: timedelta | None = None  # how far back REST serves this feed
    streamed: bool = False  # today may come from the websocket's staging area


FEEDS = {
    f.table.name: f
    for f in (
        Feed(SPOT_1M, lambda c, s, a, b: c.spot_klines(s, "1m", a, b), SPOT_KLINES, False,
             ArchiveDataset.SPOT_KLINES_1M, streamed=True),
        Feed(PERP_1M, lambda c, s, a, b: c.futures_klines(s, "1m", a, b), FUTURES_KLINES, True,
             ArchiveDataset.UM_KLINES_1M, streamed=True),
        Feed(FUNDING, lambda c, s, a, b: c.funding_rate(s, a, b), FUNDING_RATE, True,
             ArchiveDataset.UM_FUNDING_RATE),
        Feed(METRICS, lambda c, s, a, b: c.open_interest_hist(s, a, b), OPEN_INTEREST_HIST,
             True, ArchiveDataset.UM_METRICS, rest_reach=OI_HIST_REACH),
    )
}  # fmt: skip


def archive_origin(resources: Any, feed: Feed) -> str:
    """Where a table's archive days come from: the dataset's folder, daily or monthly."""
    path = archive_path(feed.archive, "SYMBOL", "daily", date(2000, 1, 1))
    folder = path.split("/daily/", 1)[0]  # /data/<market>
    kind = path.split("/daily/", 1)[1].split("/", 1)[0]  # klines, fundingRate, metrics
    return f"{resources.binance.archive_base_url}{folder}/*/{kind}"


def _from_archive(
    archive: ArchiveClient, feed: Feed, symbol: str, days: list[date], fetched: Fetched, origin: str
) -> None:
    """The days the archive has, into ``fetched``; a file that fails verification refuses
    the days it would have given (its month) and nothing of them is written."""
    today = clock.today_utc()
    try:
        chunks = [archive.fetch_days(feed.archive, symbol, days, today)]
    except ArchiveIntegrityError:
        # Isolate the bad file: month by month, so one bad month does not stop a year.
        chunks = []
        for month in sorted({d.replace(day=1) for d in days}):
            part = [d for d in days if d.replace(day=1) == month]
            try:
                chunks.append(archive.fetch_days(feed.archive, symbol, part, today))
            except ArchiveIntegrityError as exc:
                for day in part:
                    fetched.refused[day] = (
                        f"{exc}; the archive's days of {month:%Y-%m} were not used"
                    )
    for got in chunks:
        for day, found in got.days.items():
            fetched.frames[day] = found.frame
            fetched.provenance[day] = {
                "source": "archive",
                "origin": origin,
                "host": found.url.split("/")[2],
                "endpoint": "/" + found.url.split("/", 3)[3],
                "archive_url": found.url,
                "archive_sha256": found.sha256,
                "archive_period": found.period,
                **({"also_from": list(found.also_from)} if found.also_from else {}),
            }
            fetched.day_metadata[day] = {
                "archive_file": found.file,
                "archive_sha256": found.sha256,
                "archive_rows": found.rows,
                "archive_short": found.short,
            }
        for day, why in got.unavailable.items():
            fetched.day_metadata.setdefault(day, {})["archive_unavailable"] = why


def _fetcher(feed: Feed) -> FetchDays:
    def fetch(resources: Any, member: Any, days: list[date]) -> Fetched:
        binance = resources.binance
        client: BinanceClient = binance.client()
        symbol = member.lake_symbol(feed.table)
        fetched = Fetched()
        today = clock.today_utc()
        archive_requests = 0
        if binance.use_archive:
            tail_from = today - timedelta(days=resources.dataset.tail_days)
            history = [d for d in days if d < tail_from]
            if history:
                with binance.archive_client() as archive:
                    _from_archive(
                        archive, feed, symbol, history, fetched, archive_origin(resources, feed)
                    )
                    archive_requests = archive.request_count
        if feed.streamed and today in days:
            _from_stream(resources.dataset, feed, symbol, today, fetched)
        short = _short_archive_days(feed, fetched)
        for day in days:
            if day in fetched.frames or day in fetched.refused:
                continue
            start, end = day_bounds(day)
            if not _rest_reaches(feed, day):
                why = fetched.day_metadata.get(day, {}).get("archive_unavailable", "not asked")
                fetched.refused[day] = (
                    f"REST ({feed.rest_path}) keeps only the last {feed.rest_reach.days} days "
                    f"and the archive cannot give it ({why})"
                )
                continue
            before = client.request_count
            fetched.frames[day] = feed.rest(client, symbol, start, end)
            fetched.provenance[day] = {"source": "rest"}
            fetched.day_metadata.setdefault(day, {})["http_requests"] = (
                client.request_count - before
            )
        for day, (frame, provenance) in short.items():
            if fetched.frames[day].height < frame.height:  # REST has less: the archive stays
                fetched.frames[day], fetched.provenance[day] = frame, provenance
            else:
                fetched.day_metadata[day]["archive_short_completed_by"] = "rest"
        fetched.requests = client.request_count + archive_requests
        return fetched

    return fetch


def _from_stream(dataset: Any, feed: Feed, symbol: str, day: date, fetched: Fetched) -> None:
    """Today from the collector's staging when it holds every closed candle (no REST call),
    recorded as ``source: stream``; otherwise the reason goes in the day's metadata and
    REST takes the day."""
    if not dataset.stream_root:
        return
    frame, why, staged = wait_for_healthy_day(
        Staging(dataset.stream_root), feed.table.name, symbol, day, env=dataset.env,
        grace_ms=dataset.stream_grace_seconds * 1000, now_ms=clock.epoch_ms,
    )  # fmt: skip
    if frame is None or staged is None:
        fetched.day_metadata.setdefault(day, {})["stream_unused"] = why
        return
    url = urlsplit(staged.origin)
    fetched.frames[day] = frame
    fetched.provenance[day] = {
        "source": "stream",
        "origin": staged.origin,
        "host": url.netloc,
        "endpoint": url.path,
        "stream_sources": staged.sources,  # ws, and rest for minutes the collector filled
    }
    fetched.day_metadata[day] = {"http_requests": 0, "stream": why,
                                 "stream_sources": staged.sources}  # fmt: skip


def _short_archive_days(
    feed: Feed, fetched: Fetched
) -> dict[date, tuple[pl.DataFrame, dict[str, Any]]]:
    """Take out the archive days with fewer rows than a full day that REST can reach, so
    REST is asked for them; return what the archive gave, to keep should REST give less.

    A truncated file is one case; the last day of a month from the monthly ``fundingRate``
    file is another: its 00:00 settlement is the next month's first row, which no file has
    until that month ends.
    """
    taken: dict[date, tuple[pl.DataFrame, dict[str, Any]]] = {}
    for day, metadata in fetched.day_metadata.items():
        if metadata.get("archive_short") and day in fetched.frames and _rest_reaches(feed, day):
            taken[day] = (fetched.frames.pop(day), fetched.provenance.pop(day))
    return taken


def _rest_reaches(feed: Feed, day: date) -> bool:
    """Does the feed's REST endpoint still serve ``day`` (``openInterestHist``: 30 days)?"""
    reach = feed.rest_reach
    return reach is None or day_bounds(day)[0] >= clock.now_utc() - reach


def _recheck(feed: Feed) -> Callable[[Any, Mapping[date, DayWrite]], dict[date, str]]:
    """Stored archive days whose file Binance has since replaced (or withdrawn)."""

    def recheck(resources: Any, keep: Mapping[date, DayWrite]) -> dict[date, str]:
        stored = {
            day: w.provenance
            for day, w in keep.items()
            if w.provenance.get("source") == "archive" and w.provenance.get("archive_url")
        }
        if not stored or not resources.binance.use_archive:
            return {}
        with resources.binance.archive_client() as archive:
            published = archive.published_sha256(p["archive_url"] for p in stored.values())
        again: dict[date, str] = {}
        for day, p in stored.items():
            now = published.get(p["archive_url"])
            if now != p.get("archive_sha256"):
                again[day] = (
                    f"archive {p['archive_url']} was replaced upstream: sha256 "
                    f"{p.get('archive_sha256', '?')[:16]}... -> "
                    + (f"{now[:16]}..." if now else "withdrawn (404)")
                )
        return again

    return recheck


def _rest_origin(feed: Feed) -> Callable[[Any], str]:
    def origin(resources: Any) -> str:
        b = resources.binance
        return (b.futures_base_url if feed.rest_futures else b.spot_base_url) + feed.rest_path

    return origin


binance_assets = [
    raw_asset(
        table,
        "binance",
        {"binance"},
        _fetcher(FEEDS[table.name]),
        _rest_origin(FEEDS[table.name]),
        other_origins=lambda r, f=FEEDS[table.name]: (archive_origin(r, f),),
        recheck=_recheck(FEEDS[table.name]),
    )
    for table in BINANCE_TABLES
]
