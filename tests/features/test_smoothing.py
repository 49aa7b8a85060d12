"""Finite-memory smoothers and the numerically careful rolling helpers."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from features.smoothing import (
    centered_talib,
    level_stddev,
    ratio_of_sums,
    safe_divide,
    truncated_ema,
    wilder,
    wilder_length,
    zscore,
)


@pytest.fixture()
def series() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = 100.0 + np.cumsum(rng.standard_normal(2_000))
    x[:7] = np.nan  # an upstream indicator's warm-up
    return x


@pytest.mark.parametrize(("period", "length"), [(10, 20), (26, 52), (27, 54), (200, 400)])
def test_truncated_ema_is_the_renormalised_ema_weighting_of_the_last_length_bars(series, period, length):
    out = truncated_ema(series, period, length)
    alpha = 2.0 / (period + 1)
    weights = alpha * (1 - alpha) ** np.arange(length)
    weights /= weights.sum()
    first = 7 + length - 1
    assert np.isnan(out[:first]).all()
    for t in (first, first + 1, 1_000, len(series) - 1):
        expected = weights @ series[t - length + 1 : t + 1][::-1]
        assert out[t] == pytest.approx(expected, rel=1e-12)


def test_truncated_ema_forgets_everything_before_its_window(series):
    changed = series.copy()
    changed[7:1_500] *= 3.0
    np.testing.assert_allclose(truncated_ema(changed, 20)[1_540:], truncated_ema(series, 20)[1_540:], rtol=1e-12)


def test_truncated_ema_tracks_talib_ema_within_its_truncated_weight(series):
    x = series[7:]
    ours, theirs = truncated_ema(x, 20)[500:], talib.EMA(x, 20)[500:]
    # the dropped tail holds (1 - 2/21)^40 ~ 2% of the weight
    assert np.max(np.abs(ours - theirs)) < 0.05 * np.ptp(x)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.999


def test_wilder_uses_alpha_one_over_period_and_is_exactly_zero_on_a_zero_window():
    rng = np.random.default_rng(2)
    x = rng.exponential(1.0, 500)
    x[300:400] = 0.0
    out = wilder(x, 14)
    length = wilder_length(14)
    weights = (1 / 14) * (13 / 14) ** np.arange(length)
    assert out[250] == pytest.approx(weights @ x[250 - length + 1 : 251][::-1] / weights.sum(), rel=1e-12)
    assert (out[300 + length - 1 : 400] == 0.0).all()
    assert (out[400:] > 0).all()


@pytest.mark.parametrize("moving_share", [1.0, 0.15])
def test_level_stddev_is_accurate_and_independent_of_history(moving_share):
    """σ of a price level (σ ~ 1e-5 of the level; with moving_share < 1 most bars are flat)
    matches an exact two-pass reference, and a long batch agrees with short windows."""
    rng = np.random.default_rng(3)
    steps = rng.normal(0.0, 0.5, 20_000) * (rng.random(20_000) < moving_share)
    level = 50_000.0 + np.cumsum(steps)
    windows = np.lib.stride_tricks.sliding_window_view(level, 20)
    exact = (windows - windows[:, :1]).std(axis=1)  # shifted first: exact 0 on constant windows
    batch = level_stddev(level, 20)
    moving = exact > 0
    assert np.max(np.abs(batch[19:][moving] / exact[moving] - 1)) < 1e-8
    assert (batch[19:][~moving] == 0.0).all()
    for t in range(500, len(level), 997):
        assert level_stddev(level[t - 40 : t + 1], 20)[-1] == pytest.approx(batch[t], rel=1e-9, abs=0.0)


def test_centered_talib_returns_outputs_relative_to_the_anchor():
    x = np.linspace(100.0, 200.0, 3_000)
    anchor, (upper, middle, lower) = centered_talib(talib.BBANDS, (x,), 20, 2.0, 2.0, 0)
    np.testing.assert_allclose((middle + anchor)[19:], talib.SMA(x, 20)[19:], rtol=1e-12)
    np.testing.assert_allclose((upper - lower)[19:], 4 * talib.STDDEV(x, 20)[19:], rtol=1e-6)


def test_level_stddev_and_zscore_are_exactly_zero_on_constant_windows():
    x = np.concatenate([np.linspace(1.0, 2.0, 50), np.full(30, 2.0)])
    assert (level_stddev(x, 20)[69:] == 0.0).all()
    assert (zscore(x, 20)[69:] == 0.0).all()
    assert np.isfinite(zscore(x, 20)[19:]).all()


def test_ratio_of_sums_fills_windows_without_any_denominator():
    numerator = np.ones(40)
    denominator = np.concatenate([np.full(10, 2.0), np.zeros(30)])
    ratio = ratio_of_sums(numerator, denominator, 5, fill=-1.0)
    assert ratio[4] == pytest.approx(0.5)
    assert (ratio[14:] == -1.0).all()


def test_safe_divide_fills_zero_denominators_and_keeps_nans():
    out = safe_divide(np.array([1.0, np.nan, 2.0, 3.0]), np.array([2.0, 0.0, 0.0, np.nan]), fill=7.0)
    np.testing.assert_array_equal(out, [0.5, np.nan, 7.0, np.nan])
