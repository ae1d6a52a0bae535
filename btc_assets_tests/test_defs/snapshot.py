"""What the ``Definitions`` object holds, by name: the snapshot ``test_snapshot`` compares.

After a deliberate change to the graph, rewrite the snapshot and commit it with the change:

    .venv/bin/python -m btc_assets_tests.test_defs.snapshot \
        > btc_assets_tests/test_defs/defs_snapshot.json
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg


def snapshot(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.get_repository_def().asset_graph
    repo = defs.get_repository_def()
    return {
        "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
        "asset_checks": sorted(
            f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys
        ),
        "jobs": sorted(j.name for j in repo.get_all_jobs()),
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "resources": sorted(defs.resources or {}),
        # Which concurrency pool each vendor-calling asset queues on (dagster.yaml limits).
        "pools": sorted(
            f"{key.to_user_string()}:{','.join(sorted(graph.get(key).pools))}"
            for key in graph.get_all_asset_keys()
            if graph.get(key).pools
        ),
    }


if __name__ == "__main__":
    from btc_assets.defs.definitions import defs

    print(json.dumps(snapshot(defs), indent=2))
