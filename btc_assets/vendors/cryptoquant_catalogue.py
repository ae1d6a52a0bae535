"""CryptoQuant's BTC metrics this project reads: their paths and fields (vendor-apis.md 8).

No imports beyond the standard library, so ``settings`` can check the configured fields
without loading any client.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = ["CATALOGUE", "Metric", "MetricSpec"]


class Metric(StrEnum):
    """The BTC metrics the client reads (the value is the ``metric`` column)."""

    NETFLOW = "netflow"
    RESERVE = "reserve"
    INFLOW = "inflow"
    OUTFLOW = "outflow"
    TRANSACTIONS_COUNT = "transactions_count"
    WHALE_RATIO = "whale_ratio"
    MPI = "mpi"


@dataclass(frozen=True)
class MetricSpec:
    path: str  # under API_PREFIX
    fields: tuple[str, ...]  # the row keys read (names are third-party, vendor-apis.md 8)
    per_exchange: bool  # takes ``exchange``
    # Exchange-flow history is re-clustered every Tuesday 00:00 UTC; the whale ratio is
    # built on the same exchange wallets. MPI's revision policy is UNCONFIRMED.
    revised_weekly: bool


_FLOWS = "/btc/exchange-flows"
CATALOGUE: Mapping[Metric, MetricSpec] = MappingProxyType({
    Metric.NETFLOW: MetricSpec(f"{_FLOWS}/netflow", ("netflow_total",), True, True),
    Metric.RESERVE: MetricSpec(f"{_FLOWS}/reserve", ("reserve", "reserve_usd"), True, True),
    Metric.INFLOW: MetricSpec(f"{_FLOWS}/inflow", ("inflow_total", "inflow_top10",
                              "inflow_mean", "inflow_mean_ma7"), True, True),
    Metric.OUTFLOW: MetricSpec(f"{_FLOWS}/outflow", ("outflow_total", "outflow_top10",
                               "outflow_mean", "outflow_mean_ma7"), True, True),
    Metric.TRANSACTIONS_COUNT: MetricSpec(f"{_FLOWS}/transactions-count", (
        "transactions_count_inflow", "transactions_count_outflow"), True, True),
    Metric.WHALE_RATIO: MetricSpec("/btc/flow-indicator/exchange-whale-ratio",
                                   ("exchange_whale_ratio",), True, True),
    Metric.MPI: MetricSpec("/btc/flow-indicator/mpi", ("mpi",), False, False),
})  # fmt: skip
