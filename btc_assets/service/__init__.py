"""The prediction and market-data service (``btc-assets serve``): FastAPI on uvicorn, no
Dagster.

    config.py   ServiceConfig: what the app needs, built by ``ops/serve.py`` from the settings
    models.py   the served model: loaded, warmed up, hot-reloaded from the lake's CURRENT pointer
    latest.py   the newest usable features_1h row per symbol (verified, same env, gate open)
    predict.py  the /predict body: parsed and checked by hand (fast), into the model's columns
    batcher.py  the predictions of one event-loop turn, made in one booster call
    metrics.py  the Prometheus registry of one app and its pure-ASGI timing middleware
    health.py   what /health/ready reports
    poll.py     the background thread that refreshes the model and the rows
    app.py      create_app: the routes
"""
