"""The offline vendor: a deterministic synthetic market behind the vendors' real URL paths.

- ``universe``     the instruments it lists: perps, spot pairs, listing dates, tick and step
- ``market``       synthetic spot/perp minutes and funding per instrument, a pure function
                   of (seed, symbol, day)
- ``routes``       the registry vendor modules add their URL paths to
- ``binance``      Binance spot / USD-M routes (one module per vendor; ``binance_common`` and
                   ``binance_klines`` are its helpers, ``binance_exchange_info`` its
                   exchangeInfo routes, ``binance_account`` the signed
                   ``commissionRate``); a new vendor module registers its
                   routes and is imported by ``transport``
- ``binance_archive`` data.binance.vision: daily/monthly zips + ``.CHECKSUM`` from the same
                   market (``binance_metrics``: the 5m open-interest and ratio model, also
                   behind ``/futures/data/openInterestHist``)
- ``coinglass``    CoinGlass v4 history routes (``coinglass_market``: its series, derived
                   from the same market); ``coinglass_heatmap`` the liquidation heatmaps,
                   ``coinglass_whales`` the Hyperliquid whale positions and events
- ``market_events`` the liquidation cascades and funding spikes the market is given
- ``binance_stream`` the kline websocket's feed (in-process connector); ``stream_server``
                   serves it on loopback
- ``coinapi``      CoinAPI OHLCV and metrics (``coinapi_market``: the same market's minutes)
- ``fred``         FRED observations with vintages, on the Fed's calendar (``us_calendar``)
- ``alphavantage`` Alpha Vantage daily equity and FX series (``alphavantage_market``), NYSE
                   sessions
- ``cryptoquant``  CryptoQuant daily BTC exchange flows, correlated with the market, revised
                   weekly
- ``telegram``     the Bot API's ``sendMessage``, with its chats
- ``credentials``  the sandbox's own keys (not secrets), importable without the market
- ``faults``       fault plans from JSON (``BTC_ASSETS_SANDBOX_FAULTS``)
- ``transport``    ``SandboxTransport``: in-process ``httpx`` transport, any host
- ``server``       ``serve_sandbox``: the same routes on a loopback socket

    from btc_assets.sandbox.transport import SandboxTransport
    from btc_assets.sandbox.server import serve_sandbox

    transport = SandboxTransport(seed=7, faults='[{"kind": "429", "count": 2}]')
    client = BinanceClient(SANDBOX_BINANCE_SPOT_URL, SANDBOX_BINANCE_FUTURES_URL,
                           transport=transport)
    with serve_sandbox(seed=7, faults=plan_json) as base_url:  # "http://127.0.0.1:PORT"
        ...

Deliberately empty: live mode imports nothing from here, and importing one submodule (the
credentials) must not load the market.
"""
