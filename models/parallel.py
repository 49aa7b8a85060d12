"""Deterministic parallel fits: independent fits on threads, results in submission order.

LightGBM (ctypes), scikit-learn's tree builders and libsvm release the GIL while they fit,
so threads use every core without copying the training data into other processes. Each fit
gets its own estimator and seed, and results come back in the order the work was given, so
a run is reproducible whatever the number of threads. Torch models are not thread-safe
(``torch.manual_seed`` and ``torch.set_num_threads`` are process-wide): specs mark them
with ``parallel_fits=False`` and they run one fit at a time.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_n_jobs() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ordered_map(function: Callable[[T], R], items: Iterable[T], n_jobs: int = 1) -> Iterator[R]:
    """``map(function, items)`` on up to ``n_jobs`` threads, yielding results in order.

    At most ``n_jobs`` items are in flight, so a consumer that stops early (a pruned Optuna
    trial) wastes at most ``n_jobs - 1`` fits; the rest are never started. ``n_jobs <= 1``
    runs in the calling thread. An exception from ``function`` is raised at its item.
    """
    if n_jobs <= 1:
        yield from map(function, items)
        return
    pending: deque[Future[R]] = deque()
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="alphaops-fit") as pool:
        try:
            for item in iterator:
                pending.append(pool.submit(function, item))
                if len(pending) >= n_jobs:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # the consumer stopped early: don't start queued fits
                future.cancel()
