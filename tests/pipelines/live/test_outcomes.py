"""Outcomes of logged predictions for a multi-output model: its first target's realized value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import get_settings

SYMBOL = "LIQOUT"
AS_OF = pd.Timestamp("2040-01-01", tz="UTC")


def test_a_multi_output_models_outcome_is_the_realized_value_of_its_first_target(alphaops_home):
    from models.catalog import spec_by_name
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.sources import FrameSource
    from pipelines.ingest.synthetic import liquidity_market
    from pipelines.live.outcomes import fill_outcomes, join_predictions_outcomes
    from pipelines.live.prediction_sink import write_predictions
    from registry import Registry

    settings = get_settings()
    bars = liquidity_market(seed=5, days=10)
    ingest(FrameSource(bars, name=f"generated:{SYMBOL}"), symbol=SYMBOL, timeframe="15m", settings=settings, as_of=AS_OF)
    spec = spec_by_name("liquidity_volume", "15m")
    name = f"{settings.scope}.liquidity_volume.{SYMBOL}"
    Registry.from_settings(settings).client.create_registered_model(
        name, tags={"spec": "liquidity_volume", "timeframe": "15m"})
    scored = bars.index[100:400]  # each bar's record as Predictor.to_dict() gives it: one output per target
    records = [{"model": name, "version": "1", "symbol": SYMBOL, "bar_ts": ts, "features": [1.0, 2.0],
                "output": {"outputs": {target: [float(k + j)] for j, target in enumerate(spec.targets)},
                           "fallback": False}}
               for k, ts in enumerate(scored)]
    assert write_predictions(settings, records) == len(scored)

    last_bar = bars.index[-1]
    filled = fill_outcomes(settings, last_bar)
    labels = spec.label_for(bars)
    first = labels[spec.targets[0]].reindex(scored)
    assert filled == int(first.notna().sum()) > 250  # the last day's 6-hour volume is not known yet at 10 days
    joined = join_predictions_outcomes(settings, f"liquidity_volume.{SYMBOL}").set_index("ts")
    joined.index = pd.DatetimeIndex(joined.index)
    np.testing.assert_allclose(joined["outcome"].to_numpy(), first.loc[joined.index].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(joined["output"].to_numpy(), np.arange(len(scored))[scored.isin(joined.index)])
    both = labels[list(spec.targets[:2])].reindex(scored).dropna()
    assert not np.allclose(both.iloc[:, 0], both.iloc[:, 1])  # the first target, not just any of them
    assert fill_outcomes(settings, last_bar) == 0  # nothing left to fill
    from pipelines.live.metrics import live_metrics

    live = live_metrics(joined.reset_index().assign(error=""), binary=False, regression=True)  # joined: no error rows
    assert live["n_outcomes"] == filled
    assert live["live_mae"] == pytest.approx(np.mean(np.abs(joined["output"] - joined["outcome"])))
