"""Labels whose horizons are in hours: liquidity volume targets, multi-horizon returns and excursions,
and three-class directions with a neutral band."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import labels
from pipelines.ingest.synthetic import liquidity_market


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return liquidity_market(seed=5, days=6)


def test_hours_become_bars_for_the_timeframe():
    assert labels.bars_for_hours(6, 0.25) == 24
    assert labels.bars_for_hours(24, 24.0) == 1
    assert labels.bars_for_hours(1, 24.0) == 1  # a daily bar is the shortest horizon it has
    assert [labels.hours_name(h) for h in (1, 4, 24, 48)] == ["1h", "4h", "1d", "2d"]
    with pytest.raises(ValueError, match="positive"):
        labels.bars_for_hours(0, 1.0)


def test_liquidity_targets_sum_the_next_hours_volume(bars):
    frame = labels.liquidity_targets(bars, bar_hours=0.25)
    assert list(frame.columns) == ["liq_log_volume_6h", "liq_log_volume_12h", "liq_log_volume_1d"]
    t = 50
    volume = bars["volume"].to_numpy()
    assert frame["liq_log_volume_6h"].iloc[t] == pytest.approx(np.log1p(volume[t + 1:t + 25].sum()))
    assert frame["liq_log_volume_1d"].iloc[-96:].isna().all() and frame["liq_log_volume_1d"].iloc[:-96].notna().all()


def test_liquidity_targets_refuse_negative_volume(bars):
    bad = bars.assign(volume=-bars["volume"])
    with pytest.raises(ValueError, match="non-negative"):
        labels.liquidity_targets(bad, bar_hours=0.25)


def test_multi_horizon_returns_are_the_move_and_its_extremes(bars):
    frame = labels.multi_horizon_returns(bars, bar_hours=0.25)
    assert list(frame.columns) == [f"label_{k}_{h}" for k in ("return", "max_gain", "max_loss")
                                   for h in ("1h", "4h", "1d")]
    t, close, high, low = 10, bars["close"].to_numpy(), bars["high"].to_numpy(), bars["low"].to_numpy()
    assert frame["label_return_4h"].iloc[t] == pytest.approx(np.log(close[t + 16] / close[t]))
    assert frame["label_max_gain_1h"].iloc[t] == pytest.approx(high[t + 1:t + 5].max() / close[t] - 1)
    assert frame["label_max_loss_1d"].iloc[t] == pytest.approx(low[t + 1:t + 97].min() / close[t] - 1)
    valid = frame.dropna()
    assert (valid["label_max_gain_1d"] >= valid["label_max_gain_1h"]).all()
    assert (valid["label_max_loss_1d"] <= valid["label_max_loss_1h"]).all()


def test_direction_labels_have_a_neutral_band(bars):
    frame = labels.multi_horizon_directions(bars, bar_hours=0.25, threshold=0.001)
    ret = labels.multi_horizon_returns(bars, bar_hours=0.25)["label_return_1h"]
    d = frame["label_direction_1h"]
    ok = ret.notna()
    assert ((d[ok] == 2) == (ret[ok] > 0.001)).all() and ((d[ok] == 0) == (ret[ok] < -0.001)).all()
    assert set(d[ok].unique()) == {0.0, 1.0, 2.0}
    with pytest.raises(ValueError, match="non-negative"):
        labels.multi_horizon_directions(bars, bar_hours=0.25, threshold=-0.1)


def test_bars_without_recorded_volume_have_no_liquidity_label(bars):
    """arch's WTI and crude series carry volume 0 throughout: nothing to forecast, so no label (the
    spec is skipped for too few labelled rows instead of fitting zeros)."""
    for no_volume in (bars.assign(volume=0.0), bars.drop(columns=["volume"])):
        frame = labels.liquidity_targets(no_volume, bar_hours=0.25)
        assert list(frame.columns) == ["liq_log_volume_6h", "liq_log_volume_12h", "liq_log_volume_1d"]
        assert frame.isna().all().all()
    quiet_day = bars.copy()
    quiet_day.iloc[:96, quiet_day.columns.get_loc("volume")] = 0.0  # a day without trading is a zero, not missing
    assert labels.liquidity_targets(quiet_day, bar_hours=0.25)["liq_log_volume_6h"].iloc[:50].notna().all()
