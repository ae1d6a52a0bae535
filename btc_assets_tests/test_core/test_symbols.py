"""The basket syntax: defaults, the multiplier rule, explicit mappings, and every bad form
refused naming the entry."""

from __future__ import annotations

import pytest

from btc_assets.core.symbols import (
    SymbolSpec,
    SymbolSyntaxError,
    coin_of,
    format_symbols,
    parse_symbols,
)


def test_defaults_spot_is_the_perp_and_coin_drops_the_quote() -> None:
    (btc, eth, usdc) = parse_symbols("BTCUSDT,ETHUSDT,SOLUSDC")
    assert btc == SymbolSpec("BTCUSDT", "BTCUSDT", "BTC", "BTCUSDT")
    assert (eth.spot, eth.coin, eth.coinglass_pair, eth.multiplier) == (
        "ETHUSDT", "ETH", "ETHUSDT", 1,
    )  # fmt: skip
    assert (usdc.coin, usdc.quote) == ("SOL", "USDC")


@pytest.mark.parametrize(
    ("perp", "coin", "spot", "multiplier"),
    [
        ("1000PEPEUSDT", "PEPE", "PEPEUSDT", 1000),
        ("1000000MOGUSDT", "MOG", "MOGUSDT", 1_000_000),
        ("10000SATSUSDT", "SATS", "SATSUSDT", 10_000),
        ("1INCHUSDT", "1INCH", "1INCHUSDT", 1),  # leading digits of a name are the name
        ("1000USDT", "1000", "1000USDT", 1),  # a number alone is not a multiplier prefix
    ],
)
def test_multiplier_prefix_rule(perp: str, coin: str, spot: str, multiplier: int) -> None:
    (spec,) = parse_symbols(perp)
    assert (spec.coin, spec.spot, spec.multiplier, spec.coinglass_pair) == (
        coin, spot, multiplier, perp,
    )  # fmt: skip
    assert coin_of(perp) == coin


def test_explicit_mappings_and_no_spot_pair() -> None:
    specs = parse_symbols(
        " BTCUSDT , 1000PEPEUSDT:spot=PEPEUSDT:coin=PEPE, BTCDOMUSDT:spot=-,"
        "XYZUSDT:pair=XYZPERPUSDT:coin=XYZ2:spot=XYZUSDC"
    )
    assert [s.perp for s in specs] == ["BTCUSDT", "1000PEPEUSDT", "BTCDOMUSDT", "XYZUSDT"]
    assert specs[1] == SymbolSpec("1000PEPEUSDT", "PEPEUSDT", "PEPE", "1000PEPEUSDT")
    assert specs[2].spot is None and specs[2].coin == "BTCDOM"
    assert specs[3] == SymbolSpec("XYZUSDT", "XYZUSDC", "XYZ2", "XYZPERPUSDT")


def test_a_coin_option_allows_a_symbol_without_a_known_quote() -> None:
    (spec,) = parse_symbols("BTCEUR:coin=BTC")
    assert (spec.coin, spec.quote) == ("BTC", None)


def test_format_is_the_shortest_text_that_parses_back() -> None:
    text = "BTCUSDT,1000PEPEUSDT,BTCDOMUSDT:spot=-,ETHUSDT:spot=ETHUSDC:coin=ETH2:pair=ETHPAIR"
    specs = parse_symbols(text)
    assert format_symbols(specs) == text
    assert parse_symbols(format_symbols(specs)) == specs
    assert format_symbols(parse_symbols("1000PEPEUSDT:spot=PEPEUSDT:coin=PEPE")) == "1000PEPEUSDT"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "no symbol given"),
        (" , ", "no symbol given"),
        ("BTCUSDT,,ETHUSDT", "entry #2 is empty"),
        ("BTCUSDT,", "entry #2 is empty"),
        ("btcusdt", "entry 'btcusdt': the perp symbol 'btcusdt' is not upper-case (write BTCUSDT)"),
        ("BTCUSDT,EthUSDT", "entry 'EthUSDT'"),
        ("BTCUSDT,ETHUSDT,BTCUSDT", "entry 'BTCUSDT': BTCUSDT is listed twice"),
        ("BTC-USDT", "entry 'BTC-USDT': the perp symbol 'BTC-USDT' is not 1-20 upper-case"),
        ("BTCUSDT_261225", "is not 1-20 upper-case letters and digits"),
        ("A" * 21 + "USDT", "is not 1-20"),
        ("BTC USDT", "entry 'BTC USDT'"),
        ("BTCUSDT:spot", "'spot' is not an option"),
        ("BTCUSDT:venue=X", "'venue=X' is not an option; write spot=..., coin=..., pair=..."),
        ("BTCUSDT:spot=BTCUSDT:spot=BTCUSDC", "spot= is given twice"),
        ("1000PEPEUSDT:spot=pepeusdt", "spot= 'pepeusdt' is not upper-case (write PEPEUSDT)"),
        ("BTCUSDT:coin=", "coin= is empty"),
        ("BTCUSDT:coin=-", "coin= '-' is not 1-20"),
        ("BTCUSDT::coin=BTC", "'' is not an option"),
        ("BTCEUR", "BTCEUR does not end with a USD-M quote asset (USDT, USDC, BUSD)"),
    ],
)
def test_bad_forms_name_the_entry_and_the_problem(text: str, said: str) -> None:
    with pytest.raises(SymbolSyntaxError) as caught:
        parse_symbols(text)
    assert said in str(caught.value)
