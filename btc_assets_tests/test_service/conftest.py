"""A lake with real (tiny) XGBoost models and features_1h days, and the service running on a
loopback port in a thread of the test process (uvicorn, as ``btc-assets serve`` runs it)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
import uvicorn
import xgboost as xgb

from btc_assets.lake import Lake
from btc_assets.model.registry import model_store, save_model
from btc_assets.service.app import create_app
from btc_assets.service.config import ServiceConfig

NAME = "baseline_1h"
SYMBOL = "BTCUSDT"
FEATURES = ("close", "volume", "ret_1h", "funding_rate", "oi_pctile_30d", "whole_hour")
DTYPES = {**dict.fromkeys(FEATURES, "Float64"), "whole_hour": "Boolean"}
DAY = date(2024, 3, 10)
# the newest row of DAY closes at DAY+1 00:00; "now" is ten minutes later
NOW = datetime(2024, 3, 11, 0, 10, tzinfo=UTC)
POLL = 0.1
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Boosters:
    regressor: xgb.Booster
    classifier: xgb.Booster


def train(features: tuple[str, ...] = FEATURES, seed: int = 0, rounds: int = 5) -> Boosters:
    """Two real boosters on 200 synthetic rows (synthetic test data, not market data)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, len(features))).astype(np.float32)
    y = 0.01 * x[:, 0] - 0.005 * x[:, 1] + rng.normal(scale=0.002, size=200)
    params = {"max_depth": 3, "eta": 0.3, "nthread": 1, "seed": seed}
    names = list(features)
    regressor = xgb.train(
        {**params, "objective": "reg:squarederror"},
        xgb.DMatrix(x, label=y, feature_names=names),
        rounds,
    )
    classifier = xgb.train(
        {**params, "objective": "binary:logistic"},
        xgb.DMatrix(x, label=(y > 0).astype(np.float32), feature_names=names),
        rounds,
    )
    return Boosters(regressor, classifier)


def save(
    lake: Path,
    boosters: Boosters,
    *,
    features: tuple[str, ...] = FEATURES,
    env: str = "sandbox",
    promote: bool = True,
    note: str = "",
    corrupt: Callable[[Path], None] | None = None,
) -> str:
    """Commit a version (``corrupt`` may damage its folder before the promotion)."""
    store = model_store(lake)
    card = {
        "features": list(features),
        "dtypes": {f: DTYPES.get(f, "Float64") for f in features},
        "dataset_sha256": "0" * 64,
        "env": env,
        "note": note,
    }
    artifact = save_model(
        store, NAME, regressor=bytes(boosters.regressor.save_raw("ubj")),
        classifier=bytes(boosters.classifier.save_raw("ubj")), card=card, importance_png=PNG,
    )  # fmt: skip
    if corrupt is not None:
        corrupt(artifact.directory)
    if promote and corrupt is None:
        store.promote(NAME, artifact.version)
    elif promote:  # promote() verifies first: move the pointer by hand, atomically as it does
        temp = store.root / NAME / ".CURRENT.test"
        temp.write_text(artifact.version + "\n")
        os.replace(temp, store.root / NAME / "CURRENT")
    return artifact.version


def features_day(day: date, symbol: str = SYMBOL, seed: int = 1, hours: int = 24) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts = [start + timedelta(hours=h + 1) for h in range(hours)]
    return pl.DataFrame(
        {
            "symbol": [symbol] * hours,
            "ts": pl.Series(ts, dtype=pl.Datetime("ms", "UTC")),
            "close": 43000 + rng.normal(scale=100, size=hours),
            "volume": rng.uniform(10, 200, size=hours),
            "ret_1h": rng.normal(scale=0.01, size=hours),
            "funding_rate": [None] * (hours - 1) + [0.0001],  # a null becomes NaN
            "oi_pctile_30d": rng.uniform(0, 1, size=hours),
            "whole_hour": [True] * hours,
            "oi_source": ["coinglass"] * hours,
        }
    )


def write_day(lake: Path, day: date, env: str = "sandbox", **kwargs: object) -> Path:
    frame = features_day(day, **kwargs)  # type: ignore[arg-type]
    symbol = str(frame["symbol"][0])
    return Lake(lake).write_day("features_1h", symbol, day, frame, {"env": env}).path


def flip_bytes(path: Path, at: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def row_inputs(frame: pl.DataFrame, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    last = frame.sort("ts").tail(1).row(0, named=True)
    values = [np.nan if last[f] is None else float(last[f]) for f in features]
    return np.array([values], dtype=np.float32)


@dataclass
class Clock:
    at: datetime = NOW

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Gates:
    """A gate the test sets: symbol -> day -> reason."""

    blocked: dict[str, dict[date, str]] = field(default_factory=dict)
    error: str | None = None  # raised when set: the instance's database is down

    def __call__(self, symbol: str, days: list[date]) -> Mapping[date, str]:
        if self.error:
            raise ConnectionError(self.error)
        mine = self.blocked.get(symbol, {})
        return {d: mine[d] for d in days if d in mine}


@dataclass
class Running:
    client: httpx.Client
    config: ServiceConfig
    clock: Clock

    def wait_for(self, predicate: Callable[[], bool], seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met within the deadline")
            time.sleep(POLL / 4)


@contextmanager
def running(config: ServiceConfig, clock: Clock) -> Iterator[Running]:
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield Running(client, config, clock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
def serve(lake: Path, gates: Gates) -> Iterator[Callable[..., Running]]:
    """Start the service on ``lake`` (call it after writing what it should find)."""
    stack: list[object] = []
    clock = Clock()
    base = ServiceConfig(
        lake_root=lake, model_name=NAME, symbols=(SYMBOL,), env="sandbox",
        max_feature_age=timedelta(minutes=120), reload_seconds=POLL, gate=gates, now=clock,
    )  # fmt: skip

    def start(**overrides: object) -> Running:
        manager = running(replace(base, **overrides), clock)  # type: ignore[arg-type]
        stack.append(manager)
        return manager.__enter__()

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def boosters() -> Boosters:
    return train()


@pytest.fixture
def ready_lake(lake: Path, boosters: Boosters) -> str:
    """A promoted model and two sandbox days of features (DAY-1 and DAY); its version."""
    write_day(lake, DAY - timedelta(days=1), seed=2)
    write_day(lake, DAY)
    return save(lake, boosters)
