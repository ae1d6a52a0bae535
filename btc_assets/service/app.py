"""``create_app``: the FastAPI app of ``btc-assets serve``.

    GET  /health/live                 200 while the process answers
    GET  /health/ready                200 when a model serves and every symbol's features are
                                      fresh; 503 with every reason otherwise
    POST /predict                     {"instances": [{feature: value, ...}]} -> predictions
    GET  /predict/latest?symbol=S     prediction on S's newest usable features_1h row
    GET  /metrics                     Prometheus text
    GET  /replay/oi/{symbol}, /heatmap/{symbol}, /signals, /whales/alerts
                                      the lake's market data (``market.py``)

Every JSON answer names ``model_version`` (and the ``X-Model-Version`` header does, on every
response) and ``input_age_seconds``: now minus the bar close of the newest input used, null
when the caller supplied the inputs (``/predict``: their age is unknown here).

The handlers only read two in-memory references, the served model and the latest rows; a
background thread (started with the app, stopped with it) refreshes both every
``reload_seconds``, after one synchronous refresh before the first request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from btc_assets.model.registry import model_store
from btc_assets.service.batcher import PredictBatcher, Result
from btc_assets.service.config import ServiceConfig
from btc_assets.service.health import readiness
from btc_assets.service.latest import LatestFeatures, SymbolState
from btc_assets.service.market import MARKET_TABLES, add_market_routes
from btc_assets.service.metrics import MetricsMiddleware, ServiceMetrics
from btc_assets.service.models import ModelHolder, ServedModel
from btc_assets.service.poll import Poller
from btc_assets.service.predict import BodyError, parse_instances, predictions

log = logging.getLogger("btc_assets.service")
JSON = "application/json"
MAX_BODY_BYTES = 8 << 20
INSTANCE_SCHEMA = {"type": "object", "additionalProperties": {"type": ["number", "null"]}}
PREDICT_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["instances"],
                "properties": {
                    "instances": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 1000,
                        "items": INSTANCE_SCHEMA,
                    }
                },
            },
            "example": {"instances": [{"close": 43000.0, "volume": 123.45}]},
        }
    },
}
SymbolQuery = Annotated[str | None, Query(description="a configured symbol, e.g. BTCUSDT")]


def _answer(payload: dict[str, Any], status: int = 200, version: str | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"X-Model-Version": version or "none"}
    return Response(body, status, headers=headers, media_type=JSON)


def create_app(config: ServiceConfig) -> FastAPI:
    holder = ModelHolder(model_store(config.lake_root), config.model_name, config.env,
                         now=config.now)  # fmt: skip
    latest = LatestFeatures(config)
    poller = Poller(holder, latest, config.reload_seconds)
    batcher = PredictBatcher()

    def served_info() -> tuple[str, str] | None:
        model = holder.current
        return None if model is None else (model.version, model.env)

    def ages() -> dict[str, float]:
        now = config.now()
        states = latest.states
        return {s: (now - st.row.ts).total_seconds() for s, st in states.items() if st.row}

    metrics = ServiceMetrics(served_info, ages, lambda: (batcher.calls, batcher.rows))
    holder.on_refused = lambda refusal: metrics.reload_failures.inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        poller.poll_once()  # the model and rows are there before the first request
        _warm_request_path(holder.current, config.max_instances)
        poller.start()
        try:
            yield
        finally:
            poller.stop()

    app = FastAPI(
        title="btc_assets service",
        summary="Next-hour predictions of the baseline model, on your features or the lake's",
        lifespan=lifespan,
    )
    app.state.holder, app.state.latest, app.state.metrics = holder, latest, metrics
    app.state.batcher = batcher
    app.add_middleware(MetricsMiddleware, metrics=metrics, version=lambda: _version(holder))
    market = add_market_routes(app, config, metrics)
    app.state.market = market

    @app.get("/health/live")
    async def live() -> Response:
        """200 while the process answers (no dependency is looked at)."""
        return _answer({"status": "live", "model_version": _version(holder)},
                       version=_version(holder))  # fmt: skip

    @app.get("/health/ready")
    async def ready() -> Response:
        """200 when a model serves and every symbol has a usable features row younger than
        the maximum age; 503 listing every reason otherwise. ``market`` (informational,
        not part of the verdict): the newest day present of each market table."""
        payload = readiness(config, holder, latest)
        newest = await run_in_threadpool(
            market.newest_days, [t.name for t in MARKET_TABLES], config.symbols
        )
        payload["market"] = {"gate": config.market_gate_state, "newest_days": newest}
        status = 200 if payload["status"] == "ready" else 503
        return _answer(payload, status, payload["model_version"])

    @app.post("/predict", openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request) -> Response:
        """Predict on the instances sent; 422 lists every missing, extra or mistyped feature."""
        model = holder.current
        if model is None:
            return _answer({"detail": holder.why_not_serving(), "model_version": None,
                            "input_age_seconds": None}, 503)  # fmt: skip
        declared = request.headers.get("content-length", "")
        too_big = declared.isdigit() and int(declared) > MAX_BODY_BYTES
        body = b"" if too_big else await request.body()
        if too_big or len(body) > MAX_BODY_BYTES:
            detail = f"a body of at most {MAX_BODY_BYTES} bytes, please"
            return _answer({"detail": detail, "model_version": model.version}, 413, model.version)
        try:
            rows = parse_instances(body, model, config.max_instances)
        except BodyError as exc:
            return _answer({"detail": exc.problems, "model_version": model.version}, 422,
                           model.version)  # fmt: skip
        try:
            ret, p_up = await batcher.predict(model, rows)
        except Exception as exc:  # XGBoost refused the rows: say so, as JSON
            return _failed(exc, model)
        return _answer({"model_version": model.version, "model_env": model.env,
                        "predictions": predictions(ret, p_up), "input_age_seconds": None},
                       version=model.version)  # fmt: skip

    @app.get("/predict/latest")
    async def predict_latest(
        symbol: SymbolQuery = None,
    ) -> Response:
        """Predict on the newest usable features_1h row of ``symbol``."""
        found = _latest_inputs(config, holder, latest.states, symbol)
        if isinstance(found, Response):
            return found
        model, state, inputs = found
        try:
            result = await batcher.predict(model, inputs)
        except Exception as exc:
            return _failed(exc, model)
        return _latest_answer(config, model, state, result)

    @app.get("/model")
    async def model_card() -> Response:
        """The served version's card: the features a /predict instance must hold (with
        dtypes), the training window, the dataset's version and sha256, the metrics."""
        model = holder.current
        if model is None:
            return _answer({"detail": holder.why_not_serving(), "model_version": None,
                            "input_age_seconds": None}, 503)  # fmt: skip
        card = model.loaded.card
        shown = ("features", "dtypes", "window", "dataset_version", "dataset_sha256",
                 "boundaries", "rows", "symbols", "metrics", "target", "xgboost")  # fmt: skip
        return _answer(
            {"model_version": model.version, "model_name": model.loaded.name,
             "model_env": model.env, "model_sha256": model.loaded.sha256,
             "loaded_at": model.loaded_at.isoformat(), "input_age_seconds": None,
             **{k: card.get(k) for k in shown}},
            version=model.version,
        )  # fmt: skip

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition (requests, latency, model version, feature age)."""
        return Response(metrics.text(), headers={"X-Model-Version": _version(holder) or "none"},
                        media_type="text/plain; version=0.0.4; charset=utf-8")  # fmt: skip

    return app


def _failed(exc: Exception, model: ServedModel) -> Response:
    log.error("prediction with model %s failed: %s", model.version, exc)
    detail = f"prediction failed: {type(exc).__name__}: {exc}"
    return _answer({"detail": detail, "model_version": model.version}, 500, model.version)


def _version(holder: ModelHolder) -> str | None:
    model = holder.current
    return None if model is None else model.version


def _warm_request_path(model: ServedModel | None, max_instances: int) -> None:
    """One pass through the /predict parsing and prediction code before the first request."""
    if model is None:
        return
    try:
        body = json.dumps({"instances": [dict.fromkeys(model.features)]}).encode()
        ret, p_up = model.predict(parse_instances(body, model, max_instances))
        _answer({"predictions": predictions(ret, p_up)})
    except Exception:  # the requests will meet it too, and answer with the error
        log.exception("warm-up of the /predict path failed")


def _latest_inputs(
    config: ServiceConfig,
    holder: ModelHolder,
    states: dict[str, SymbolState],
    symbol: str | None,
) -> Response | tuple[ServedModel, SymbolState, np.ndarray]:
    """The model, the symbol's state and its input row; or the error answer."""
    model = holder.current
    version = None if model is None else model.version
    base: dict[str, Any] = {"model_version": version, "input_age_seconds": None}
    name = (symbol or "").strip().upper()
    state = states.get(name)
    if state is None:
        configured = list(config.symbols)
        detail = (
            f"unknown symbol {symbol!r}: configured symbols are {configured}"
            if symbol
            else f"symbol is required: one of {configured}"
        )
        return _answer({"detail": detail, **base}, 404 if symbol else 422, version)
    if model is None:
        return _answer({"detail": holder.why_not_serving(), "symbol": name, **base}, 503)
    row = state.row
    if row is None:
        skipped = {d.isoformat(): why for d, why in state.skipped.items()}
        payload = {"detail": state.problem, "symbol": name, "skipped_days": skipped, **base}
        return _answer(payload, 503, version)
    inputs = row.inputs_for(model)
    if not isinstance(inputs, np.ndarray):
        detail = (
            f"model {version} needs features the {config.features_table} row of {name} at "
            f"{row.ts.isoformat()} ({row.written.path}) cannot give: {', '.join(inputs)}"
        )
        return _answer({"detail": detail, "symbol": name, "columns": inputs, **base}, 409, version)
    return model, state, inputs


def _latest_answer(
    config: ServiceConfig, model: ServedModel, state: SymbolState, result: Result
) -> Response:
    row = state.row
    assert row is not None
    ret, p_up = result
    version = model.version
    age = (config.now() - row.ts).total_seconds()
    return _answer(
        {
            "symbol": state.symbol,
            "ts": row.ts.isoformat(),
            "features_day": row.day.isoformat(),
            "input_age_seconds": round(age, 3),
            "stale": age > config.max_feature_age.total_seconds(),
            "model_version": version,
            "model_env": model.env,
            "prediction": predictions(ret, p_up)[0],
            "gate": config.gate_state,
            "skipped_days": {d.isoformat(): why for d, why in state.skipped.items()},
        },
        version=version,
    )
