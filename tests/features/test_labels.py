"""Labels: forward-looking by design, exact against brute-force references, NaN tails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import labels

HORIZONS = (1, 5, 20)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    high = close * np.exp(np.abs(rng.normal(0, 0.004, 400)))
    low = close * np.exp(-np.abs(rng.normal(0, 0.004, 400)))
    index = pd.date_range("2024-01-01", periods=400, freq="1min", tz="UTC", name="ts")
    return pd.DataFrame({"high": high, "low": low, "close": close}, index=index)


def test_forward_return(small):
    c = small["close"].to_numpy()
    h = 5
    fwd = labels.forward_return(small, h)
    np.testing.assert_allclose(fwd[:-h], np.log(c[h:] / c[:-h]), rtol=1e-12)
    assert fwd.name == f"fwd_ret_{h}"


def test_excursions_match_a_brute_force_scan(small):
    h = 7
    out = labels.excursions(small, h)
    high, low, close = (small[name].to_numpy() for name in ("high", "low", "close"))
    for t in range(0, len(close) - h, 13):
        assert out[f"mfe_{h}"].iloc[t] == pytest.approx(high[t + 1 : t + h + 1].max() / close[t] - 1, rel=1e-12)
        assert out[f"mae_{h}"].iloc[t] == pytest.approx(low[t + 1 : t + h + 1].min() / close[t] - 1, rel=1e-12)


def test_sigma_reversion_label_matches_its_definition(small):
    horizon, window, k = 10, 20, 1.0
    out = labels.sigma_reversion_label(small, horizon, window, k)
    close = small["close"].to_numpy()
    for t in range(window - 1, len(close) - horizon):
        past, future = close[t - window + 1 : t + 1], close[t + 1 : t + horizon + 1]
        mean, sigma = past.mean(), past.std()
        if close[t] > mean:
            expected = close[t] - future.min() >= k * sigma - 1e-12
        else:
            expected = future.max() - close[t] >= k * sigma - 1e-12
        assert out.iloc[t] == float(expected), t
    assert out.iloc[: window - 1].isna().all()
    assert 0.05 < out.mean() < 0.95


def test_forward_realized_vol_matches_its_definition(small):
    out = {h: labels.forward_realized_vol(small, h) for h in (1, 6)}
    returns = np.diff(np.log(small["close"].to_numpy()))
    for t in range(0, len(returns) - 6, 17):
        assert out[6].iloc[t] == pytest.approx(np.sqrt(np.mean(returns[t : t + 6] ** 2)), rel=1e-9)
        assert out[1].iloc[t] == pytest.approx(abs(returns[t]), rel=1e-9)


def _regime_bars(forward_steps: np.ndarray, past: int = 150) -> pd.DataFrame:
    """Bars whose first `past` log returns are N(0, 1%) and then follow `forward_steps`."""
    rng = np.random.default_rng(5)
    steps = np.concatenate([rng.normal(0, 0.01, past), forward_steps])
    close = 100 * np.exp(np.cumsum(steps))
    index = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC")
    return pd.DataFrame({"high": close * 1.001, "low": close * 0.999, "close": close}, index=index)


@pytest.mark.parametrize(
    ("name", "forward"),
    [
        ("trend_up", np.full(30, 0.004) + np.random.default_rng(1).normal(0, 0.008, 30)),
        ("trend_down", np.full(30, -0.004) + np.random.default_rng(2).normal(0, 0.008, 30)),
        ("high_volatility", np.random.default_rng(3).normal(0, 0.03, 30)),
        ("consolidation", np.random.default_rng(4).normal(0, 0.001, 30)),
        ("range_bound", np.tile([0.01, -0.01], 15)),
    ],
)
def test_regime_label_recognises_each_regime(name, forward):
    bars = _regime_bars(forward)
    t = 149  # the decision bar: the label describes bars 150..179
    label = labels.regime_label(bars, horizon=30, vol_window=120)
    assert labels.REGIME_NAMES[int(label.iloc[t])] == name


def test_regime_label_uses_only_its_documented_bars(small):
    horizon, vol_window, t = 20, 60, 200
    base = labels.regime_label(small, horizon, vol_window)
    altered = small.copy()
    altered.iloc[t + horizon + 1 :] *= 3.0  # after the forward window
    altered.iloc[: t - vol_window] *= 0.3  # before the reference window
    again = labels.regime_label(altered, horizon, vol_window)
    assert again.iloc[t] == base.iloc[t]
    assert labels.REGIME_NAMES == ("trend_up", "trend_down", "range_bound", "high_volatility", "consolidation")


def test_every_label_leaves_exactly_its_horizon_unfilled(sp500_bars):
    parts = []
    for h in HORIZONS:
        parts += [labels.forward_return(sp500_bars, h), labels.forward_realized_vol(sp500_bars, h),
                  labels.direction_up(sp500_bars, h).rename(f"dir_up_{h}"),
                  labels.direction_three_class(sp500_bars, h, 0.001).rename(f"dir3_{h}"),
                  labels.excursions(sp500_bars, h), labels.sigma_reversion_label(sp500_bars, h),
                  labels.regime_label(sp500_bars, h)]
    table = pd.concat(parts, axis=1)
    for column in table.columns:
        horizon = int(column.rsplit("_", 1)[1])
        values = table[column]
        assert values.iloc[-horizon:].isna().all(), column
        assert values.iloc[200:-horizon].notna().all(), column


def test_labels_do_look_forward(small):
    """Sanity check of the direction of time: the label at t moves with bar t+h."""
    h, t = 5, 100
    moved = small.copy()
    moved.loc[moved.index[t + h], "close"] *= 1.5
    assert labels.direction_up(moved, h).iloc[t] == 1.0
    assert labels.forward_return(moved, h).iloc[t] > labels.forward_return(small, h).iloc[t]


def test_bad_horizon_is_rejected(small):
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        labels.forward_return(small, 0)
