"""Nothing may leave (or join) the graph silently: a refactor that drops an asset, a check,
a job, a schedule, a sensor or a resource fails here, naming it."""

import json
from pathlib import Path

from btc_assets.defs.definitions import defs
from btc_assets_tests.test_defs.snapshot import snapshot

SNAPSHOT = Path(__file__).with_name("defs_snapshot.json")


def test_defs_match_the_committed_snapshot() -> None:
    expected = json.loads(SNAPSHOT.read_text())
    actual = snapshot(defs)
    assert actual.keys() == expected.keys()
    for kind in expected:
        gone = sorted(set(expected[kind]) - set(actual[kind]))
        new = sorted(set(actual[kind]) - set(expected[kind]))
        assert not gone and not new, (
            f"{kind}: disappeared {gone}, appeared {new}. If deliberate, regenerate "
            f"{SNAPSHOT.name} (see btc_assets_tests/test_defs/snapshot.py) and commit it."
        )
