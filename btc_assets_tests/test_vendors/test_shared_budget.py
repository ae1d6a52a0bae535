"""Rate budgets shared by processes: one count per (vendor host bucket, clock window), charged
atomically in a SQLite file or a PostgreSQL table, so concurrent runs stay under one limit."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.binance_signed import BinanceAccountClient
from btc_assets.vendors.coinglass import CoinGlassClient
from btc_assets.vendors.ratelimit import WeightBudget, budget_name
from btc_assets.vendors.shared_budget import (
    TABLE,
    PostgresWindowStore,
    SqliteWindowStore,
    WindowStoreError,
    check_store_url,
    open_window_store,
    shown_url,
)
from btc_assets_tests.deployment_harness import fresh_database

WINDOW_SECONDS = 2.0
LIMIT = 20
WORKERS = 3
RUN_SECONDS = 5.0


class FakeTime:
    """A clock that the budget's sleeps move forward, shared by several budgets."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'state' / 'rate_budgets.sqlite'}"
    # A fresh name per test: the module's database is shared by the tests that use it.
    return str(request.getfixturevalue("postgres_url"))


def _name(tmp_path: Path, bucket: str = "weight") -> str:
    return f"{tmp_path.name}.example {bucket}"  # unique per test: the Postgres store is shared


def test_charge_refuses_past_the_cap_and_charges_nothing(store_url: str, tmp_path: Path) -> None:
    store = open_window_store(store_url)
    assert store is not None
    name = _name(tmp_path)
    assert store.charge(name, 1, 5, 9.0, 2.0) == 5
    assert store.charge(name, 1, 4, 9.0, 2.0) == 9
    assert store.charge(name, 1, 1, 9.0, 2.0) is None  # 10 > 9: refused
    assert store.charge(name, 1, 1, 9.0, 2.0) is None  # and the refusal charged nothing
    assert store.charge(name, 2, 3, 9.0, 3.0) == 3  # the next window starts from zero
    # An empty window takes one request even above the cap, as the vendor itself would.
    assert store.charge(name, 3, 50, 9.0, 4.0) == 50
    assert store.charge(f"{name}-other", 1, 9, 9.0, 2.0) == 9  # names count apart


def test_raise_to_follows_the_vendor_up_never_down(store_url: str, tmp_path: Path) -> None:
    store = open_window_store(store_url)
    assert store is not None
    name = _name(tmp_path)
    assert store.charge(name, 7, 3, 100.0, 8.0) == 3
    assert store.raise_to(name, 7, 40, 8.0) == 40
    assert store.raise_to(name, 7, 10, 8.0) == 40  # an older header does not undo charges
    assert store.charge(name, 7, 1, 100.0, 8.0) == 41


def _charge_for_a_while(url: str, name: str, out: str) -> None:
    """One process's requests: acquire as fast as the shared budget allows, log each grant."""
    store = open_window_store(url)
    budget = WeightBudget(LIMIT, WINDOW_SECONDS, safety=1.0, name=name, store=store)
    granted: list[int] = []
    deadline = time.time() + RUN_SECONDS
    while time.time() < deadline:
        budget.acquire(1)
        granted.append(budget._window)  # the window the store charged
    Path(out).write_text(json.dumps(granted))


def test_processes_together_never_pass_the_cap_of_a_window(store_url: str, tmp_path: Path) -> None:
    name = _name(tmp_path)
    if store_url.startswith("postgresql"):
        # The workers start together on a database without the table: they race to create it.
        conn = psycopg2.connect(store_url.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.close()
    spawn = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"worker{i}.json" for i in range(WORKERS)]
    workers = [
        spawn.Process(target=_charge_for_a_while, args=(store_url, name, str(out))) for out in outs
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    per_process = [Counter(json.loads(out.read_text())) for out in outs]
    total = sum(per_process, Counter())
    assert max(total.values()) <= LIMIT, total
    # Each process alone would have taken the whole limit of a window: they shared it.
    assert sum(total.values()) >= LIMIT * 2
    assert all(sum(c.values()) > 0 for c in per_process)
    assert sum(v == LIMIT for v in total.values()) >= 1  # windows were really filled


def test_a_budget_sleeps_when_other_processes_filled_the_window(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "rate.sqlite")
    fake = FakeTime(now=60 * 16_667 + 10.0)  # 10 s into a 60 s window
    run_a = WeightBudget(10, 60, safety=0.9, clock=fake.clock, sleep=fake.sleep, name="h w",
                         store=store)  # fmt: skip
    run_b = WeightBudget(10, 60, safety=0.9, clock=fake.clock, sleep=fake.sleep, name="h w",
                         store=store)  # fmt: skip
    for _ in range(9):
        assert run_a.acquire() == 0.0
    # run_b has sent nothing itself, but the window's 9 of 9 are spent.
    waited = run_b.acquire()
    assert waited == pytest.approx(50.05)
    assert fake.slept == [pytest.approx(50.05)]
    assert run_b.used == 1 and run_b._window == int(fake.now // 60)
    # Without the store each budget counts alone: both would have spent the whole window.
    alone = WeightBudget(10, 60, safety=0.9, clock=fake.clock, sleep=fake.sleep)
    assert [alone.acquire() for _ in range(9)] == [0.0] * 9


def test_a_vendor_header_fills_the_shared_window(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "rate.sqlite")
    fake = FakeTime(now=600.0)

    def budget() -> WeightBudget:
        return WeightBudget(
            100, 60, header="X-MBX-USED-WEIGHT-1M", safety=0.9,
            clock=fake.clock, sleep=fake.sleep, name="h w", store=store,
        )  # fmt: skip

    seen, other = budget(), budget()
    seen.acquire(1)
    seen.observe({"X-MBX-USED-WEIGHT-1M": "88"})  # the IP's weight, every process counted
    assert other.acquire(5) > 0  # 88 + 5 > 90: the other process waits for the next minute
    assert fake.slept


def test_clients_of_one_host_share_one_count_name(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "rate.sqlite")
    market = BinanceClient(budget_store=store)
    account = BinanceAccountClient(budget_store=store)
    assert market.futures_budget.name == account.budget.name == "fapi.binance.com weight"
    assert market.spot_budget.name == "api.binance.com weight"
    assert market.funding_budget.name == "fapi.binance.com fundingRate"
    assert {market.futures_budget.store, account.budget.store} == {store}
    coinglass = CoinGlassClient("https://open-api-v4.coinglass.com", None, budget_store=store)
    assert coinglass.budget.name == "open-api-v4.coinglass.com requests"
    assert coinglass.budget.store is store
    assert BinanceClient().futures_budget.store is None  # default: in-process, as before
    assert budget_name("http://127.0.0.1:8080/x", "weight") == "127.0.0.1:8080 weight"


def test_store_urls_are_checked_and_never_shown_with_their_password(tmp_path: Path) -> None:
    assert open_window_store("memory://") is None
    sqlite = open_window_store(f"sqlite://{tmp_path}/a.sqlite")
    assert isinstance(sqlite, SqliteWindowStore) and sqlite.path == tmp_path / "a.sqlite"
    # SQLAlchemy's four-slash form names the same absolute file.
    assert open_window_store(f"sqlite:///{tmp_path}/a.sqlite").path == tmp_path / "a.sqlite"  # type: ignore[union-attr]
    pg = open_window_store("postgresql+psycopg2://u:s3cret@db:5432/budgets")
    assert isinstance(pg, PostgresWindowStore) and "s3cret" not in repr(pg)
    assert shown_url("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    for bad in ("sqlite://relative.db", "mysql://u:s3cret@h/x", "postgresql://h", "x"):
        with pytest.raises(WindowStoreError) as err:
            check_store_url(bad)
        assert "s3cret" not in str(err.value)


def test_a_lost_postgres_server_is_named_without_the_password() -> None:
    store = PostgresWindowStore("postgresql://u:s3cret@127.0.0.1:1/none")
    with pytest.raises(ConnectionError) as err:
        store.charge("h w", 1, 1, 10.0, 2.0)
    assert "127.0.0.1" in str(err.value) and "s3cret" not in str(err.value)


def _first_charges_together(url: str, processes: int) -> tuple[list[int], list[str]]:
    """``processes`` fresh stores (each its own connection, as each run has) charge at once."""
    stores = [PostgresWindowStore(url) for _ in range(processes)]
    start = threading.Barrier(processes)
    failed: list[str] = []
    counts: list[int] = []

    def first_charge(store: PostgresWindowStore) -> None:
        start.wait()
        try:
            counts.append(store.charge("race weight", 1, 1, 100.0, 2.0) or 0)
        except Exception as exc:
            failed.append(type(exc).__name__)

    threads = [threading.Thread(target=first_charge, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return counts, failed


def test_first_charges_racing_on_a_new_postgres_database_all_succeed(postgres_url: str) -> None:
    """Runs starting together each create the table on first use; PostgreSQL's CREATE TABLE
    IF NOT EXISTS is not atomic (the losers fail on its catalog), so it runs under a lock."""
    plain = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    for _ in range(3):
        conn = psycopg2.connect(plain)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.close()
        counts, failed = _first_charges_together(postgres_url, 8)
        assert failed == []
        assert sorted(counts) == list(range(1, 9))
