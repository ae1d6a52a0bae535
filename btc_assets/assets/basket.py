"""The basket is checked against Binance's ``exchangeInfo`` before any feed fetches a day.

An unknown, delisted or non-perpetual symbol, or a spot pair Binance does not trade, stops
the step with one error naming every problem and ``BTC_ASSETS_SYMBOLS``, before a request
for data is sent or a file is written. Checked once per run and process (two requests:
USD-M and spot), not once per feed and symbol.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from btc_assets.core.symbols import SymbolSpec
from btc_assets.vendors.binance_symbols import SymbolFacts, check_symbols

_checked: dict[tuple[str, tuple[str, ...]], dict[str, SymbolFacts]] = {}
_lock = threading.Lock()


def check_basket(run_id: str, resources: Any, members: Sequence[Any]) -> dict[str, SymbolFacts]:
    """Every member's facts (listing day, status, tick and step), or ``UnknownSymbolError``."""
    key = (run_id, tuple(f"{m.perp}/{m.spot}" for m in members))
    with _lock:
        if key in _checked:
            return _checked[key]
        client = resources.binance.client()
        specs = [
            SymbolSpec(perp=m.perp, spot=m.spot, coin=m.coin, coinglass_pair=m.coinglass_pair)
            for m in members
        ]
        facts = check_symbols(specs, client.futures_exchange_info(), client.spot_exchange_info())
        _checked.clear()  # one run's answer at a time: a new run asks again
        _checked[key] = facts
        return facts
