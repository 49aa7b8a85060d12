"""A bounded, non-blocking prediction log.

``Predictor(log=PredictionLog())`` records every call. Recording never blocks the caller:
when the buffer is full the record is dropped and counted. A consumer (e.g. a warehouse sink
writing ``ml_predictions``) takes records with :meth:`PredictionLog.drain`, or runs in the
log's own background thread via :meth:`PredictionLog.start`.

Records are kept in a cheap internal form and turned into dicts only when drained:
``{"ts", "model", "version", "features", "output", "latency_us", "routed_to", "error"}``.
``features`` is ``{name: value}`` for one row, a list of those for a batch, or the raw input
(best effort, JSON-safe) when it could not be read; ``output`` is the result's ``to_dict()``
or ``None`` when the call raised.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from serving.results import jsonable

logger = logging.getLogger(__name__)

Consumer = Callable[[list[dict[str, Any]]], None]


class PredictionLog:
    """Bounded in-memory buffer of prediction records (thread-safe, never blocks for long)."""

    def __init__(self, maxsize: int = 10_000):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._buf: deque[Any] = deque()
        self._lock = threading.Lock()
        self._accepted = 0
        self._dropped = 0
        self._consumer_errors = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- producer side -------------------------------------------------------------------
    def put_nowait(self, record: Mapping[str, Any] | tuple) -> bool:
        """Add a record; returns False (and counts it in ``dropped``) when the log is full."""
        with self._lock:
            if len(self._buf) >= self.maxsize:
                self._dropped += 1
                return False
            self._buf.append(record)
            self._accepted += 1
            return True

    # -- consumer side -------------------------------------------------------------------
    def drain(self, max_n: int | None = None) -> list[dict[str, Any]]:
        """Remove and return up to ``max_n`` records (all when ``None``), oldest first."""
        with self._lock:
            n = len(self._buf) if max_n is None else min(max_n, len(self._buf))
            raw = [self._buf.popleft() for _ in range(n)]
        return [_to_dict(r) for r in raw]

    def start(self, consumer: Consumer, interval: float = 1.0, batch: int = 1000) -> PredictionLog:
        """Run ``consumer(records)`` in a daemon thread every ``interval`` seconds, in chunks of
        at most ``batch`` records. Consumer exceptions are logged and counted, never raised."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("consumer already running")
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                self._flush(consumer, batch)
            self._flush(consumer, batch)

        self._thread = threading.Thread(target=loop, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the consumer thread after a last flush."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _flush(self, consumer: Consumer, batch: int) -> None:
        while True:
            records = self.drain(batch)
            if not records:
                return
            try:
                consumer(records)
            except Exception:
                with self._lock:
                    self._consumer_errors += 1
                logger.exception("prediction log consumer failed; %d records lost", len(records))

    # -- introspection -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._buf)

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "pending": len(self._buf),
                "accepted": self._accepted,
                "dropped": self._dropped,
                "consumer_errors": self._consumer_errors,
            }


def _features(names: tuple[str, ...], feats: Any) -> Any:
    if isinstance(feats, np.ndarray) and feats.dtype == np.float32:
        if feats.ndim == 1 and feats.shape[0] == len(names):
            return dict(zip(names, feats.tolist()))
        if feats.ndim == 2 and feats.shape[1] == len(names):
            return [dict(zip(names, row)) for row in feats.tolist()]
    try:
        return jsonable(feats)
    except Exception:  # arbitrary user objects: keep something readable
        return repr(feats)


def _to_dict(r: Any) -> dict[str, Any]:
    if not isinstance(r, tuple):
        return dict(r)
    ts, model, version, names, feats, result, latency_ns, routed_to, error = r
    return {
        "ts": ts,
        "model": model,
        "version": version,
        "features": _features(names, feats),
        "output": None if result is None else result.to_dict(),
        "latency_us": latency_ns / 1000.0,
        "routed_to": routed_to,
        "error": error,
    }
