"""The service's Prometheus metrics, in a registry of its own (one per app, so tests and two
apps in one process never share counters), and the ASGI middleware that times requests.

    btc_assets_api_requests_total{endpoint,status}      requests answered
    btc_assets_api_request_seconds{endpoint}            latency histogram (ms buckets)
    btc_assets_model_info{version,env}                  1 for the version served
    btc_assets_model_reload_failures_total              versions refused (the old one kept)
    btc_assets_feature_age_seconds{symbol}              now - ts of the newest usable row
    btc_assets_model_predict_calls_total                booster calls (one per batch)
    btc_assets_model_predict_rows_total                 rows predicted (rows/calls: batch size)

and, under the names the seed project's dashboards use:

    api_requests_total{endpoint,method,status}          requests answered
    api_response_time_seconds{endpoint}                 latency histogram
    data_points_processed_total{endpoint}               rows, tiles or points served

``endpoint`` is the route's template (``/replay/oi/{symbol}``, never the concrete path, so the
label's values are bounded by the routes declared), ``other`` for a path no route matched.
The middleware is plain ASGI (Starlette's BaseHTTPMiddleware costs a task per request). It
also stamps ``X-Model-Version`` on responses that do not carry one already.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

P = "btc_assets_"
OTHER = "other"
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SEED_BUCKETS = (*BUCKETS, 5.0, 10.0)  # a picture is drawn in a fraction of a second or more
VERSION_HEADER = b"x-model-version"


class _StateCollector(Collector):
    """Read at scrape time: the model served and the age of each symbol's newest row."""

    def __init__(
        self,
        model: Callable[[], tuple[str, str] | None],
        ages: Callable[[], Mapping[str, float]],
        batches: Callable[[], tuple[int, int]],
    ) -> None:
        self.model = model
        self.ages = ages
        self.batches = batches

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            P + "model_info", "the model version served (1)", labels=["version", "env"]
        )
        served = self.model()
        if served is not None:
            info.add_metric(list(served), 1.0)
        yield info
        age = GaugeMetricFamily(
            P + "feature_age_seconds",
            "now minus the bar close (ts) of the newest usable features_1h row",
            labels=["symbol"],
        )
        for symbol, seconds in self.ages().items():
            age.add_metric([symbol], seconds)
        yield age
        calls, rows = self.batches()
        yield CounterMetricFamily(
            P + "model_predict_calls", "booster calls: one per batch of rows", value=calls
        )
        yield CounterMetricFamily(
            P + "model_predict_rows", "rows predicted (rows / calls: the mean batch)", value=rows
        )


class ServiceMetrics:
    def __init__(
        self,
        model: Callable[[], tuple[str, str] | None],
        ages: Callable[[], Mapping[str, float]],
        batches: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            P + "api_requests", "requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            P + "api_request_seconds", "time from request to the end of the response",
            ["endpoint"], buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.reload_failures = Counter(
            P + "model_reload_failures",
            "model versions refused (corrupt or incompatible); the previous one kept serving",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(model, ages, batches))
        self.seed_requests = Counter(
            "api_requests", "requests answered", ["endpoint", "method", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.seed_latency = Histogram(
            "api_response_time_seconds", "time from request to the end of the response",
            ["endpoint"], buckets=SEED_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.data_points = Counter(
            "data_points_processed", "rows, heatmap tiles or candles served",
            ["endpoint"], registry=self.registry,
        )  # fmt: skip
        # label children are looked up once: .labels() takes a lock and builds a tuple
        self._children: dict[tuple[str, str, int], tuple[Any, ...]] = {}

    def observe(self, endpoint: str, status: int, seconds: float, method: str = "GET") -> None:
        children = self._children.get((endpoint, method, status))
        if children is None:
            children = self._children[endpoint, method, status] = (
                self.requests.labels(endpoint, status), self.latency.labels(endpoint),
                self.seed_requests.labels(endpoint, method, status),
                self.seed_latency.labels(endpoint),
            )  # fmt: skip
        requests, latency, seed_requests, seed_latency = children
        requests.inc()
        latency.observe(seconds)
        seed_requests.inc()
        seed_latency.observe(seconds)

    def count_points(self, endpoint: str, points: int) -> None:
        """``points`` rows, tiles or candles served by ``endpoint`` (its route template)."""
        self.data_points.labels(endpoint).inc(points)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (unmatched paths as ``other``)."""

    def __init__(
        self, app: Any, metrics: ServiceMetrics, version: Callable[[], str | None]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.version = version

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_stamped(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers") or []
                if not any(name == VERSION_HEADER for name, _ in headers):
                    stamp = (self.version() or "none").encode()
                    message = {**message, "headers": [*headers, (VERSION_HEADER, stamp)]}
            await send(message)

        try:
            await self.app(scope, receive, send_stamped)
        finally:
            # The router put the matched route in the scope (FastAPI's routes only: the docs
            # pages and unmatched paths count as "other").
            endpoint = getattr(scope.get("route"), "path", None) or OTHER
            method = scope.get("method", "GET")
            method = method if method in METHODS else OTHER  # a client may send any token
            self.metrics.observe(endpoint, status, time.perf_counter() - started, method)
