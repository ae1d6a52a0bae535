"""/metrics: Prometheus text that a scraper parses, with counters that move."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from btc_assets_tests.test_service.conftest import SYMBOL, Running
from btc_assets_tests.test_service.test_predict import ROW


def _samples(service: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = service.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_parse_and_move(serve: Callable[..., Running], ready_lake: str) -> None:
    service = serve()
    before = _samples(service)
    assert before[("btc_assets_model_info", (("env", "sandbox"), ("version", ready_lake)))] == 1
    assert before[("btc_assets_feature_age_seconds", (("symbol", SYMBOL),))] == 600.0
    assert before[("btc_assets_model_reload_failures_total", ())] == 0
    for _ in range(3):
        assert service.client.post("/predict", json={"instances": [ROW]}).status_code == 200
    assert service.client.post("/predict", json={"instances": []}).status_code == 422
    assert service.client.get("/predict/latest", params={"symbol": SYMBOL}).status_code == 200
    assert service.client.get("/nowhere").status_code == 404
    after = _samples(service)

    def requests(endpoint: str, status: str) -> float:
        key = ("btc_assets_api_requests_total", (("endpoint", endpoint), ("status", status)))
        return after.get(key, 0.0)

    assert requests("/predict", "200") == 3
    assert requests("/predict", "422") == 1
    assert requests("/predict/latest", "200") == 1
    assert requests("/metrics", "200") == 1  # the first scrape, counted once it ended
    assert requests("other", "404") == 1
    count = after[("btc_assets_api_request_seconds_count", (("endpoint", "/predict"),))]
    assert count == 4
    fast = after[
        ("btc_assets_api_request_seconds_bucket", (("endpoint", "/predict"), ("le", "1.0")))
    ]
    assert fast == 4
    assert after[("btc_assets_model_predict_rows_total", ())] >= 4  # + the latest one
    assert 1 <= after[("btc_assets_model_predict_calls_total", ())] <= 4


def test_every_response_names_the_model_version(
    serve: Callable[..., Running], ready_lake: str
) -> None:
    client = serve().client
    for answer in (
        client.get("/health/live"),
        client.get("/health/ready"),
        client.get("/metrics"),
        client.get("/predict/latest", params={"symbol": "XRPUSDT"}),
        client.post("/predict", content=b"{"),
        client.get("/nowhere"),
        client.get("/openapi.json"),
    ):
        assert answer.headers["x-model-version"] == ready_lake, answer.request.url
