"""Fixtures for the feature-library tests: real daily S&P 500 bars and seeded 1-minute bars."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# This folder has no __init__.py. When pytest puts `tests/` on sys.path and the repository
# root is not on it (an editable install resolves packages through a finder hook, which
# runs after the path scan), `import features` finds this folder as a namespace package.
# A regular package anywhere on sys.path wins over a namespace one, so add the root and
# drop a namespace `features` that may already be cached.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
if getattr(sys.modules.get("features"), "__file__", None) is None:
    for _name in [name for name in sys.modules if name == "features" or name.startswith("features.")]:
        del sys.modules[_name]


def load_sp500_bars() -> pd.DataFrame:
    """arch's bundled S&P 500 daily OHLCV (1999-2018), in the library's input format."""
    from arch.data import sp500

    raw = sp500.load()
    bars = raw[["Open", "High", "Low", "Close", "Volume"]].astype(np.float64)
    bars.columns = ["open", "high", "low", "close", "volume"]
    bars.index = pd.DatetimeIndex(raw.index).tz_localize("UTC").rename("ts")
    return bars


def make_minute_bars(n_bars: int = 3_000, seed: int = 7) -> pd.DataFrame:
    """Seeded 1-minute bars with every microstructure column, plus awkward stretches:
    a missing-minute gap, a flat market (zero range and true range for 80 bars) and
    zero-volume bars, to exercise the zero-denominator paths."""
    rng = np.random.default_rng(seed)
    sigma = np.where(np.arange(n_bars) % 1_000 < 500, 8e-4, 2e-3)
    returns = rng.standard_normal(n_bars) * sigma
    flat = slice(n_bars // 2, n_bars // 2 + 80)
    returns[flat] = 0.0
    close = 250.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([250.0], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.standard_normal(n_bars)) * sigma * 0.5)
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.standard_normal(n_bars)) * sigma * 0.5)
    high[flat] = low[flat] = open_[flat] = close[flat]
    volume = rng.gamma(2.0, 500.0, n_bars)
    volume[rng.random(n_bars) < 0.01] = 0.0
    buy = volume * rng.beta(2.0, 2.0, n_bars)
    index = pd.date_range("2024-03-01", periods=n_bars + 30, freq="1min", tz="UTC", name="ts")
    index = index.delete(slice(1_000, 1_030))  # a 30-minute gap
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "buy_volume": buy,
            "sell_volume": volume - buy,
            "bid_size": rng.lognormal(2.0, 0.5, n_bars),
            "ask_size": rng.lognormal(2.0, 0.5, n_bars),
            "spread": close * rng.uniform(2e-5, 3e-4, n_bars),
            "n_trades": rng.poisson(40, n_bars).astype(np.float64),
            "funding_rate": np.repeat(rng.normal(1e-4, 5e-5, n_bars // 480 + 1), 480)[:n_bars],
            "liquidations": rng.lognormal(7.0, 1.0, n_bars) * (rng.random(n_bars) < 0.03),
        },
        index=index,
    )


@pytest.fixture(scope="session")
def sp500_bars() -> pd.DataFrame:
    return load_sp500_bars()


@pytest.fixture(scope="session")
def minute_bars() -> pd.DataFrame:
    return make_minute_bars()


@pytest.fixture(scope="session")
def sp500_features(sp500_bars: pd.DataFrame) -> pd.DataFrame:
    import features

    return features.compute(sp500_bars)


@pytest.fixture(scope="session")
def minute_features(minute_bars: pd.DataFrame) -> pd.DataFrame:
    import features

    return features.compute(minute_bars)
