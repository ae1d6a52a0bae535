"""The sandbox's instruments: which symbols it lists, since when, and on what tick and step.

A fixed, deterministic universe modelled on Binance USD-M: 20 USDT perpetuals that trade,
an index perp with no spot pair (BTCDOMUSDT), one delisted perp (MATICUSDT, ``SETTLING``,
its spot pair ``BREAK``) and one quarterly (BTCUSDT_261225, ``CURRENT_QUARTER``). Each
perp has a spot pair of the same name except the multiplier contracts (1000PEPEUSDT trades
against spot PEPEUSDT, one contract unit = 1000 coins).

Every route answers from here: a symbol not listed is refused as the vendor refuses it,
klines exist only from the listing instant (``onboardDate`` in ``exchangeInfo``) to the
delisting or delivery, and each instrument's prices sit on its own tick and step.

Levels: ``price`` is the per-coin price as a fraction of BTC's (the market draws one path
per instrument and scales it), ``activity`` the traded value as a fraction of BTC's. Real
listing dates are used where known to the day; listings after BTC's are at 08:00 UTC (a
partial first day, as on the real venue). The quarterly's path is its own draw at BTC's
level, not BTCUSDT's plus a basis: it exists to be refused as "not a perpetual", not to be
arbitraged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

Decimals = tuple[int, int, int]  # (tick, step, quote) decimal places: tick 0.1 -> 1
PERPETUAL_DELIVERY_MS = 4_133_404_800_000  # 2100-12-25 08:00, what Binance gives a perp


def _ms(text: str) -> int:
    """``YYYY-MM-DD`` (00:00) or ``YYYY-MM-DD HH:MM`` UTC as epoch ms."""
    fmt = "%Y-%m-%d %H:%M" if " " in text else "%Y-%m-%d"
    return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Instrument:
    """One USD-M contract and, if it has one, its spot pair."""

    perp: str
    base: str  # the futures baseAsset: 1000PEPE
    price: float  # per-coin price level / BTC's
    activity: float  # traded value / BTC's
    perp_listed_ms: int  # onboardDate: the first kline opens here
    perp_decimals: Decimals
    spot: str | None
    spot_listed_ms: int
    spot_decimals: Decimals
    quote: str = "USDT"
    multiplier: int = 1  # coins per contract unit
    contract_type: str = "PERPETUAL"
    status: str = "TRADING"
    # Delisting (a SETTLING/CLOSE perp) or delivery (a quarterly): no kline opens at or after.
    perp_end_ms: int | None = None
    spot_status: str = "TRADING"
    spot_end_ms: int | None = None

    @property
    def coin(self) -> str:
        """CoinGlass's coin: the base asset without its multiplier."""
        prefix = str(self.multiplier) if self.multiplier > 1 else ""
        return self.base.removeprefix(prefix)

    @property
    def spot_base(self) -> str:
        return self.coin

    @property
    def is_perpetual(self) -> bool:
        return self.contract_type == "PERPETUAL"

    @property
    def delivery_ms(self) -> int:
        return self.perp_end_ms if self.perp_end_ms is not None else PERPETUAL_DELIVERY_MS

    def listed_ms(self, spot: bool) -> int:
        return self.spot_listed_ms if spot else self.perp_listed_ms

    def end_ms(self, spot: bool) -> int | None:
        """The instant after the last kline's open (None: still trading)."""
        return self.spot_end_ms if spot else self.perp_end_ms

    def decimals(self, spot: bool) -> Decimals:
        return self.spot_decimals if spot else self.perp_decimals


def _perp(
    perp: str, price: float, activity: float, listed: str, perp_dp: Decimals, spot_listed: str,
    spot_dp: Decimals, *, multiplier: int = 1, spot: str | None = "", **more: object,
) -> Instrument:  # fmt: skip
    base = perp.removesuffix("USDT")
    coin = base.removeprefix(str(multiplier)) if multiplier > 1 else base
    return Instrument(
        perp=perp, base=base, price=price, activity=activity, perp_listed_ms=_ms(listed),
        perp_decimals=perp_dp, spot=(coin + "USDT") if spot == "" else spot,
        spot_listed_ms=_ms(spot_listed), spot_decimals=spot_dp, multiplier=multiplier,
        **more,  # type: ignore[arg-type]
    )  # fmt: skip


# BTCUSDT keeps the market's original calendar: spot from the epoch, the perp from
# 2019-09-08 00:00 (its real onboardDate is 17:55 that day).
INSTRUMENTS: tuple[Instrument, ...] = (
    _perp("BTCUSDT", 1.0, 1.0, "2019-09-08", (1, 3, 5), "2017-01-01", (2, 5, 8)),
    _perp("ETHUSDT", 0.05, 0.5, "2019-11-27 08:00", (2, 3, 5), "2017-08-17", (2, 4, 8)),
    _perp("BCHUSDT", 6.7e-3, 0.03, "2019-12-09 08:00", (2, 3, 5), "2019-11-28", (1, 3, 8)),
    _perp("XRPUSDT", 1e-5, 0.12, "2020-01-06 08:00", (4, 1, 5), "2018-05-04", (4, 0, 8)),
    _perp("LTCUSDT", 1.3e-3, 0.03, "2020-01-09 08:00", (2, 3, 5), "2017-12-13", (2, 3, 8)),
    _perp("TRXUSDT", 2e-6, 0.02, "2020-01-15 08:00", (5, 0, 5), "2018-06-11", (4, 1, 8)),
    _perp("LINKUSDT", 2.5e-4, 0.03, "2020-01-17 08:00", (3, 2, 5), "2019-01-16", (2, 2, 8)),
    _perp("ADAUSDT", 7.5e-6, 0.04, "2020-01-31 08:00", (4, 0, 5), "2018-04-17", (4, 1, 8)),
    _perp("BNBUSDT", 0.01, 0.06, "2020-02-10 08:00", (2, 2, 5), "2017-11-06", (2, 3, 8)),
    _perp("DOGEUSDT", 2.5e-6, 0.12, "2020-07-10 08:00", (5, 0, 5), "2019-07-05", (5, 0, 8)),
    _perp("DOTUSDT", 1e-4, 0.02, "2020-08-19 08:00", (3, 1, 5), "2020-08-18", (3, 2, 8)),
    _perp("SOLUSDT", 2.5e-3, 0.25, "2020-09-14 08:00", (2, 0, 5), "2020-08-11", (2, 3, 8)),
    _perp("AVAXUSDT", 5e-4, 0.03, "2020-09-23 08:00", (3, 0, 5), "2020-09-22", (2, 2, 8)),
    _perp("NEARUSDT", 8e-5, 0.02, "2020-10-15 08:00", (3, 0, 5), "2020-10-14", (3, 1, 8)),
    _perp("1000SHIBUSDT", 3.3e-10, 0.02, "2021-05-10 08:00", (6, 0, 5), "2021-05-10",
          (8, 0, 8), multiplier=1000),
    _perp("BTCDOMUSDT", 0.033, 0.002, "2021-06-09 08:00", (1, 3, 5), "2021-06-09",
          (1, 3, 8), spot=None),
    _perp("OPUSDT", 3.3e-5, 0.02, "2022-06-01 08:00", (4, 1, 5), "2022-06-01", (4, 2, 8)),
    _perp("APTUSDT", 1.5e-4, 0.02, "2022-10-19 08:00", (4, 1, 5), "2022-10-19", (4, 2, 8)),
    _perp("ARBUSDT", 1.3e-5, 0.02, "2023-03-23 08:00", (4, 1, 5), "2023-03-23", (4, 1, 8)),
    _perp("SUIUSDT", 2.5e-5, 0.05, "2023-05-03 08:00", (4, 1, 5), "2023-05-03", (4, 1, 8)),
    _perp("1000PEPEUSDT", 1.7e-10, 0.06, "2023-05-05 08:00", (7, 0, 5), "2023-05-05",
          (8, 0, 8), multiplier=1000),
    # Delisted: MATIC became POL; the perp settles, the spot pair is halted.
    _perp("MATICUSDT", 8e-6, 0.02, "2020-10-22 08:00", (4, 0, 5), "2019-04-26", (4, 1, 8),
          status="SETTLING", perp_end_ms=_ms("2024-09-10 08:00"), spot_status="BREAK",
          spot_end_ms=_ms("2024-09-10 04:00")),
    # A dated contract on BTC: listed, trading, but not a perpetual.
    Instrument(
        perp="BTCUSDT_261225", base="BTC", price=1.0, activity=0.01,
        perp_listed_ms=_ms("2026-06-26 08:00"), perp_decimals=(1, 3, 5), spot=None,
        spot_listed_ms=_ms("2026-06-26 08:00"), spot_decimals=(2, 5, 8),
        contract_type="CURRENT_QUARTER", perp_end_ms=_ms("2026-12-25 08:00"),
    ),
)  # fmt: skip
BY_PERP: dict[str, Instrument] = {i.perp: i for i in INSTRUMENTS}
DEFAULT_SYMBOL = "BTCUSDT"


class Universe:
    """The instruments one sandbox lists (all of :data:`INSTRUMENTS`, or a chosen few)."""

    def __init__(self, symbols: Iterable[str] | None = None) -> None:
        if symbols is None:
            chosen = list(INSTRUMENTS)
        else:
            wanted = {s.upper() for s in symbols}
            by_spot = {i.spot: i for i in INSTRUMENTS if i.spot}
            unknown = sorted(wanted - set(BY_PERP) - set(by_spot))
            if unknown:
                raise ValueError(
                    f"the sandbox does not model {unknown}; it lists {sorted(BY_PERP)}"
                )
            chosen = [i for i in INSTRUMENTS if i.perp in wanted or i.spot in wanted]
        self.instruments: tuple[Instrument, ...] = tuple(chosen)
        self._perps = {i.perp: i for i in chosen}
        self._spots = {i.spot: i for i in chosen if i.spot}

    def perp(self, symbol: str) -> Instrument | None:
        return self._perps.get(symbol)

    def spot(self, symbol: str) -> Instrument | None:
        return self._spots.get(symbol)

    def coin(self, coin: str) -> Instrument | None:
        """The perpetual CoinGlass aggregates a coin from (a dated contract never)."""
        return next((i for i in self.instruments if i.is_perpetual and i.coin == coin), None)

    @property
    def perp_symbols(self) -> list[str]:
        return sorted(self._perps)

    @property
    def spot_symbols(self) -> list[str]:
        return sorted(self._spots)
