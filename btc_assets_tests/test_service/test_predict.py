"""POST /predict: the seed's body shape, the boosters' own numbers, and a 422 that names every
missing, extra or mistyped feature."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from btc_assets_tests.test_service.conftest import FEATURES, Boosters, Running, save

ROW = {"close": 43000.0, "volume": 123.45, "ret_1h": -0.002, "funding_rate": None,
       "oi_pctile_30d": 0.7, "whole_hour": True}  # fmt: skip


def _expected(boosters: Boosters, rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    values = [[np.nan if r[f] is None else float(r[f]) for f in FEATURES] for r in rows]
    x = np.array(values, dtype=np.float32)
    ret = boosters.regressor.inplace_predict(x)
    p_up = boosters.classifier.inplace_predict(x)
    return [{"ret_1h_next": float(r), "p_up": float(p)} for r, p in zip(ret, p_up, strict=True)]


def test_predict_answers_what_the_boosters_say(
    serve: Callable[..., Running], ready_lake: str, boosters: Boosters
) -> None:
    client = serve().client
    rows = [ROW, {**ROW, "close": 41000, "whole_hour": False, "volume": None}]
    answer = client.post("/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == ready_lake == answer.headers["x-model-version"]
    assert body["model_env"] == "sandbox"
    assert body["input_age_seconds"] is None  # the caller's inputs: their age is unknown
    assert body["predictions"] == _expected(boosters, rows)
    assert 0 <= body["predictions"][0]["p_up"] <= 1


def test_concurrent_requests_batched_together_get_their_own_rows(
    serve: Callable[..., Running], ready_lake: str, boosters: Boosters
) -> None:
    import concurrent.futures

    client = serve().client
    rows = [{**ROW, "close": 40000.0 + 500 * i, "ret_1h": 0.01 * (i - 4)} for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: client.post("/predict", json={"instances": [r]}), rows))
    got = [a.json()["predictions"][0] for a in answers]
    assert got == _expected(boosters, rows)


def _problems(client: Any, body: bytes | str) -> list[dict[str, Any]]:
    raw = body.encode() if isinstance(body, str) else body
    answer = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["model_version"] == answer.headers["x-model-version"] != "none"
    return answer.json()["detail"]


def test_422_names_every_missing_extra_and_mistyped_feature(
    serve: Callable[..., Running], ready_lake: str
) -> None:
    client = serve().client
    first = {k: v for k, v in ROW.items() if k != "volume"} | {"foo": 1.0}
    second = {**ROW, "close": "43000", "ret_1h": True, "oi_pctile_30d": [1]}
    detail = _problems(client, json.dumps({"instances": [first, second]}))
    assert {(p["instance"], p["feature"], p["problem"].split(":")[0]) for p in detail} == {
        (0, "volume", "missing"),
        (0, "foo", "extra"),
        (1, "close", "mistyped"),
        (1, "ret_1h", "mistyped"),
        (1, "oi_pctile_30d", "mistyped"),
    }
    by_feature = {p["feature"]: p["problem"] for p in detail}
    assert by_feature["foo"] == f"extra: not a feature of model {ready_lake}"
    assert by_feature["close"] == "mistyped: expected a number or null, got string"
    assert by_feature["ret_1h"] == "mistyped: expected a number or null, got boolean"
    assert by_feature["oi_pctile_30d"].endswith("got array")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", "body is not JSON"),
        ("", "body is not JSON"),
        ('{"instances": [{"close": NaN}]}', "NaN is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"instances": {"close": 1}}', "'instances' must be a list of objects, got object"),
        ('{"instances": []}', "'instances' is empty"),
        ('{"rows": []}', "unknown field 'rows'"),
        ('{"instances": [3]}', "expected an object of feature: value, got int"),
        (b"\xff\xfe", "body is not JSON"),
    ],
)
def test_422_on_bodies_that_are_not_instances(
    serve: Callable[..., Running], ready_lake: str, body: str | bytes, words: str
) -> None:
    detail = _problems(serve().client, body)
    assert any(words in p["problem"] for p in detail), detail


def test_too_many_instances_and_out_of_range_values(
    serve: Callable[..., Running], ready_lake: str
) -> None:
    client = serve(max_instances=3).client
    detail = _problems(client, json.dumps({"instances": [ROW] * 4}))
    assert "at most 3" in detail[0]["problem"]
    huge = {**ROW, "volume": 1e39, "close": 10**400}
    detail = _problems(client, json.dumps({"instances": [ROW, huge]}))
    assert {(p["instance"], p["feature"]) for p in detail} == {(1, "volume"), (1, "close")}
    assert all(p["problem"].startswith("out of range") for p in detail)


def test_503_with_the_reason_when_no_model_is_promoted(
    serve: Callable[..., Running], lake: Path
) -> None:
    client = serve().client
    answer = client.post("/predict", json={"instances": [ROW]})
    assert answer.status_code == 503
    assert answer.json()["detail"] == "no model promoted yet: materialize baseline_model"
    assert answer.json()["model_version"] is None
    assert answer.headers["x-model-version"] == "none"


def test_a_model_of_the_other_env_is_never_served(
    serve: Callable[..., Running], lake: Path, boosters: Boosters
) -> None:
    version = save(lake, boosters, env="live")
    client = serve().client  # the service is sandbox
    answer = client.post("/predict", json={"instances": [ROW]})
    assert answer.status_code == 503
    assert f"version {version}" in answer.json()["detail"]
    assert "trained on live data, this service serves sandbox" in answer.json()["detail"]


def test_requests_of_one_loop_turn_share_one_booster_call(boosters: Boosters) -> None:
    import asyncio
    from datetime import UTC, datetime

    from btc_assets.model.registry import LoadedModel
    from btc_assets.service.batcher import PredictBatcher
    from btc_assets.service.models import prepare

    dtypes = dict.fromkeys(FEATURES, "Float64")
    card = {"env": "sandbox"}
    loaded = LoadedModel(
        "m", "v1", "0" * 64, card, boosters.regressor, boosters.classifier, FEATURES, dtypes
    )
    model = prepare(loaded, "sandbox", "card.json", datetime.now(UTC))
    rng = np.random.default_rng(3)
    parts = [rng.normal(size=(n, len(FEATURES))).astype(np.float32) for n in (1, 3, 1, 2)]
    batcher = PredictBatcher()

    async def all_at_once() -> list[tuple[list[float], list[float]]]:
        return await asyncio.gather(*(batcher.predict(model, p) for p in parts))

    results = asyncio.run(all_at_once())
    assert (batcher.calls, batcher.rows) == (1, 7)
    for part, (ret, p_up) in zip(parts, results, strict=True):
        assert ret == boosters.regressor.inplace_predict(part).tolist()
        assert p_up == boosters.classifier.inplace_predict(part).tolist()


def test_the_model_card_tells_clients_what_an_instance_holds(
    serve: Callable[..., Running], ready_lake: str
) -> None:
    client = serve().client
    card = client.get("/model")
    assert card.status_code == 200
    body = card.json()
    assert body["model_version"] == ready_lake == card.headers["x-model-version"]
    assert body["features"] == list(FEATURES)
    assert body["dtypes"]["whole_hour"] == "Boolean"
    assert body["dataset_sha256"] == "0" * 64
    # an instance built from the card is accepted as it stands
    instance = dict.fromkeys(body["features"])
    assert client.post("/predict", json={"instances": [instance]}).status_code == 200


def test_no_card_before_a_model_is_promoted(serve: Callable[..., Running]) -> None:
    answer = serve().client.get("/model")
    assert answer.status_code == 503
    assert "no model promoted yet" in answer.json()["detail"]
