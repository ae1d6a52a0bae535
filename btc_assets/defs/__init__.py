"""The Dagster layer: the ``Definitions`` object and what it is built from.

- ``definitions``        the one ``Definitions`` (``dagster dev -m btc_assets.defs.definitions``)
- ``partitions``         the daily partitions and the single-run backfill policy
- ``resources``          configuration in, plain vendor clients and the lake out
- ``checks``             per-day check specs and evaluations, as figures in the UI
- ``day_gate``           which days of a range are safe to build: the per-day blocking gate
- ``automation``         schedules, sensors and freshness checks
- ``dagster_internals``  the few private Dagster APIs the gate needs, isolated and tested

Deliberately empty: importing a submodule must not build the whole graph.
"""
