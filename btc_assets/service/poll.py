"""The background refresh of the served model and the latest features rows."""

from __future__ import annotations

import logging
import threading

from btc_assets.service.latest import LatestFeatures
from btc_assets.service.models import ModelHolder

log = logging.getLogger("btc_assets.service")


class Poller:
    """Refreshes the model and the latest rows: once now, then every ``seconds`` in a thread."""

    def __init__(self, holder: ModelHolder, latest: LatestFeatures, seconds: float) -> None:
        self.holder, self.latest, self.seconds = holder, latest, seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        for step in (self.holder.poll, self.latest.refresh):
            try:
                step()
            except Exception:  # never let the poll die: the next one may succeed
                log.exception("service poll step %s failed", step.__qualname__)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="service-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
