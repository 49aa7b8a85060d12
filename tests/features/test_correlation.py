"""Cross-asset correlation features and the forward regime label: values, and no look-ahead across the universe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.correlation import (
    correlation_features,
    forward_correlation_regime,
    rolling_correlation_summaries,
    universe_closes,
)

WINDOW, RANK_WINDOW = 20, 100


@pytest.fixture(scope="module")
def closes() -> pd.DataFrame:
    from pipelines.ingest.synthetic_universe import SyntheticUniverse

    sample = SyntheticUniverse(seed=5, n_assets=6, n_bars=600, min_regime_bars=60, mean_regime_bars=120).generate()
    return universe_closes({s: b["close"] for s, b in sample.bars.items()})


def test_summaries_match_numpy_corrcoef_and_eigvalsh(closes: pd.DataFrame) -> None:
    returns = np.log(closes).diff()
    summaries = rolling_correlation_summaries(returns, WINDOW)
    t = 300
    corr = np.corrcoef(returns.iloc[t - WINDOW + 1:t + 1].to_numpy().T)
    pairs = corr[np.triu_indices(len(corr), k=1)]
    assert summaries["avg_abs_corr"].iloc[t] == pytest.approx(np.abs(pairs).mean(), abs=1e-12)
    assert summaries["corr_dispersion"].iloc[t] == pytest.approx(pairs.std(), abs=1e-12)
    assert summaries["eig1_share"].iloc[t] == pytest.approx(np.linalg.eigvalsh(corr)[-1] / len(corr), abs=1e-12)
    assert summaries.iloc[:WINDOW].isna().all().all() and summaries.iloc[WINDOW:].notna().all().all()


def test_features_at_t_ignore_every_later_bar_of_every_member(closes: pd.DataFrame) -> None:
    full = correlation_features(closes, WINDOW, RANK_WINDOW)
    t = 400
    truncated = correlation_features(closes.iloc[:t + 1], WINDOW, RANK_WINDOW)
    pd.testing.assert_frame_equal(truncated, full.iloc[:t + 1])
    changed = closes.copy()
    changed.iloc[t + 1:, 2] *= np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.05, len(changed) - t - 1)))
    moved = correlation_features(changed, WINDOW, RANK_WINDOW)
    pd.testing.assert_frame_equal(moved.iloc[:t + 1], full.iloc[:t + 1])
    assert not np.allclose(moved.iloc[t + WINDOW:].to_numpy(), full.iloc[t + WINDOW:].to_numpy(), equal_nan=True)


def test_label_looks_only_at_the_next_window(closes: pd.DataFrame) -> None:
    label = forward_correlation_regime(closes, WINDOW, RANK_WINDOW)
    assert set(label.dropna().unique()) <= {0.0, 1.0, 2.0} and label.dropna().nunique() == 3
    assert label.iloc[-WINDOW:].isna().all() and label.iloc[:RANK_WINDOW].isna().all()
    t = 350
    changed = closes.copy()
    changed.iloc[t + WINDOW + 1:, 0] *= 1.5  # a bar after t + W changes no label at or before t
    pd.testing.assert_series_equal(forward_correlation_regime(changed, WINDOW, RANK_WINDOW).iloc[:t + 1],
                                   label.iloc[:t + 1])


def test_join_keeps_only_shared_timestamps_and_rejects_bad_input(closes: pd.DataFrame) -> None:
    a, b = closes.iloc[:, 0], closes.iloc[10:, 1]
    joined = universe_closes({"A": a, "B": b})
    assert joined.index.equals(b.index)
    with pytest.raises(ValueError, match="at least 2 members"):
        universe_closes({"A": a})
    with pytest.raises(ValueError, match="positive"):
        universe_closes({"A": a, "B": -b})
    with pytest.raises(ValueError, match="window"):
        rolling_correlation_summaries(np.log(closes).diff(), 2)
