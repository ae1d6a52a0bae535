"""The symbol universe: which USD-M perpetuals the project follows, and what each maps to.

A basket is written as a comma list, one entry per USD-M perpetual, each entry the perp
symbol optionally followed by ``:key=value`` options (no spaces inside an entry)::

    BTCUSDT,ETHUSDT,1000PEPEUSDT,BTCDOMUSDT:spot=-,XYZUSDT:spot=XYZUSDC:coin=XYZ:pair=XYZUSDT

``spot=SYMBOL``  the Binance spot pair; ``spot=-`` when the perp has none (an index perp
                 such as BTCDOMUSDT). Default: the perp symbol itself, except for a
                 multiplier contract (below), whose default is the coin + quote
                 (1000PEPEUSDT -> PEPEUSDT), the spot pair Binance actually lists.
``coin=COIN``    the coin CoinGlass aggregates over (open interest, funding, liquidations,
                 aggregated taker volume). Default: the perp symbol minus its quote asset
                 (USDT, USDC or BUSD) minus a multiplier prefix.
``pair=SYMBOL``  the pair CoinGlass's pair endpoints (price, pair taker volume) take on the
                 configured exchange. Default: the perp symbol.

Multiplier contracts: Binance lists low-priced coins as contracts on 1000 (or 10000,
100000, 1000000, 10000000) coins, named with that number in front of the coin:
1000PEPEUSDT, 1000000MOGUSDT. A perp whose base asset is such a number followed by a letter
has ``multiplier`` = that number and the coin is the rest (PEPE, MOG); its price is
``multiplier`` times the spot pair's. Other leading digits are part of the name (1INCHUSDT's
coin is 1INCH).

Symbols are upper-case letters and digits, 1-20 characters (Binance's rule, minus the
``-_.`` only dated contracts use). Nothing here knows the environment: ``settings.py``
wraps a :class:`SymbolSyntaxError` into an error naming its variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NO_SPOT = "-"
QUOTE_ASSETS = ("USDT", "USDC", "BUSD")  # what USD-M perpetuals settle in
MULTIPLIERS = (10_000_000, 1_000_000, 100_000, 10_000, 1000)  # longest prefix first
OPTIONS = ("spot", "coin", "pair")
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}")


class SymbolSyntaxError(ValueError):
    """A basket entry cannot be read; ``str()`` names the entry and what is wrong."""


@dataclass(frozen=True)
class SymbolSpec:
    """One USD-M perpetual of the basket and the names it has elsewhere.

    ``perp``            the Binance USD-M perpetual, e.g. ``1000PEPEUSDT``
    ``spot``            its Binance spot pair (``PEPEUSDT``), None if it has none
    ``coin``            the CoinGlass coin-level symbol (``PEPE``)
    ``coinglass_pair``  the pair CoinGlass's pair endpoints take (``1000PEPEUSDT``)
    """

    perp: str
    spot: str | None
    coin: str
    coinglass_pair: str

    @property
    def quote(self) -> str | None:
        """The quote asset the perp symbol ends with (USDT, USDC, BUSD), if any."""
        return next((q for q in QUOTE_ASSETS if _ends_with_quote(self.perp, q)), None)

    @property
    def multiplier(self) -> int:
        """Coins per contract unit: 1000 for 1000PEPEUSDT, else 1 (see the module)."""
        return _split_multiplier(_base_of(self.perp))[0]


def _ends_with_quote(symbol: str, quote: str) -> bool:
    return symbol.endswith(quote) and len(symbol) > len(quote)


def _base_of(symbol: str) -> str:
    for quote in QUOTE_ASSETS:
        if _ends_with_quote(symbol, quote):
            return symbol[: -len(quote)]
    return symbol


def _split_multiplier(base: str) -> tuple[int, str]:
    """(multiplier, coin) of a base asset: ``1000PEPE`` -> (1000, ``PEPE``)."""
    for multiplier in MULTIPLIERS:
        prefix = str(multiplier)
        rest = base.removeprefix(prefix)
        if rest != base and rest[:1].isalpha():
            return multiplier, rest
    return 1, base


def coin_of(symbol: str) -> str:
    """The coin-level symbol CoinGlass aggregates over: BTCUSDT -> BTC, 1000PEPEUSDT -> PEPE."""
    return _split_multiplier(_base_of(symbol))[1]


def default_spot(perp: str) -> str:
    """The spot pair a perp maps to unless told: itself, or coin + quote for a multiplier
    contract (1000PEPEUSDT -> PEPEUSDT)."""
    base = _base_of(perp)
    multiplier, coin = _split_multiplier(base)
    return perp if multiplier == 1 else coin + perp[len(base) :]


def symbol_spec(
    perp: str, *, spot: str | None = "", coin: str = "", coinglass_pair: str = ""
) -> SymbolSpec:
    """A spec with the defaults filled in (``spot=""`` means the default, None no spot)."""
    return SymbolSpec(
        perp=perp,
        spot=default_spot(perp) if spot == "" else spot,
        coin=coin or coin_of(perp),
        coinglass_pair=coinglass_pair or perp,
    )


def _checked_name(text: str, what: str, entry: str) -> str:
    if text != text.strip() or not text:
        raise SymbolSyntaxError(f"entry {entry!r}: {what} is empty or has spaces")
    if text.upper() != text and _SYMBOL.fullmatch(text.upper()):
        raise SymbolSyntaxError(
            f"entry {entry!r}: {what} {text!r} is not upper-case (write {text.upper()})"
        )
    if not _SYMBOL.fullmatch(text):
        raise SymbolSyntaxError(
            f"entry {entry!r}: {what} {text!r} is not 1-20 upper-case letters and digits"
        )
    return text


def parse_entry(entry: str) -> SymbolSpec:
    """One basket entry, e.g. ``1000PEPEUSDT:spot=PEPEUSDT:coin=PEPE``."""
    perp_text, *option_texts = entry.split(":")
    perp = _checked_name(perp_text, "the perp symbol", entry)
    options: dict[str, str] = {}
    for text in option_texts:
        key, sep, value = text.partition("=")
        if not sep or key not in OPTIONS:
            raise SymbolSyntaxError(
                f"entry {entry!r}: {text!r} is not an option; write "
                + ", ".join(f"{o}=..." for o in OPTIONS)
            )
        if key in options:
            raise SymbolSyntaxError(f"entry {entry!r}: {key}= is given twice")
        if key == "spot" and value == NO_SPOT:
            options[key] = value
        else:
            options[key] = _checked_name(value, f"{key}=", entry)
    if "coin" not in options and not any(_ends_with_quote(perp, q) for q in QUOTE_ASSETS):
        raise SymbolSyntaxError(
            f"entry {entry!r}: {perp} does not end with a USD-M quote asset "
            f"({', '.join(QUOTE_ASSETS)}); name its coin with :coin=..."
        )
    spot = options.get("spot", "")
    return symbol_spec(
        perp,
        spot=None if spot == NO_SPOT else spot,
        coin=options.get("coin", ""),
        coinglass_pair=options.get("pair", ""),
    )


def parse_symbols(text: str) -> tuple[SymbolSpec, ...]:
    """A whole basket (comma list, spaces around entries ignored), in the order written.

    Raises :class:`SymbolSyntaxError` naming the first bad entry: an empty entry, bad
    characters, lower case, an unknown or repeated option, or a perp listed twice.
    """
    entries = [e.strip() for e in text.split(",")]
    if not any(entries):
        raise SymbolSyntaxError("no symbol given")
    specs: list[SymbolSpec] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries, start=1):
        if not entry:
            raise SymbolSyntaxError(f"entry #{position} is empty (two commas in a row?)")
        spec = parse_entry(entry)
        if spec.perp in seen:
            raise SymbolSyntaxError(f"entry {entry!r}: {spec.perp} is listed twice")
        seen.add(spec.perp)
        specs.append(spec)
    return tuple(specs)


def format_symbols(specs: tuple[SymbolSpec, ...]) -> str:
    """The shortest basket text that parses back to ``specs`` (defaults left out)."""
    out = []
    for spec in specs:
        default = symbol_spec(spec.perp)
        parts = [spec.perp]
        if spec.spot != default.spot:
            parts.append(f"spot={spec.spot or NO_SPOT}")
        if spec.coin != default.coin:
            parts.append(f"coin={spec.coin}")
        if spec.coinglass_pair != default.coinglass_pair:
            parts.append(f"pair={spec.coinglass_pair}")
        out.append(":".join(parts))
    return ",".join(out)
