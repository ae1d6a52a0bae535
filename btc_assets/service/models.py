"""The model the service answers with, and its hot reload from the lake.

``ModelHolder.poll`` reads the ``CURRENT`` pointer of the model's name; when it names another
version than the one served, that version is loaded through ``registry.load_model`` (which
verifies every file against its manifest and the boosters against the card), checked for
this service (trained on data of the same env, one output per row, a probability from the
classifier), warmed up, and only then swapped in by one reference assignment: a request
sees the old model or the new one, whole. A version that is refused leaves the served
model in place; the refusal is kept for ``/health/ready`` and counted, and the same pointer
is not tried again until it changes (a bad version is not re-read every poll).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from btc_assets import clock
from btc_assets.artifacts import ArtifactStore
from btc_assets.model.registry import CARD, LoadedModel, ModelRefused, load_model

log = logging.getLogger("btc_assets.service")

NO_MODEL_YET = "no model promoted yet: materialize baseline_model"
WARMUP_ROUNDS = 3
WARMUP_BATCH = 8


@dataclass(frozen=True)
class Refusal:
    """A version that could not be served (``version`` None: the pointer itself is bad)."""

    version: str | None
    reason: str
    at: datetime

    def as_json(self) -> dict[str, str | None]:
        return {"version": self.version, "reason": self.reason, "at": self.at.isoformat()}


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A loaded version ready for ``inplace_predict``: its column order, and which columns
    are booleans (the only ones a JSON true/false may fill)."""

    loaded: LoadedModel
    index: Mapping[str, int]
    booleans: frozenset[str]
    loaded_at: datetime
    warmup_seconds: float

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def env(self) -> str:
        return self.loaded.env

    @property
    def features(self) -> tuple[str, ...]:
        return self.loaded.features

    def predict(self, rows: np.ndarray) -> tuple[list[float], list[float]]:
        """(next-hour log return, P(up)) per row of ``rows`` (float32, the model's columns).

        The columns are in the model's order by construction, hence no name check per call.
        """
        ret = self.loaded.regressor.inplace_predict(rows, validate_features=False)
        p_up = self.loaded.classifier.inplace_predict(rows, validate_features=False)
        return ret.tolist(), p_up.tolist()


def prepare(loaded: LoadedModel, env: str, where: str, now: datetime) -> ServedModel:
    """Check ``loaded`` can serve in ``env``, warm it up, and wrap it; ``ModelRefused`` if not.

    The warm-up runs the boosters on rows of missing values (every model accepts those), so
    the first request does not pay for XGBoost's first-call allocations.
    """
    if loaded.env != env:
        raise ModelRefused(
            f"{where}: trained on {loaded.env} data, this service serves {env} "
            "(a sandbox model never answers for live, nor the reverse)"
        )
    booleans = frozenset(f for f, dtype in loaded.dtypes.items() if "bool" in str(dtype).lower())
    served = ServedModel(loaded, {f: i for i, f in enumerate(loaded.features)}, booleans, now, 0.0)
    width = len(loaded.features)
    started = time.perf_counter()
    try:
        for _ in range(WARMUP_ROUNDS):
            for n in (1, WARMUP_BATCH):
                ret, p_up = served.predict(np.full((n, width), np.nan, dtype=np.float32))
                if len(ret) != n or len(p_up) != n:
                    raise ModelRefused(
                        f"{where}: {n} row(s) gave {len(ret)} regressor and {len(p_up)} "
                        "classifier outputs, expected one each per row"
                    )
                if not all(0.0 <= p <= 1.0 for p in p_up):
                    raise ModelRefused(
                        f"{where}: the classifier does not output probabilities (got "
                        f"{p_up[0]!r}); expected a binary:logistic booster"
                    )
    except ModelRefused:
        raise
    except Exception as exc:  # xgboost raises its own errors, numpy others
        raise ModelRefused(f"{where}: warm-up prediction failed: {exc}") from exc
    return replace(served, warmup_seconds=time.perf_counter() - started)


class ModelHolder:
    """The served model (``current``), replaced in place when the pointer moves."""

    def __init__(
        self,
        store: ArtifactStore,
        name: str,
        env: str,
        on_refused: Callable[[Refusal], None] = lambda refusal: None,
        now: Callable[[], datetime] = clock.now_utc,
    ) -> None:
        self.store = store
        self.name = name
        self.env = env
        self.on_refused = on_refused
        self.now = now
        self.current: ServedModel | None = None
        self.pointer: str | None = None  # what CURRENT said at the last poll
        self.last_refusal: Refusal | None = None
        self._refused_pointer: str | None = None  # not retried until CURRENT changes
        self._lock = threading.Lock()

    def why_not_serving(self) -> str:
        """Why ``current`` is None, in a sentence."""
        r = self.last_refusal
        if r is not None and r.version is None:
            return f"no model loaded: the CURRENT pointer of {self.name} is unreadable: {r.reason}"
        if r is not None:
            return f"no model loaded: version {r.version} of {self.name} refused: {r.reason}"
        if self.pointer is None:
            return NO_MODEL_YET
        return f"no model loaded yet (CURRENT names {self.pointer})"

    def poll(self) -> bool:
        """Look at ``CURRENT`` once; True when a new version now serves."""
        with self._lock:
            try:
                pointer = self.store.current(self.name)
            except Exception as exc:  # unreadable or malformed pointer file
                self._refuse(None, f"!{exc}", str(exc))
                return False
            self.pointer = pointer
            served = self.current
            if pointer is None or (served is not None and pointer == served.version):
                self._refused_pointer = None
                return False
            if pointer == self._refused_pointer:
                return False
            where = str(self.store.location(self.name, pointer, CARD))
            try:
                loaded = load_model(self.store, self.name, pointer)
                model = prepare(loaded, self.env, where, self.now())
            except ModelRefused as exc:
                self._refuse(pointer, pointer, str(exc))
                return False
            except Exception as exc:  # an I/O error, out of memory...: refused all the same
                self._refuse(pointer, pointer, f"{type(exc).__name__}: {exc}")
                return False
            self.current = model  # the swap: one reference assignment
            self._refused_pointer = None
        previous = served.version if served is not None else "none"
        log.info(
            "serving model %s version %s (%s, %d features; was %s; warm-up %.1f ms)",
            self.name, model.version, model.env, len(model.features), previous,
            model.warmup_seconds * 1000,
        )  # fmt: skip
        return True

    def _refuse(self, version: str | None, token: str, reason: str) -> None:
        if token == self._refused_pointer:
            return
        self._refused_pointer = token
        refusal = Refusal(version, reason, self.now())
        self.last_refusal = refusal
        kept = self.current.version if self.current is not None else "none"
        log.error(
            "model %s version %s refused, still serving %s: %s", self.name, version, kept, reason
        )
        self.on_refused(refusal)
