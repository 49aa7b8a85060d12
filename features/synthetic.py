"""Seeded synthetic bars (OHLCV plus microstructure columns) for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_bars(
    n_bars: int,
    seed: int = 0,
    freq: str = "1min",
    start: str = "2024-01-01",
    microstructure: bool = True,
    start_price: float = 100.0,
) -> pd.DataFrame:
    """Random-walk bars with volatility regimes, on a UTC index named ``ts`` (bar open time).

    With ``microstructure``, adds buy_volume, sell_volume (summing to volume), bid_size,
    ask_size, spread, n_trades, a funding rate that changes every 480 bars, and sparse
    liquidations.
    """
    rng = np.random.default_rng(seed)
    # Volatility regimes: a slowly varying per-bar σ between ~0.03% and ~0.3%.
    regime = np.repeat(rng.uniform(3e-4, 3e-3, n_bars // 500 + 1), 500)[:n_bars]
    returns = rng.standard_normal(n_bars) * regime
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.empty(n_bars)
    open_[0] = start_price
    open_[1:] = close[:-1] * np.exp(rng.standard_normal(n_bars - 1) * regime[1:] * 0.1)
    wick = np.abs(rng.standard_normal((2, n_bars))) * regime * close * 0.6
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    volume = rng.lognormal(mean=6.0, sigma=0.8, size=n_bars) * (1.0 + 200.0 * np.abs(returns))
    index = pd.date_range(start, periods=n_bars, freq=freq, tz="UTC", name="ts")
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    if microstructure:
        buy_share = np.clip(0.5 + 40.0 * returns + rng.normal(0.0, 0.1, n_bars), 0.0, 1.0)
        bars["buy_volume"] = volume * buy_share
        bars["sell_volume"] = volume - bars["buy_volume"]
        bars["bid_size"] = rng.lognormal(3.0, 0.7, n_bars)
        bars["ask_size"] = rng.lognormal(3.0, 0.7, n_bars)
        bars["spread"] = close * rng.uniform(1e-5, 2e-4, n_bars) * (1.0 + regime / regime.mean())
        bars["n_trades"] = np.floor(volume / rng.uniform(5.0, 20.0, n_bars)) + 1.0
        bars["funding_rate"] = np.repeat(rng.normal(1e-4, 1e-4, n_bars // 480 + 1), 480)[:n_bars]
        liquidations = rng.lognormal(8.0, 1.5, n_bars) * (rng.random(n_bars) < 0.02)
        bars["liquidations"] = liquidations
    return bars
