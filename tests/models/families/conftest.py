"""Shared small data for the family tests: one seeded synthetic market and its features."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    """4,000 one-minute bars with microstructure columns, and the injected events (1 per 500 bars per type)."""
    from pipelines.ingest.synthetic import SyntheticMarket

    return SyntheticMarket(seed=11, n_bars=4000, anomaly_rate=1 / 500).generate()


@pytest.fixture(scope="session")
def bars(market: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return market[0]


@pytest.fixture(scope="session")
def feature_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Features after the warm-up, finite columns only (about 3,600 rows x 144)."""
    import features

    frame = features.compute(bars).iloc[features.WARMUP:]
    return frame.loc[:, np.isfinite(frame.to_numpy()).all(axis=0)]


@pytest.fixture(scope="session")
def make_xy(feature_frame: pd.DataFrame) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``make_xy(label_series, classes=True)``: float32 X and y on the rows where the label is known."""

    def make(label: pd.Series, classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
        y = label.reindex(feature_frame.index)
        keep = y.notna().to_numpy()
        X = feature_frame.to_numpy(dtype=np.float32)[keep]
        values = y.to_numpy()[keep]
        return X, values.astype(np.int64) if classes else values.astype(np.float64)

    return make
