"""The collector's state as Prometheus metrics, read at scrape time (nothing to keep in sync).

btc_assets_stream_connected{connection}            1 while the websocket is open
btc_assets_stream_reconnects_total{connection}     connections lost and reopened
btc_assets_stream_rollovers_total{connection}      replaced before the 24 h limit
btc_assets_stream_malformed_total{connection}      messages that could not be read
btc_assets_stream_last_closed_timestamp_seconds{table,symbol}
btc_assets_stream_lag_seconds{table,symbol}        now - close of the last staged candle
btc_assets_stream_candles_total{table,symbol,source}   staged, by ws or rest (gap fill)
btc_assets_stream_duplicates_total{table,symbol}   closed candles received twice
btc_assets_stream_forming_ignored_total{table,symbol}  x=false updates not stored
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from btc_assets import clock
from btc_assets.stream.collector import CollectorStatus
from btc_assets.stream.staging import MINUTE_MS

P = "btc_assets_stream_"


class StatusMetrics(Collector):
    def __init__(self, status: CollectorStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        conns = self.status.connections
        connected = GaugeMetricFamily(P + "connected", "websocket open", labels=["connection"])
        reconnects = CounterMetricFamily(
            P + "reconnects", "connections lost and reopened", labels=["connection"]
        )
        rollovers = CounterMetricFamily(
            P + "rollovers", "connections replaced before the 24 h limit", labels=["connection"]
        )
        malformed = CounterMetricFamily(
            P + "malformed", "messages that could not be read", labels=["connection"]
        )
        for c in conns:
            connected.add_metric([c.name], 1.0 if c.connected else 0.0)
            reconnects.add_metric([c.name], c.reconnects)
            rollovers.add_metric([c.name], c.rollovers)
            malformed.add_metric([c.name], c.malformed)
        yield from (connected, reconnects, rollovers, malformed)
        labels = ["table", "symbol"]
        last = GaugeMetricFamily(
            P + "last_closed_timestamp_seconds",
            "close time of the newest staged candle",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            P + "lag_seconds", "now minus the close of the newest staged candle", labels=labels
        )
        candles = CounterMetricFamily(
            P + "candles", "closed candles staged", labels=[*labels, "source"]
        )
        dups = CounterMetricFamily(P + "duplicates", "closed candles received twice", labels=labels)
        forming = CounterMetricFamily(
            P + "forming_ignored", "forming (x=false) updates not stored", labels=labels
        )
        now = clock.epoch_ms()
        for t in self.status.targets.values():
            key = [t.table, t.symbol]
            if t.last_closed_open_ms is not None:
                close = t.last_closed_open_ms + MINUTE_MS
                last.add_metric(key, close / 1000)
                lag.add_metric(key, max(0, now - close) / 1000)
            candles.add_metric([*key, "ws"], t.ws_candles)
            candles.add_metric([*key, "rest"], t.rest_candles)
            dups.add_metric(key, t.duplicates)
            forming.add_metric(key, t.forming_ignored)
        yield from (last, lag, candles, dups, forming)


def serve_metrics(status: CollectorStatus, port: int, addr: str = "0.0.0.0") -> CollectorRegistry:
    """Expose ``status`` on ``http://addr:port/metrics``; returns the registry (tests read it)."""
    registry = CollectorRegistry()
    registry.register(StatusMetrics(status))
    if port:
        start_http_server(port, addr=addr, registry=registry)
    return registry
