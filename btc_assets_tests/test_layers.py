"""The architecture's import rules, read from the source: a module that breaks one fails here
naming the file and the import (see ../README.md, "Map of the code")."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "btc_assets"
STDLIB = sys.stdlib_module_names


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, top_level_only: bool = False) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import; ``from a import b`` yields ``a``, and
    ``a.b`` too when that is a module of the package."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield node.lineno, node.module
                if full in MODULES:
                    yield node.lineno, full


def _violations(prefix: str, allowed: re.Pattern[str]) -> list[str]:
    out = []
    for name, path in MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            for line, imported in _imports(path):
                root = imported.split(".")[0]
                if root in STDLIB or imported == "btc_assets":  # the root package is empty
                    continue
                if not allowed.match(imported):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return out


def test_core_imports_only_polars_numpy_and_core() -> None:
    assert not _violations(
        "btc_assets.core", re.compile(r"^(polars|numpy)(\.|$)|^btc_assets\.core")
    )


def test_vendors_know_http_and_json_not_dagster_settings_or_the_sandbox() -> None:
    # psycopg2: the rate budgets' shared store on PostgreSQL (vendors/shared_budget.py).
    allowed = re.compile(
        r"^(httpx|websockets|polars|numpy|tenacity|psycopg2)(\.|$)"
        r"|^btc_assets\.(vendors|core|clock)\b"
    )
    assert not _violations("btc_assets.vendors", allowed)


def test_the_stream_collector_knows_neither_dagster_nor_settings_nor_the_sandbox() -> None:
    # The ops layer assembles it (ops/stream.py); the lake's writers never import it, the
    # live job only reads its staging.
    allowed = re.compile(
        r"^(polars|prometheus_client)(\.|$)|^btc_assets\.(stream|vendors|core|clock)\b"
    )
    assert not _violations("btc_assets.stream", allowed)


def test_the_model_knows_neither_dagster_nor_settings() -> None:
    allowed = re.compile(
        r"^(polars|numpy|xgboost|matplotlib)(\.|$)"
        r"|^btc_assets\.(model|core|artifacts|lake)\b"
    )
    assert not _violations("btc_assets.model", allowed)
    # the artifacts store speaks the lake's storage interface (a folder or GCS)
    assert not _violations("btc_assets.artifacts", re.compile(r"^btc_assets\.lake(\.|$)"))


def test_the_service_knows_neither_dagster_nor_settings() -> None:
    # ops/serve.py assembles it and hands it features_1h's gate as a plain callable
    allowed = re.compile(
        r"^(fastapi|starlette|prometheus_client|polars|numpy|xgboost)(\.|$)"
        r"|^btc_assets\.(service|model|artifacts|lake|core|clock|charts)\b"
    )
    assert not _violations("btc_assets.service", allowed)


def test_charts_and_alerts_know_neither_dagster_nor_settings() -> None:
    # pictures drawn for the assets, the QA report and the service alike
    charts = re.compile(r"^(polars|numpy|matplotlib)(\.|$)|^btc_assets\.(charts|core)\b")
    assert not _violations("btc_assets.charts", charts)
    # the notifier sends through the Telegram client; the Dagster sensor hands it the rows
    alerts = re.compile(r"^polars(\.|$)|^btc_assets\.(alerts|core|vendors|clock)\b")
    assert not _violations("btc_assets.alerts", alerts)


def test_lake_settings_and_clock_stay_below_dagster() -> None:
    # settings also reads and checks the environment with pydantic-settings and croniter,
    # through the value checks of settings_values (and the rate budget store's URL syntax)
    for module, more, ours in (
        # the lake on GCS goes through fsspec's gcsfs (lake/gcs.py)
        ("btc_assets.lake", "|gcsfs", "|lake"),
        (
            "btc_assets.settings",
            "|pydantic|pydantic_settings|croniter",
            "|settings_values|settings_model|settings_forecast|settings_signals",
        ),
        ("btc_assets.settings_model", "", "|settings_forecast|settings_signals"),
        ("btc_assets.settings_forecast", "", ""),
        ("btc_assets.settings_signals", "|pydantic|pydantic_settings", ""),
        ("btc_assets.settings_values", "|pydantic|croniter", ""),
        ("btc_assets.clock", "", ""),
    ):
        allowed = re.compile(
            rf"^(polars|pyarrow|numpy{more})(\.|$)|^btc_assets\.(core|vendors\.hosts|vendors\.cryptoquant_catalogue|vendors\.shared_budget|clock{ours})\b"
        )
        assert not _violations(module, allowed), module


def test_only_dagster_internals_touches_private_dagster() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for name, path in MODULES.items()
        if name != "btc_assets.defs.dagster_internals"
        for line, imported in _imports(path)
        if imported.startswith("dagster._")
    ]
    assert not offenders


def test_no_import_cycles_between_modules() -> None:
    # ``from pkg import sub`` runs pkg/__init__ first: a package that imports its own
    # submodules at the top forms a cycle with every submodule that imports a sibling so.
    graph = {
        name: {imp for _, imp in _imports(path, top_level_only=True) if imp in MODULES} - {name}
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_each_vendor_host_is_defined_once() -> None:
    seen: dict[str, list[str]] = {}
    for path in MODULES.values():
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and re.match(r"^https?://", node.value.value)
            ):
                seen.setdefault(node.value.value, []).append(
                    f"{path.relative_to(ROOT)}:{node.lineno}"
                )
    assert not {url: where for url, where in seen.items() if len(where) > 1}


def _loaded_modules(code: str, env: dict[str, str]) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"{code}\nimport sys\nprint('--modules--')\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return set(done.stdout.split("--modules--\n", 1)[1].split())


def test_live_mode_loads_nothing_of_the_sandbox() -> None:
    loaded = _loaded_modules(
        "from btc_assets.defs.definitions import defs\ndefs.get_repository_def()",
        {"BTC_ASSETS_ENV": "live"},
    )
    assert "btc_assets.defs.definitions" in loaded
    assert not sorted(m for m in loaded if m.startswith("btc_assets.sandbox"))


def test_verify_does_not_load_the_dagster_layer(tmp_path: Path) -> None:
    loaded = _loaded_modules(
        "from btc_assets.ops.cli import main\nmain(['verify'])",
        {"BTC_ASSETS_DATA_DIR": str(tmp_path)},
    )
    assert "btc_assets.ops.verify" in loaded
    layer = sorted(m for m in loaded if m.startswith(("btc_assets.defs", "btc_assets.assets")))
    assert not layer, layer
