"""AlphaOps feature library: stationary, finite-memory features on TA-Lib.

Public API::

    compute(bars, n_jobs=None) -> DataFrame  # batch: every feature for every bar (on the cores)
    compute_chunks(bars, chunk_rows)    # the same, in pieces of bounded memory (long series)
    compute_latest(window) -> Series    # online: the last bar, equal to compute() at that bar
    catalog() / feature_names()         # names, groups, warm-ups, descriptions
    FEATURE_SET_VERSION, WARMUP, LOOKBACK

Labels live in :mod:`features.labels`, higher timeframes and cross-asset features in
:mod:`features.timeframes`, the benchmark in :mod:`features.bench`. Importing this package
loads only numpy, pandas and TA-Lib.
"""

from features.definitions import (
    FEATURE_SET_VERSION,
    LOOKBACK,
    MICROSTRUCTURE_COLUMNS,
    OHLCV_COLUMNS,
    WARMUP,
    FeatureInfo,
    catalog,
    feature_names,
    max_warmup,
)
from features.core import compute, compute_chunks, compute_latest

__all__ = [
    "FEATURE_SET_VERSION",
    "LOOKBACK",
    "MICROSTRUCTURE_COLUMNS",
    "OHLCV_COLUMNS",
    "WARMUP",
    "FeatureInfo",
    "catalog",
    "compute",
    "compute_chunks",
    "compute_latest",
    "feature_names",
    "max_warmup",
]
