"""compute / compute_latest: output contract, warm-ups, online parity and input validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features
from features.core import compute_latest_arrays, to_bar_arrays

PARITY_TOLERANCE = 1e-9


def assert_parity(online: np.ndarray, batch: np.ndarray, names: list[str], where: str) -> None:
    """|online - batch| <= 1e-9 (absolute, even for features in percent units such as RSI
    or CCI) for every feature; NaNs must match."""
    assert np.array_equal(np.isnan(online), np.isnan(batch)), f"NaN mismatch at {where}"
    error = np.abs(online - batch)
    error[np.isnan(error)] = 0.0
    worst = int(np.argmax(error))
    assert error[worst] <= PARITY_TOLERANCE, f"{names[worst]} differs by {error[worst]:.3g} at {where}"


# --- output contract ----------------------------------------------------------------------


def test_compute_returns_every_ohlcv_feature_as_float64_on_the_input_index(sp500_bars, sp500_features):
    assert list(sp500_features.columns) == features.feature_names()
    assert sp500_features.index.equals(sp500_bars.index)
    assert set(sp500_features.dtypes) == {np.dtype("float64")}


def test_microstructure_columns_add_the_microstructure_features(minute_features):
    assert list(minute_features.columns) == features.feature_names(microstructure=True)


def test_only_features_whose_columns_are_present_are_computed(minute_bars):
    bars = minute_bars[["open", "high", "low", "close", "volume", "spread"]]
    extra = [name for name in features.compute(bars).columns if name not in features.feature_names()]
    assert extra == ["spread_bps", "spread_vol_20", "spread_z_60"]


@pytest.mark.parametrize("data", ["sp500", "minute"])
def test_each_feature_is_nan_exactly_during_its_warmup_and_finite_after(data, request):
    values = request.getfixturevalue(f"{data}_features")
    for info in features.catalog():
        if info.name not in values:
            continue
        column = values[info.name].to_numpy()
        assert np.isnan(column[: info.warmup]).all(), info.name
        assert np.isfinite(column[info.warmup :]).all(), info.name


def test_a_window_shorter_than_the_warmup_gives_nan_rows_not_an_error(sp500_bars):
    short = features.compute(sp500_bars.iloc[:30])
    assert short["ret_1"].notna().sum() == 29
    assert short["ema_dist_200"].isna().all()


# --- online parity ------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["sp500", "minute"])
def test_compute_latest_equals_compute_at_many_bars(data, request):
    bars, batch = request.getfixturevalue(f"{data}_bars"), request.getfixturevalue(f"{data}_features")
    names = list(batch.columns)
    # compute_latest runs its own engine (features.online): check it at many bars.
    for t in np.linspace(features.LOOKBACK - 1, len(bars) - 1, 150).astype(int):
        window = bars.iloc[max(0, t - 600) : t + 1]  # windows longer and exactly LOOKBACK long
        latest = features.compute_latest(window)
        assert latest.name == bars.index[t]
        assert list(latest.index) == names
        assert_parity(latest.to_numpy(), batch.iloc[t].to_numpy(), names, f"bar {t}")


def test_compute_latest_after_a_flat_market_matches(minute_bars, minute_features):
    """The fixture has 80 bars without any price change: ATR, σ and true ranges are exactly
    0 there, which running sums would turn into rounding residues (and ratios of them)."""
    flat_start = len(minute_bars) // 2
    names = list(minute_features.columns)
    for t in range(flat_start - 5, flat_start + 200):
        latest = features.compute_latest(minute_bars.iloc[t - features.LOOKBACK + 1 : t + 1])
        assert_parity(latest.to_numpy(), minute_features.iloc[t].to_numpy(), names, f"bar {t}")
    inside = minute_features.iloc[flat_start + 79]
    assert inside["atr_pct_14"] == 0.0 and inside["rsi_14"] == 50.0 and inside["bb_pctb_20"] == 0.5


def test_each_feature_depends_only_on_its_declared_warmup(minute_bars, minute_features):
    """Computing on exactly warmup + 1 bars reproduces the batch value: the warm-up is the
    feature's whole memory."""
    t = len(minute_bars) - 7
    infos = [info for info in features.catalog() if info.name in minute_features]
    for warmup in sorted({info.warmup for info in infos}):
        names = [info.name for info in infos if info.warmup == warmup]
        window = features.compute(minute_bars.iloc[t - warmup : t + 1])
        assert_parity(
            window[names].iloc[-1].to_numpy(), minute_features[names].iloc[t].to_numpy(), names, f"warm-up {warmup}"
        )


def test_compute_latest_arrays_is_the_numpy_core_of_compute_latest(minute_bars):
    window = minute_bars.iloc[-500:]
    infos, vector = compute_latest_arrays(to_bar_arrays(window, tail=features.LOOKBACK))
    series = features.compute_latest(window)
    assert [info.name for info in infos] == list(series.index)
    np.testing.assert_array_equal(vector, series.to_numpy())
    _, from_longer_arrays = compute_latest_arrays(to_bar_arrays(window))  # uses its last LOOKBACK bars
    np.testing.assert_array_equal(from_longer_arrays, vector)


def test_threads_give_the_same_values_as_one_thread(minute_bars):
    from features.core import PARALLEL_MIN_BARS

    # Long enough for the threaded path; tiled so every microstructure path runs.
    repeats = PARALLEL_MIN_BARS // len(minute_bars) + 1
    bars = pd.concat([minute_bars] * repeats)
    bars.index = pd.date_range("2024-03-01", periods=len(bars), freq="1min", tz="UTC", name="ts")
    one_thread = features.compute(bars, n_jobs=1)
    two_threads = features.compute(bars, n_jobs=2)
    assert len(bars) >= PARALLEL_MIN_BARS
    pd.testing.assert_frame_equal(one_thread, two_threads, check_exact=True)
    assert features.compute(bars.iloc[:1_000], n_jobs=4).equals(one_thread.iloc[:1_000])


def test_n_jobs_below_one_is_rejected(sp500_bars):
    with pytest.raises(ValueError, match="n_jobs"):
        features.compute(sp500_bars, n_jobs=0)


def test_lookback_is_warmup_plus_one_and_covers_every_feature():
    assert features.LOOKBACK == features.WARMUP + 1
    assert features.WARMUP == max(info.warmup for info in features.catalog())
    warmup = {info.name: info.warmup for info in features.catalog()}
    assert features.max_warmup(["ret_1", "rsi_14"]) == max(warmup["ret_1"], warmup["rsi_14"]) == warmup["rsi_14"]


# --- validation ---------------------------------------------------------------------------


def test_missing_column_is_named(sp500_bars):
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['volume'\]"):
        features.compute(sp500_bars.drop(columns="volume"))


def test_unsorted_timestamps_are_rejected(sp500_bars):
    shuffled = sp500_bars.iloc[[0, 2, 1, 3]]
    with pytest.raises(ValueError, match="strictly increasing"):
        features.compute(shuffled)


def test_duplicate_timestamps_are_rejected(sp500_bars):
    duplicated = pd.concat([sp500_bars.iloc[:3], sp500_bars.iloc[2:4]])
    with pytest.raises(ValueError, match=r"strictly increasing: ts\[3\]"):
        features.compute(duplicated)


def test_a_non_datetime_index_is_rejected(sp500_bars):
    with pytest.raises(ValueError, match="DatetimeIndex"):
        features.compute(sp500_bars.reset_index(drop=True))


def test_nan_and_non_positive_prices_are_named(sp500_bars):
    bars = sp500_bars.iloc[:50].copy()
    bars.iloc[10, bars.columns.get_loc("close")] = np.nan
    with pytest.raises(ValueError, match=r"column 'close' has a NaN/inf value at 1999-01-19"):
        features.compute(bars)
    bars = sp500_bars.iloc[:50].copy()
    bars.iloc[5, bars.columns.get_loc("low")] = 0.0
    with pytest.raises(ValueError, match="column 'low' has a non-positive price"):
        features.compute(bars)


def test_non_numeric_column_is_named(sp500_bars):
    bars = sp500_bars.iloc[:50].astype({"volume": object})
    bars.iloc[3, bars.columns.get_loc("volume")] = "lots"
    with pytest.raises(ValueError, match="column 'volume' is not numeric"):
        features.compute(bars)


def test_compute_latest_rejects_a_window_shorter_than_the_lookback(sp500_bars):
    with pytest.raises(ValueError, match=rf"window has 100 bars.*LOOKBACK = WARMUP \+ 1 = {features.LOOKBACK}"):
        features.compute_latest(sp500_bars.iloc[:100])


def test_compute_latest_validates_its_window(minute_bars):
    window = minute_bars.iloc[-500:].copy()
    window.iloc[-1, window.columns.get_loc("high")] = np.inf
    with pytest.raises(ValueError, match="column 'high' has a NaN/inf value"):
        features.compute_latest(window)


def test_an_extra_text_column_is_ignored(sp500_bars):
    window = sp500_bars.iloc[-500:].assign(symbol="SPX")
    latest = features.compute_latest(window)
    np.testing.assert_array_equal(latest.to_numpy(), features.compute_latest(sp500_bars.iloc[-500:]).to_numpy())


def test_empty_bars_give_an_empty_frame_with_every_column(sp500_bars):
    empty = features.compute(sp500_bars.iloc[:0])
    assert empty.shape == (0, len(features.feature_names()))


def test_nan_in_a_microstructure_column_is_named(minute_bars):
    bars = minute_bars.iloc[:600].copy()
    bars.iloc[300, bars.columns.get_loc("bid_size")] = np.nan
    with pytest.raises(ValueError, match="column 'bid_size' has a NaN/inf value"):
        features.compute(bars)


# --- chunked computation ------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1_000, 777, features.WARMUP - 1])
def test_compute_chunks_end_to_end_equal_one_pass_with_the_same_nans(minute_bars, minute_features, chunk_rows):
    pieces = list(features.compute_chunks(minute_bars, chunk_rows))
    assert all(len(p) <= chunk_rows for p in pieces) and len(pieces) == -(-len(minute_bars) // chunk_rows)
    chunked = pd.concat(pieces)
    assert chunked.index.equals(minute_features.index) and list(chunked.columns) == list(minute_features.columns)
    # the NaN pattern as a whole (warm-up rows and any NaN inside the series), then the values
    assert np.array_equal(np.isnan(chunked.to_numpy()), np.isnan(minute_features.to_numpy()))
    worst = np.nanmax(np.abs(chunked.to_numpy() - minute_features.to_numpy()), axis=0)
    assert_parity(worst, np.zeros_like(worst), list(chunked.columns), f"chunks of {chunk_rows}")


def test_compute_chunks_in_float32_and_refuses_an_empty_chunk(minute_bars, minute_features):
    first = next(features.compute_chunks(minute_bars.iloc[:3_000], 2_000, dtype=np.float32))
    assert first.dtypes.unique().tolist() == [np.dtype(np.float32)]
    np.testing.assert_array_equal(first.to_numpy(), minute_features.iloc[:2_000].to_numpy(dtype=np.float32))
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        next(features.compute_chunks(minute_bars, 0))
