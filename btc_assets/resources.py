"""Dagster resources: configuration in, plain clients out.

Vendor clients know nothing of Dagster; these resources hold their configuration (secrets
through ``dg.EnvVar`` when a vendor needs them) and build them. The sandbox is chosen here,
by transport, so no client or asset branches on it.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import httpx

from btc_assets.lake import Lake
from btc_assets.vendors.binance import BinanceClient


class DatasetResource(dg.ConfigurableResource):
    """Where the dataset lives and what it covers."""

    lake_root: str
    symbol: str
    tail_days: int = 2

    def lake(self) -> Lake:
        return Lake(self.lake_root)

    def reusable(self, day: date, today: date) -> bool:
        """Days inside the tail window are always re-fetched: vendors revise recent data."""
        return (today - day).days > self.tail_days


class SandboxResource(dg.ConfigurableResource):
    """The offline vendor: when enabled, every vendor client talks to it in-process."""

    enabled: bool = False
    seed: int = 7
    faults: str = ""  # JSON fault plan, see btc_assets.sandbox.faults

    def transport(self) -> httpx.BaseTransport | None:
        if not self.enabled:
            return None
        from btc_assets.sandbox.transport import SandboxTransport

        return SandboxTransport(seed=self.seed, faults=self.faults)


class BinanceResource(dg.ConfigurableResource):
    spot_base_url: str
    futures_base_url: str
    timeout_seconds: float = 10.0
    max_retries: int = 5
    spot_weight_limit: int = 6000
    futures_weight_limit: int = 2400
    sandbox: SandboxResource

    def client(self) -> BinanceClient:
        return BinanceClient(
            spot_base_url=self.spot_base_url,
            futures_base_url=self.futures_base_url,
            transport=self.sandbox.transport(),
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            spot_weight_limit=self.spot_weight_limit,
            futures_weight_limit=self.futures_weight_limit,
        )
