"""The offline vendor: a deterministic synthetic market behind the vendors' real URL paths.

- ``market``     synthetic BTC spot/perp minutes and funding, a pure function of (seed, day)
- ``routes``     the registry vendor modules add their URL paths to
- ``binance``    Binance spot / USD-M routes (one module per vendor; ``binance_common`` and
                 ``binance_klines`` are its helpers); a new vendor module registers its routes
                 and is imported by ``transport``
- ``coinglass``  CoinGlass v4 history routes (``coinglass_market``: its series, derived
                 from the same market)
- ``faults``     fault plans from JSON (``BTC_ASSETS_SANDBOX_FAULTS``)
- ``transport``  ``SandboxTransport``: in-process ``httpx`` transport, any host
- ``server``     ``serve_sandbox``: the same routes on a loopback socket

    transport = SandboxTransport(seed=7, faults='[{"kind": "429", "count": 2}]')
    client = BinanceClient(SANDBOX_BINANCE_SPOT_URL, SANDBOX_BINANCE_FUTURES_URL,
                           transport=transport)
    with serve_sandbox(seed=7, faults=plan_json) as base_url:  # "http://127.0.0.1:PORT"
        ...
"""

from btc_assets.sandbox.faults import Fault, FaultPlan, FaultPlanError
from btc_assets.sandbox.market import MarketDay, market_day
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import RecordedRequest, SandboxTransport

__all__ = [
    "Fault",
    "FaultPlan",
    "FaultPlanError",
    "MarketDay",
    "RecordedRequest",
    "SandboxTransport",
    "market_day",
    "serve_sandbox",
]
