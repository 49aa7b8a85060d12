"""The synthetic correlated universe: determinism, valid bars, and correlations that follow the recorded regimes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.ingest.synthetic_universe import SyntheticUniverse


@pytest.fixture(scope="module")
def sample():
    return SyntheticUniverse(seed=1, n_assets=10, n_bars=3000).generate()


def test_same_seed_same_sample_and_valid_ohlc(sample):
    again = SyntheticUniverse(seed=1, n_assets=10, n_bars=3000).generate()
    pd.testing.assert_frame_equal(again.bars["SYNU03"], sample.bars["SYNU03"])
    assert len(sample.bars) == 10
    for bars in sample.bars.values():
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
        assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all() and (bars["low"] > 0).all()


def test_switches_mark_each_regime_change_and_regimes_last_the_minimum(sample):
    regimes, switches = sample.regimes, sample.switches
    changed = regimes.index[1:][regimes.to_numpy()[1:] != regimes.to_numpy()[:-1]]
    assert pd.DatetimeIndex(switches["ts"]).equals(pd.DatetimeIndex(changed))
    assert (switches["type"] == "correlation_switch_to_" + regimes.reindex(switches["ts"]).to_numpy()).all()
    assert (switches["n_bars"].iloc[:-1] >= 100).all()


def test_pair_correlation_follows_the_regime(sample):
    returns = pd.DataFrame({s: np.log(b["close"]).diff() for s, b in sample.bars.items()}).iloc[1:]
    means = {}
    for name in ("tight", "normal", "dispersed"):
        corr = returns[sample.regimes.iloc[1:].to_numpy() == name].corr().to_numpy()
        means[name] = corr[np.triu_indices(len(corr), k=1)].mean()
    assert means["tight"] > 0.6 and 0.25 < means["normal"] < 0.5 and means["dispersed"] < 0.15


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="n_assets"):
        SyntheticUniverse(n_assets=1).generate()
    with pytest.raises(ValueError, match="loadings"):
        SyntheticUniverse(loadings=(1.2, 0.5, 0.1)).generate()
