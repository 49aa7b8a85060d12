"""Cross-validation for overlapping financial labels: purged, embargoed, out of sample.

A label at bar t looks ``horizon`` bars ahead, so a training row within ``horizon`` bars
before a test row shares information with it. ``PurgedWalkForward`` trains on the past only
and drops (purges) the last ``purge`` training rows before each test fold; ``PurgedKFold``
also trains on rows after the test fold, skipping an ``embargo`` after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


class InsufficientDataError(ValueError):
    """Too few labelled rows for the requested holdout or folds."""


@dataclass(frozen=True)
class PurgedWalkForward:
    """Expanding-window walk-forward splits with a purge gap before each test fold."""

    n_splits: int = 4
    purge: int = 1
    min_train_fraction: float = 0.3

    def split(self, n_samples: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.n_splits < 2:
            raise ValueError("n_splits must be at least 2")
        first_test = int(n_samples * self.min_train_fraction)
        edges = np.linspace(first_test, n_samples, self.n_splits + 1).astype(int)
        for start, stop in zip(edges[:-1], edges[1:]):
            train_end = start - self.purge
            if train_end <= 0 or stop <= start:
                raise InsufficientDataError(f"too few rows ({n_samples}) for {self.n_splits} purged folds")
            yield np.arange(0, train_end), np.arange(start, stop)


@dataclass(frozen=True)
class PurgedKFold:
    """K contiguous folds; training rows within ``purge`` before or ``embargo`` after a test fold are dropped."""

    n_splits: int = 5
    purge: int = 1
    embargo: int = 1

    def split(self, n_samples: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        edges = np.linspace(0, n_samples, self.n_splits + 1).astype(int)
        index = np.arange(n_samples)
        for start, stop in zip(edges[:-1], edges[1:]):
            keep = (index < start - self.purge) | (index >= stop + self.embargo)
            yield index[keep], index[start:stop]


def holdout_split(n_samples: int, holdout_fraction: float, purge: int) -> tuple[np.ndarray, np.ndarray]:
    """Train rows, then a purge gap, then the final ``holdout_fraction`` of rows as holdout."""
    n_test = int(round(n_samples * holdout_fraction))
    start = n_samples - n_test
    if n_test < 10 or start - purge < 50:
        raise InsufficientDataError(
            f"{n_samples} labelled rows are too few for a {holdout_fraction:.0%} holdout; ingest more data"
        )
    return np.arange(0, start - purge), np.arange(start, n_samples)


def take_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]``, as a view (no copy) when ``rows`` is one ascending run of consecutive
    indices, as the walk-forward and holdout splits are."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and bool((np.diff(rows) == 1).all()):
        return array[rows[0]:rows[-1] + 1]
    return array[rows]


def evenly_spaced_rows(n_rows: int, max_rows: int) -> np.ndarray:
    """At most ``max_rows`` row indices spread evenly over ``0 .. n_rows - 1`` (all rows if fewer)."""
    if n_rows <= max_rows:
        return np.arange(n_rows)
    return np.unique(np.linspace(0, n_rows - 1, max_rows).round().astype(int))
