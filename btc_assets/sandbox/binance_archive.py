"""data.binance.vision in the sandbox: zipped CSVs and ``.CHECKSUM`` files under the real paths.

Serves, from the same synthetic market as the REST routes (so the two agree value for value):

    /data/spot/{daily|monthly}/klines/{SYM}/{I}/{SYM}-{I}-{YYYY-MM-DD|YYYY-MM}.zip
    /data/futures/um/{daily|monthly}/klines/{SYM}/{I}/{SYM}-{I}-{date}.zip
    /data/futures/um/monthly/fundingRate/{SYM}/{SYM}-fundingRate-{YYYY-MM}.zip
    /data/futures/um/daily/metrics/{SYM}/{SYM}-metrics-{YYYY-MM-DD}.zip
    ... and each ``<zip>.CHECKSUM`` (``<sha256 hex>  <zip name>``, no newline, as real)

As the real archive: spot kline times are µs from 2025-01-01 on (ms before), USD-M kline
files carry a header row from 2022-05 on (none before), funding and metrics files always do;
a daily file appears once its day has ended, a monthly one once its month has; days before
the listing (spot 2017-01-01 here, perp 2019-09-08, metrics 2020-09-01) are 404. Zips are
byte-deterministic (fixed member timestamp: the publication day), so a checksum is stable.
Archive faults (``sandbox/faults.py``) change what is published: see that module.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import binance_metrics as bm
from btc_assets.sandbox import market as mk
from btc_assets.sandbox.binance_klines import INTERVAL_MINUTES, Market, _day_text
from btc_assets.sandbox.faults import Fault
from btc_assets.sandbox.routes import (
    Route,
    SandboxRequest,
    SandboxResponse,
    SandboxState,
    register,
)

SPOT_MICROS_SINCE = date(2025, 1, 1)
UM_HEADER_SINCE = date(2022, 5, 1)
KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate"
METRICS_HEADER = (
    "create_time,symbol,sum_open_interest,sum_open_interest_value,"
    "count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,"
    "sum_taker_long_short_vol_ratio"
)
EIGHT_HOURS_MS = 8 * 3_600_000
_PATH = re.compile(
    r"/data/(?P<market>spot|futures/um)/(?P<period>daily|monthly)/"
    r"(?P<kind>klines|fundingRate|metrics)/(?P<symbol>[A-Z0-9]+)/(?:(?P<interval>\w+)/)?"
    r"(?P<name>(?P=symbol)-(?P<tag>\w+)-(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.zip)"
    r"(?P<checksum>\.CHECKSUM)?"
)


@dataclass(frozen=True)
class ArchiveFile:
    """One published zip: what it holds and which UTC days its rows fall in."""

    kind: str  # klines | fundingRate | metrics
    market: Market
    symbol: str
    minutes: int  # kline interval (0 otherwise)
    period: str
    days: tuple[date, ...]
    name: str

    @property
    def published(self) -> date:
        """The day the file appears: after its day, or after its month."""
        return self.days[-1] + timedelta(days=1)

    @property
    def listed(self) -> date:
        if self.kind == "metrics":
            return bm.METRICS_SINCE
        return mk.EPOCH if self.market == "spot" else mk.PERP_LISTED

    def default_header(self) -> bool:
        return self.kind != "klines" or (self.market == "perp" and self.days[0] >= UM_HEADER_SINCE)


def parse_path(path: str) -> ArchiveFile | None:
    """The file a path names, or None when the real archive has no such path."""
    m = _PATH.fullmatch(path.removesuffix(".CHECKSUM") if path.endswith(".CHECKSUM") else path)
    if m is None:
        return None
    kind, period, spot = m["kind"], m["period"], m["market"] == "spot"
    if kind == "klines":
        if m["interval"] != m["tag"] or m["tag"] not in INTERVAL_MINUTES:
            return None
    elif spot or m["interval"] is not None or m["tag"] != kind:
        return None
    if (kind, period) in {("fundingRate", "daily"), ("metrics", "monthly")}:
        return None
    parts = [int(p) for p in m["date"].split("-")]
    if (len(parts) == 3) != (period == "daily"):
        return None
    try:
        first = date(parts[0], parts[1], parts[2] if period == "daily" else 1)
    except ValueError:
        return None
    if period == "daily":
        days: tuple[date, ...] = (first,)
    else:
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        days = tuple(first + timedelta(n) for n in range((following - first).days))
    minutes = INTERVAL_MINUTES[m["tag"]] if kind == "klines" else 0
    market: Market = "spot" if spot else "perp"
    return ArchiveFile(kind, market, m["symbol"], minutes, period, days, m["name"])


def _kline_rows(seed: int, f: ArchiveFile, key: str, day: date, micros: bool) -> list[str]:
    head, tail = _day_text(seed, key, day, f.market, f.minutes)
    step = f.minutes * mk.MINUTE_MS
    unit = 1000 if micros else 1
    first = mk.EPOCH_MS + mk.day_index(day) * mk.DAY_MS
    if not head:
        return []
    opens = (first + np.arange(len(head), dtype=np.int64) * step) * unit
    closes = opens + step * unit - 1
    fields = [x for row in zip(opens.tolist(), head, closes.tolist(), tail, strict=True)
              for x in row]  # fmt: skip
    return ("\n".join(["%d,%s,%d,%s"] * len(head)) % tuple(fields)).replace('"', "").split("\n")


def _funding_rows(seed: int, f: ArchiveFile, key: str, day: date, micros: bool) -> list[str]:
    """Settlements stamped on ``day``: 00:00 (the previous day's last), 08:00 and 16:00."""
    listed_ms = mk.instrument(key).perp_listed_ms
    before = mk.market_day(seed, key, day - timedelta(days=1)).funding
    today = mk.market_day(seed, key, day).funding
    times = [int(before.time_ms[2]), int(today.time_ms[0]), int(today.time_ms[1])]
    rates = [float(before.rate[2]), float(today.rate[0]), float(today.rate[1])]
    unit = 1000 if micros else 1
    return [
        f"{t * unit},8,{r:.8f}"
        for t, r in zip(times, rates, strict=True)
        if t // EIGHT_HOURS_MS * EIGHT_HOURS_MS > listed_ms  # as REST: none at the listing
    ]


def _metrics_rows(seed: int, f: ArchiveFile, key: str, day: date) -> list[str]:
    m = bm.metrics_day(seed, key, day)
    stamps = np.datetime_as_string(m.create_ms.astype("datetime64[ms]"), unit="s")
    return [
        f"{str(t).replace('T', ' ')},{f.symbol},{oi:.3f},{v:.2f},{c:.4f},{s:.4f},{a:.4f},{k:.4f}"
        for t, oi, v, c, s, a, k in zip(
            stamps, m.open_interest.tolist(), m.open_interest_value.tolist(),
            m.count_toptrader_ratio.tolist(), m.sum_toptrader_ratio.tolist(),
            m.count_long_short_ratio.tolist(), m.taker_vol_ratio.tolist(), strict=True,
        )
    ]  # fmt: skip


def _bump(row: str, revision: int) -> str:
    """The row with its third field raised by ``revision`` units of its last digit."""
    fields = row.split(",")
    text = fields[2]
    places = len(text.partition(".")[2])
    fields[2] = f"{Decimal(text) + revision * Decimal(10) ** -places:.{places}f}"
    return ",".join(fields)


@dataclass(frozen=True)
class Variant:
    """How the faults change a published file (hashable: zips are cached per variant)."""

    micros: bool = False
    header: bool | None = None
    cut: tuple[tuple[date, int], ...] = ()  # (day, rows dropped from its end)
    revision: int = 0
    revised_days: tuple[date, ...] = ()
    corrupt: bool = False
    # The vendor's own history, as the REST routes serve it: (day, first minute, minutes)
    # of 1m bars missing (gap) or printed with high and low swapped (bad_ohlc).
    holes: tuple[tuple[date, int, int], ...] = ()
    bad_prints: tuple[tuple[date, int, int], ...] = ()


@lru_cache(maxsize=32)
def published_zip(seed: int, f: ArchiveFile, variant: Variant, key: str, listed: date) -> bytes:
    """The zip as the archive publishes it (one CSV member, deterministic bytes). ``key`` is
    the instrument's perp symbol (its market's key), ``listed`` its first day there."""
    cut = dict(variant.cut)
    lines: list[str] = []
    header = variant.header if variant.header is not None else f.default_header()
    if header:
        lines.append(
            {"klines": KLINE_HEADER, "fundingRate": FUNDING_HEADER, "metrics": METRICS_HEADER}[
                f.kind
            ]
        )
    for day in f.days:
        if day < listed:
            continue
        if f.kind == "klines":
            spot_micros = f.market == "spot" and day >= SPOT_MICROS_SINCE
            rows = _kline_rows(seed, f, key, day, variant.micros or spot_micros)
        elif f.kind == "fundingRate":
            rows = _funding_rows(seed, f, key, day, variant.micros)
        else:
            rows = _metrics_rows(seed, f, key, day)
        if f.kind == "klines" and f.minutes == 1:
            rows = _history_faults(rows, day, variant)
        if day in cut:
            rows = rows[: max(0, len(rows) - cut[day])]
        if variant.revision and day in variant.revised_days and rows:
            rows[0] = _bump(rows[0], variant.revision)
        lines.extend(rows)
    csv = ("\n".join(lines) + "\n").encode()
    stamp = f.published + timedelta(days=variant.revision)
    info = zipfile.ZipInfo(f.name.removesuffix(".zip") + ".csv", (stamp.year, stamp.month,
                           stamp.day, 7, 48, 26))  # fmt: skip
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, as the real files
    info.external_attr = 0o100644 << 16
    buffer = io.BytesIO()
    # Level 1: the same deflate format at a third of level 6's time (zlib is most of a file's
    # cost); only the size differs, and the synthetic archive promises no real file's bytes.
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, csv, compresslevel=1)
    data = buffer.getvalue()
    return data[: len(data) // 2] if variant.corrupt else data


def _history_faults(rows: list[str], day: date, variant: Variant) -> list[str]:
    """A 1m day's rows (row i opens at minute i) with its bad prints and holes."""
    rows = list(rows)
    for bad_day, first, count in variant.bad_prints:
        if bad_day == day:
            for i in range(first, min(first + count, len(rows))):
                fields = rows[i].split(",")
                fields[2], fields[3] = fields[3], fields[2]
                rows[i] = ",".join(fields)
    gone = {i for d, first, count in variant.holes if d == day for i in range(first, first + count)}
    return [row for i, row in enumerate(rows) if i not in gone] if gone else rows


def variant_of(f: ArchiveFile, faults: Sequence[Fault]) -> Variant:
    hits = [x for x in faults if x.covers(f.days)]
    kinds = {x.kind for x in hits}
    header = next((x.present for x in hits if x.kind == "header"), None)
    cut = tuple(
        (day, x.drop_rows)
        for x in hits
        if x.kind == "truncated_archive"
        for day in (f.days if x.day is None else (x.day,))
    )
    replaced = [x for x in hits if x.kind == "replaced"]
    revised = tuple(d for x in replaced for d in (f.days if x.day is None else (x.day,)))
    return Variant(
        micros="microseconds" in kinds, header=header, cut=cut,
        revision=max((x.revision for x in replaced), default=0), revised_days=revised,
        corrupt="corrupt_zip" in kinds,
        holes=tuple((x.day, x.start_minute, x.minutes) for x in hits
                    if x.kind == "gap" and x.day is not None),
        bad_prints=tuple((x.day, x.start_minute, x.minutes) for x in hits
                         if x.kind == "bad_ohlc" and x.day is not None),
    )  # fmt: skip


def _not_found(path: str) -> SandboxResponse:
    """What the real host (S3 behind CloudFront) answers for a missing key."""
    key = path.lstrip("/")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
        f"<Message>The specified key does not exist.</Message><Key>{key}</Key></Error>"
    ).encode()
    return SandboxResponse.raw(404, body, content_type="application/xml")


def _handle(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    f = parse_path(req.path)
    inst = None
    if f is not None:
        inst = (
            state.universe.spot(f.symbol) if f.market == "spot" else state.universe.perp(f.symbol)
        )
    if f is None or inst is None:
        return _not_found(req.path)
    listed_ms = inst.spot_listed_ms if f.market == "spot" else inst.perp_listed_ms
    listed = max(f.listed, mk.day_of_ms(listed_ms))
    if f.days[-1] < listed:
        return _not_found(req.path)
    if f.days[-1] >= mk.EPOCH + timedelta(days=mk.HORIZON_DAYS - 1):
        return _not_found(req.path)  # past the synthetic market's horizon
    published_ms = mk.EPOCH_MS + mk.day_index(f.published) * mk.DAY_MS
    if state.now_ms() < published_ms:
        return _not_found(req.path)  # not yet published
    if any(x.kind == "archive_404" and x.covers(f.days) for x in faults):
        return _not_found(req.path)
    data = published_zip(state.seed, f, variant_of(f, faults), inst.perp, listed)
    if not req.path.endswith(".CHECKSUM"):
        return SandboxResponse.raw(200, data, content_type="application/zip")
    if any(x.kind == "checksum_mismatch" and x.covers(f.days) for x in faults):
        data += b"stale"  # the hash of some other bytes
    text = f"{hashlib.sha256(data).hexdigest()}  {f.name}"
    return SandboxResponse.raw(200, text.encode(), content_type="binary/octet-stream")


def _render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    """HTTP faults as the CDN in front of S3 answers them (XML, no vendor codes)."""
    status = int(fault.kind) if fault.kind.isdigit() else 500
    code = {429: "SlowDown", 418: "SlowDown", 503: "SlowDown"}.get(status, "InternalError")
    body = f"<Error><Code>{code}</Code><Message>injected {fault.kind}</Message></Error>"
    headers = {}
    if status in (418, 429):
        after = fault.retry_after if fault.retry_after is not None else 1
        headers["retry-after"] = fault.retry_after_header or str(after)
    return SandboxResponse.raw(status, body.encode(), headers, content_type="application/xml")


register(
    Route(
        "binance-archive", "/data/", _handle, _render_fault, pattern=re.compile(r"/data/.+"),
        fault_path=lambda path: path.removesuffix(".CHECKSUM"),
    )
)  # fmt: skip
