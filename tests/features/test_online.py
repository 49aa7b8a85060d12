"""The online engine's building blocks (its parity with compute is tested in test_core.py)."""

from __future__ import annotations

import numpy as np
import talib

from features import talib_raw
from features.windows import ema_weight_matrix, ema_weights, tema, windows
from features.smoothing import ema_length, truncated_ema


def test_truncated_ema_at_the_last_bars_equals_the_batch_recursion():
    x = np.cumsum(np.random.default_rng(0).normal(size=300)) + 100.0
    batch = truncated_ema(x, 20)
    assert abs(tema(x, 20) - batch[-1]) < 1e-12
    np.testing.assert_allclose(tema(x, 20, count=6), batch[-6:], rtol=0, atol=1e-12)
    assert abs(ema_weights(20, ema_length(20)).sum() - 1.0) < 1e-12


def test_one_product_gives_several_emas():
    x = np.cumsum(np.random.default_rng(1).normal(size=300))
    weights = ema_weight_matrix(((10, 20), (50, 100)))
    both = windows(x, weights.shape[0], 3) @ weights
    np.testing.assert_allclose(both[:, 0], tema(x, 10, 3), atol=1e-12)
    np.testing.assert_allclose(both[:, 1], tema(x, 50, 3), atol=1e-12)


def test_windows_are_read_only_views_ending_at_the_last_bars():
    x = np.arange(10.0)
    view = windows(x, 4, 3)
    np.testing.assert_array_equal(view, [[4, 5, 6, 7], [5, 6, 7, 8], [6, 7, 8, 9]])
    assert not view.flags.writeable
    rows = np.arange(20.0).reshape(2, 10)
    np.testing.assert_array_equal(windows(rows, 2, 2), [[[7, 8], [8, 9]], [[17, 18], [18, 19]]])


def test_talib_raw_is_the_c_function_behind_the_package_wrapper():
    x = np.random.default_rng(2).normal(size=50)
    assert talib_raw.SMA is not talib.SMA
    assert talib_raw.SMA is talib.SMA.__wrapped__
    np.testing.assert_array_equal(talib_raw.SMA(x, 5), talib.SMA(x, 5))
