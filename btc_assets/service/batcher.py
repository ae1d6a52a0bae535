"""Predictions asked for during one event-loop iteration, made in one booster call.

A call of ``inplace_predict`` costs about the same for 1 row as for 10 (its fixed cost, in
XGBoost's Python wrapper and C entry, dwarfs the trees' for a row or a few), so under
concurrent load the service gathers the rows of every request that reaches the prediction
in the same loop iteration and predicts them together. Nothing waits on a timer: the batch
is flushed on the loop's next iteration (``call_soon``), so a lone request pays one loop
turn, and the batches grow only when requests queue up anyway. Predictions are per row, so
a row's result does not depend on the rows batched with it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from btc_assets.service.models import ServedModel

Result = tuple[list[float], list[float]]


class PredictBatcher:
    """One per app and event loop (the handlers and the flush all run on the loop)."""

    def __init__(self) -> None:
        self._pending: list[tuple[ServedModel, np.ndarray, asyncio.Future[Result]]] = []
        self._scheduled = False
        self.calls = 0  # booster pairs run, for the metrics
        self.rows = 0

    async def predict(self, model: ServedModel, rows: np.ndarray) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((model, rows, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._scheduled = False
        by_model: dict[int, list[tuple[ServedModel, np.ndarray, asyncio.Future[Result]]]] = {}
        for item in pending:  # a reload between two requests: each keeps the model it chose
            by_model.setdefault(id(item[0]), []).append(item)
        for items in by_model.values():
            model = items[0][0]
            rows = items[0][1] if len(items) == 1 else np.concatenate([i[1] for i in items])
            try:
                ret, p_up = model.predict(rows)
            except Exception as exc:  # every request of the batch gets the error
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.calls += 1
            self.rows += len(rows)
            start = 0
            for _, part, future in items:
                end = start + len(part)
                if not future.done():  # the client may have gone
                    future.set_result((ret[start:end], p_up[start:end]))
                start = end
