"""Pictures of the lake's tables, as deterministic PNG bytes (matplotlib's Agg objects, no
pyplot state, no version stamp): the same frames always give the same bytes, so a picture
can be cached, attached to asset metadata or compared in a test.

    heatmap.py   heatmap_png: a liquidation heatmap day with its price line
"""
