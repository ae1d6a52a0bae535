"""The forecasting sources' settings: which series, their publication delays and staleness
bounds, and the vendors' base URLs. Read by ``settings.load_settings`` (the one reader of the
environment); keys and tokens are secrets and come through ``dg.EnvVar`` instead.

A series list is names separated by commas, each optionally followed by ``:delay=DUR`` (how
long after the period's close the vendor has published it, added to ``available_at``) and
``:stale=DUR`` (after how long since the period it describes a value is too old to use: null
with a reason). ``DUR`` is a number and a unit, ``m``, ``h`` or ``d``::

    BTC_ASSETS_FRED_SERIES=DGS10,DTWEXBGS:stale=10d
    BTC_ASSETS_ALPHAVANTAGE_SYMBOLS=SPY:delay=3h,UUP

The defaults are conservative (``DEFAULT_DELAYS``, ``DEFAULT_STALENESS``): a value is made
available later than the vendor usually publishes it, never earlier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from btc_assets.core.forecast_schema import CRYPTOQUANT_ASSET, JoinedSeries
from btc_assets.vendors.cryptoquant_catalogue import CATALOGUE, Metric
from btc_assets.vendors.hosts import (
    LIVE_ALPHAVANTAGE_URL,
    LIVE_COINAPI_URL,
    LIVE_CRYPTOQUANT_URL,
    LIVE_FRED_URL,
)

FRED_SERIES_SETTING = "BTC_ASSETS_FRED_SERIES"
ALPHAVANTAGE_SYMBOLS_SETTING = "BTC_ASSETS_ALPHAVANTAGE_SYMBOLS"
CRYPTOQUANT_FIELDS_SETTING = "BTC_ASSETS_CRYPTOQUANT_FIELDS"

SANDBOX_COINAPI_URL = "http://sandbox.coinapi.invalid"
SANDBOX_FRED_URL = "http://sandbox.fred.invalid"
SANDBOX_ALPHAVANTAGE_URL = "http://sandbox.alphavantage.invalid"
SANDBOX_CRYPTOQUANT_URL = "http://sandbox.cryptoquant.invalid"

# After the period's close: FRED's vintage date (US Central, FRED's clock) ends, the US
# equity session closes at 16:00 New York, the UTC day ends for CryptoQuant.
DEFAULT_DELAYS = {"fred": timedelta(0), "alphavantage": timedelta(hours=2),
                  "cryptoquant": timedelta(hours=3)}  # fmt: skip
# Measured from the start of the described date. A daily FRED value of a Wednesday before a
# Thursday holiday is followed by Friday's, published Monday and known Tuesday ~06:00 UTC:
# 6.25 days. An equity session before Good Friday is followed by Monday's, known Monday
# evening: under 5 days. The broad dollar index is published weekly.
DEFAULT_STALENESS = {"fred": timedelta(days=7), "alphavantage": timedelta(days=6),
                     "cryptoquant": timedelta(days=3)}  # fmt: skip
SERIES_STALENESS = {"DTWEXBGS": timedelta(days=12)}
DEFAULT_FRED_SERIES = "DGS10,DTWEXBGS"
DEFAULT_ALPHAVANTAGE_SYMBOLS = "SPY,UUP"
DEFAULT_CRYPTOQUANT_FIELDS = "netflow_total,reserve,inflow_total,outflow_total,exchange_whale_ratio"
_FIELD_METRIC = {f: m for m, spec in CATALOGUE.items() for f in spec.fields}
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class SeriesSetting:
    name: str  # FRED series id, ticker, or CryptoQuant field
    delay: timedelta
    max_staleness: timedelta


@dataclass(frozen=True)
class ForecastSettings:
    coinapi_base_url: str = LIVE_COINAPI_URL
    fred_base_url: str = LIVE_FRED_URL
    alphavantage_base_url: str = LIVE_ALPHAVANTAGE_URL
    cryptoquant_base_url: str = LIVE_CRYPTOQUANT_URL
    fred_series: tuple[SeriesSetting, ...] = field(
        default_factory=lambda: parse_series("fred", DEFAULT_FRED_SERIES, FRED_SERIES_SETTING)
    )
    alphavantage_symbols: tuple[SeriesSetting, ...] = field(
        default_factory=lambda: parse_series(
            "alphavantage", DEFAULT_ALPHAVANTAGE_SYMBOLS, ALPHAVANTAGE_SYMBOLS_SETTING
        )
    )
    cryptoquant_fields: tuple[SeriesSetting, ...] = field(
        default_factory=lambda: parse_series(
            "cryptoquant", DEFAULT_CRYPTOQUANT_FIELDS, CRYPTOQUANT_FIELDS_SETTING
        )
    )
    cryptoquant_exchange: str = "all_exchange"
    alphavantage_daily_limit: int = 25
    alphavantage_outputsize: str = "compact"

    def cryptoquant_metrics(self) -> list[Metric]:
        """The endpoints the configured fields come from, once each, in catalogue order."""
        wanted = {_FIELD_METRIC[s.name] for s in self.cryptoquant_fields}
        return [m for m in CATALOGUE if m in wanted]

    def joined_series(self) -> tuple[JoinedSeries, ...]:
        """Every series features_1h joins as of its publication, in column order."""
        hours = lambda s: s.max_staleness.total_seconds() / 3600  # noqa: E731
        fred = [
            JoinedSeries(f"fred_{s.name.lower()}_", "fred_series", s.name, ("value",), hours(s))
            for s in self.fred_series
        ]
        equities = [
            JoinedSeries(
                f"av_{s.name.lower()}_", "alphavantage_daily", s.name, ("close", "ret_1d"), hours(s)
            )
            for s in self.alphavantage_symbols
        ]
        onchain = [
            JoinedSeries(
                f"cq_{s.name.lower()}_",
                "cryptoquant_flows",
                "BTC",
                ("value",),
                hours(s),
                metric=str(_FIELD_METRIC[s.name]),
                exchange=self.exchange_of(s.name),
                field=s.name,
            )
            for s in self.cryptoquant_fields
        ]
        return (*fred, *equities, *onchain)

    def published_names(self) -> dict[str, list[str]]:
        """What each published table stores: its series (``DatasetResource.series``)."""
        return {
            "fred_series": [s.name for s in self.fred_series],
            "alphavantage_daily": [s.name for s in self.alphavantage_symbols],
            "cryptoquant_flows": [CRYPTOQUANT_ASSET] if self.cryptoquant_fields else [],
        }

    def exchange_of(self, field_name: str) -> str:
        per_exchange = CATALOGUE[_FIELD_METRIC[field_name]].per_exchange
        return self.cryptoquant_exchange if per_exchange else "none"


def metric_of(field_name: str) -> Metric:
    """The CryptoQuant endpoint that serves ``field_name``."""
    return _FIELD_METRIC[field_name]


def duration(text: str) -> timedelta:
    """``30m``, ``6h``, ``5d`` (a number and a unit)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 6h or 5d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_series(vendor: str, value: str, setting: str) -> tuple[SeriesSetting, ...]:
    """A series list (module docstring); a bad entry raises ValueError naming it."""
    out: list[SeriesSetting] = []
    for entry in value.split(","):
        name, *options = [part.strip() for part in entry.strip().split(":")]
        if not name or not _NAME.fullmatch(name):
            raise ValueError(f"{setting}: {entry.strip()!r} does not start with a series name")
        if vendor == "fred" or vendor == "alphavantage":
            name = name.upper()
        elif name not in _FIELD_METRIC:
            raise ValueError(
                f"{setting}: {name!r} is not a CryptoQuant field this project reads; known: "
                + ", ".join(sorted(_FIELD_METRIC))
            )
        delay = DEFAULT_DELAYS[vendor]
        stale = SERIES_STALENESS.get(name, DEFAULT_STALENESS[vendor])
        for option in options:
            key, _, given = option.partition("=")
            try:
                parsed = duration(given)
            except ValueError as exc:
                raise ValueError(f"{setting}: {entry.strip()!r}: {exc}") from None
            if key == "delay":
                delay = parsed
            elif key == "stale" and parsed > timedelta(0):
                stale = parsed
            else:
                raise ValueError(
                    f"{setting}: {entry.strip()!r}: {option!r} is not delay=DUR or stale=DUR "
                    "(DUR > 0 for stale)"
                )
        if any(s.name == name for s in out):
            raise ValueError(f"{setting}: {name} is listed twice")
        out.append(SeriesSetting(name, delay, stale))
    return tuple(out)
