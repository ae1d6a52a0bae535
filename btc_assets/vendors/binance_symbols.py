"""Binance ``exchangeInfo`` → what the basket needs to know, checked before anything is fetched.

No HTTP here: ``BinanceClient.futures_exchange_info()`` / ``spot_exchange_info()`` fetch and
call the parsers; :func:`validate_symbols` and :func:`symbol_facts` are pure, so a test can
give them literal dictionaries.

- :func:`validate_symbols` lists every problem of a basket (``core.symbols.SymbolSpec``):
  a perp USD-M does not list, one that is not ``TRADING`` (a delisted ``SETTLING``/``CLOSE``
  perp, a ``PENDING_TRADING`` one), one that is not ``PERPETUAL`` (a dated contract), and a
  spot pair spot does not list or does not trade (``BREAK``).
- :func:`check_symbols` raises :class:`UnknownSymbolError` with all of them at once, or
  returns the :class:`SymbolFacts` the pipeline records per symbol (listing day from
  ``onboardDate``, status, tick and step from the filters).

Nothing is cached: exchangeInfo is cheap (USD-M weight 1, spot weight 20) and a symbol's
status changes (a delisting), so each run asks again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from btc_assets.core.symbols import SymbolSpec
from btc_assets.vendors.errors import VendorConfigError, VendorResponseError

VENDOR = "binance"
SYMBOLS_SETTING = "BTC_ASSETS_SYMBOLS"  # named in errors; vendors do not read settings
TRADING = "TRADING"
PERPETUAL = "PERPETUAL"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FuturesSymbolInfo:
    """One ``symbols[]`` entry of ``GET /fapi/v1/exchangeInfo``, the fields we use."""

    symbol: str
    pair: str
    contract_type: str  # PERPETUAL, CURRENT_QUARTER, NEXT_QUARTER, ...
    status: str  # TRADING, SETTLING, CLOSE, PENDING_TRADING, ...
    base_asset: str
    quote_asset: str
    onboard_ms: int | None  # listing instant
    delivery_ms: int | None  # 4133404800000 for a perpetual that trades
    tick_size: Decimal | None  # PRICE_FILTER.tickSize
    step_size: Decimal | None  # LOT_SIZE.stepSize


@dataclass(frozen=True)
class SpotSymbolInfo:
    """One ``symbols[]`` entry of ``GET /api/v3/exchangeInfo``, the fields we use."""

    symbol: str
    status: str  # TRADING, BREAK, ...
    base_asset: str
    quote_asset: str
    tick_size: Decimal | None
    step_size: Decimal | None


@dataclass(frozen=True)
class SymbolFacts:
    """What the pipeline records about one basket symbol, as Binance lists it today."""

    perp: str
    status: str
    contract_type: str
    listed_at: datetime | None  # onboardDate, UTC
    tick_size: Decimal | None
    step_size: Decimal | None
    spot: str | None
    spot_status: str | None
    spot_tick_size: Decimal | None
    spot_step_size: Decimal | None

    @property
    def listing_day(self) -> date | None:
        """The UTC day of the first bar (usually a partial day)."""
        return None if self.listed_at is None else self.listed_at.date()

    @property
    def first_full_day(self) -> date | None:
        """The first UTC day with bars from 00:00: the listing day if listed at midnight."""
        at = self.listed_at
        if at is None:
            return None
        midnight = at == datetime(at.year, at.month, at.day, tzinfo=UTC)
        return at.date() if midnight else at.date() + timedelta(days=1)


class UnknownSymbolError(VendorConfigError):
    """The basket names symbols Binance does not list or trade; ``problems`` has each one,
    ``str()`` all of them on one line with the setting to fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(tuple(problems))
        self.problems: tuple[str, ...] = tuple(problems)

    def __str__(self) -> str:
        count = len(self.problems)
        return (
            f"{SYMBOLS_SETTING}: {count} symbol{'s' if count != 1 else ''} Binance does not "
            f"serve as configured: {'; '.join(self.problems)}"
        )


# --- parsing --------------------------------------------------------------------------------


def _bad(endpoint: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, endpoint, None, status=200, message=message)


def _entries(payload: Any, endpoint: str) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        raise _bad(endpoint, f"expected a JSON object, got {type(payload).__name__}")
    if "symbols" not in payload and "code" in payload:  # an error object in HTTP 200
        raise _bad(endpoint, f"error code {payload.get('code')}: {payload.get('msg')}")
    entries = payload.get("symbols")
    if not isinstance(entries, list):
        raise _bad(endpoint, "no 'symbols' list in the answer")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str):
            raise _bad(endpoint, f"symbols[{i}] has no 'symbol': {str(entry)[:120]}")
    return entries


def _filter_value(entry: Mapping[str, Any], kind: str, key: str, endpoint: str) -> Decimal | None:
    for item in entry.get("filters") or ():
        if isinstance(item, dict) and item.get("filterType") == kind and key in item:
            try:
                value = Decimal(str(item[key]).strip())
            except InvalidOperation:
                raise _bad(
                    endpoint, f"{entry['symbol']}: {kind}.{key}={item[key]!r} is not a number"
                ) from None
            return value if value.is_finite() and value > 0 else None
    return None


def _ms(entry: Mapping[str, Any], key: str, endpoint: str) -> int | None:
    raw = entry.get(key)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise _bad(endpoint, f"{entry['symbol']}: {key}={raw!r} is not a time in ms") from None


def parse_futures_exchange_info(payload: Any, endpoint: str) -> dict[str, FuturesSymbolInfo]:
    """USD-M ``exchangeInfo`` → its symbols by name (other keys are ignored)."""
    out = {}
    for e in _entries(payload, endpoint):
        out[e["symbol"]] = FuturesSymbolInfo(
            symbol=e["symbol"],
            pair=str(e.get("pair", "")),
            contract_type=str(e.get("contractType", "")),
            status=str(e.get("status", "")),
            base_asset=str(e.get("baseAsset", "")),
            quote_asset=str(e.get("quoteAsset", "")),
            onboard_ms=_ms(e, "onboardDate", endpoint),
            delivery_ms=_ms(e, "deliveryDate", endpoint),
            tick_size=_filter_value(e, "PRICE_FILTER", "tickSize", endpoint),
            step_size=_filter_value(e, "LOT_SIZE", "stepSize", endpoint),
        )
    return out


def parse_spot_exchange_info(payload: Any, endpoint: str) -> dict[str, SpotSymbolInfo]:
    """Spot ``exchangeInfo`` → its symbols by name."""
    out = {}
    for e in _entries(payload, endpoint):
        out[e["symbol"]] = SpotSymbolInfo(
            symbol=e["symbol"],
            status=str(e.get("status", "")),
            base_asset=str(e.get("baseAsset", "")),
            quote_asset=str(e.get("quoteAsset", "")),
            tick_size=_filter_value(e, "PRICE_FILTER", "tickSize", endpoint),
            step_size=_filter_value(e, "LOT_SIZE", "stepSize", endpoint),
        )
    return out


# --- checking the basket ----------------------------------------------------------------------


def _perp_problem(spec: SymbolSpec, info: FuturesSymbolInfo | None) -> str | None:
    if info is None:
        return f"{spec.perp} is unknown to Binance USD-M futures"
    if info.contract_type != PERPETUAL:
        return f"{spec.perp} is a {info.contract_type or 'dated'} contract, not a PERPETUAL"
    if info.status != TRADING:
        return f"{spec.perp} is not trading on USD-M (status {info.status}: delisted or not live)"
    return None


def _spot_problem(spec: SymbolSpec, info: SpotSymbolInfo | None) -> str | None:
    if spec.spot is None:
        return None
    if info is None:
        return (
            f"{spec.perp}: its spot pair {spec.spot} is unknown to Binance spot (name it with "
            f":spot=PAIR, or write :spot=- if it has none)"
        )
    if info.status != TRADING:
        return f"{spec.perp}: its spot pair {spec.spot} is not trading (status {info.status})"
    return None


def validate_symbols(
    specs: Sequence[SymbolSpec],
    futures_info: Mapping[str, FuturesSymbolInfo],
    spot_info: Mapping[str, SpotSymbolInfo],
) -> list[str]:
    """Every problem of the basket, one sentence each naming the symbol (empty: all good).

    A perp USD-M does not list is one problem (its spot pair is not checked); a listed one
    may have two (its own status, its spot pair's)."""
    problems = []
    for spec in specs:
        perp = futures_info.get(spec.perp)
        problem = _perp_problem(spec, perp)
        if problem is not None:
            problems.append(problem)
        if perp is None:
            continue  # an unknown perp is most likely a typo: its spot pair is no news
        problem = _spot_problem(spec, spot_info.get(spec.spot) if spec.spot else None)
        if problem is not None:
            problems.append(problem)
    return problems


def symbol_facts(
    spec: SymbolSpec,
    futures_info: Mapping[str, FuturesSymbolInfo],
    spot_info: Mapping[str, SpotSymbolInfo],
) -> SymbolFacts:
    """What exchangeInfo says of one symbol (KeyError if USD-M does not list its perp)."""
    perp = futures_info[spec.perp]
    spot = spot_info.get(spec.spot) if spec.spot else None
    listed = perp.onboard_ms
    return SymbolFacts(
        perp=spec.perp,
        status=perp.status,
        contract_type=perp.contract_type,
        listed_at=None if listed is None else EPOCH + timedelta(milliseconds=listed),
        tick_size=perp.tick_size,
        step_size=perp.step_size,
        spot=spec.spot,
        spot_status=None if spot is None else spot.status,
        spot_tick_size=None if spot is None else spot.tick_size,
        spot_step_size=None if spot is None else spot.step_size,
    )


def check_symbols(
    specs: Sequence[SymbolSpec],
    futures_info: Mapping[str, FuturesSymbolInfo],
    spot_info: Mapping[str, SpotSymbolInfo],
) -> dict[str, SymbolFacts]:
    """The facts of every basket symbol by perp, or :class:`UnknownSymbolError` with every
    problem at once (a basket is fixed in one go, not one symbol per run)."""
    problems = validate_symbols(specs, futures_info, spot_info)
    if problems:
        raise UnknownSymbolError(problems)
    return {spec.perp: symbol_facts(spec, futures_info, spot_info) for spec in specs}
