"""The label step: trade_quality learns from the platform's own trade results once they exist."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.steps.build import build_labels, trade_outcome_label
from pipelines.config import get_settings
from pipelines.ingest.ingestion import ingest
from pipelines.ingest.feedback import ingest_trades
from pipelines.ingest.samples import SyntheticSource
from warehouse import open_warehouse

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")


def test_trade_outcome_label_puts_each_trade_on_its_entry_bar():
    index = pd.date_range("2024-01-01", periods=5, freq="1min", tz="UTC")
    trades = pd.DataFrame({"entry_ts": [index[1] + pd.Timedelta(seconds=20), index[1], index[3]],
                           "r_multiple": [2.0, -1.0, 0.5]})
    label = trade_outcome_label(trades, index)
    assert np.isnan(label.iloc[0]) and np.isnan(label.iloc[2]) and np.isnan(label.iloc[4])
    assert label.iloc[1] == 2.0 and label.iloc[3] == 0.5


def test_ingested_trade_results_replace_the_sample_trade_log(alphaops_home):
    settings = get_settings()
    source = SyntheticSource(seed=21, n_bars=3000)
    ingest(source, symbol="FEEDBK", timeframe="1m", settings=settings, as_of=AS_OF)
    build_labels(settings, symbol="FEEDBK", timeframe="1m", spec_names=["trade_quality"], as_of=AS_OF)
    with open_warehouse(settings) as warehouse:
        sample = warehouse.read_labels(tenant="default", symbol="FEEDBK", timeframe="1m",
                                       labels=["trade_r_multiple"])["trade_r_multiple"].dropna()
    assert len(sample) > 0  # the sample strategies' trades

    bars = source.read()
    entries = bars.index[[100, 200, 300]]
    ingest_trades(settings, pd.DataFrame({
        "symbol": "FEEDBK", "trade_id": ["t1", "t2", "t3"], "entry_ts": entries,
        "exit_ts": entries + pd.Timedelta(minutes=30), "side": [1, -1, 1],
        "entry_price": bars["close"].iloc[[100, 200, 300]].to_numpy(),
        "exit_price": bars["close"].iloc[[130, 230, 330]].to_numpy(),
        "pnl": [10.0, -5.0, 2.0], "r_multiple": [1.5, -1.0, 0.25], "signal_source": "live", "context": "{}"}))
    build_labels(settings, symbol="FEEDBK", timeframe="1m", spec_names=["trade_quality"], as_of=AS_OF)
    with open_warehouse(settings) as warehouse:
        live = warehouse.read_labels(tenant="default", symbol="FEEDBK", timeframe="1m",
                                     labels=["trade_r_multiple"])["trade_r_multiple"]
    assert live.loc[entries].tolist() == [1.5, -1.0, 0.25]
    assert live.notna().sum() == 3, "the sample trade log's labels are replaced, not mixed in"


def test_multi_output_specs_store_every_target_resolved_for_the_timeframe(alphaops_home):
    """liquidity_volume and returns_lgbm on 15-minute bars: one label column per target with its
    horizon in bars of 15 minutes, and the returns family's three-class directions beside them."""
    from pipelines.ingest.sources import FrameSource
    from pipelines.ingest.synthetic import liquidity_market

    settings = get_settings()
    bars = liquidity_market(seed=4, days=8)
    ingest(FrameSource(bars, name="liq"), symbol="LIQT", timeframe="15m", settings=settings, as_of=AS_OF)
    result = build_labels(settings, symbol="LIQT", timeframe="15m", spec_names=["liquidity_volume", "returns_lgbm"],
                          as_of=AS_OF)
    names = ["liq_log_volume_6h", "liq_log_volume_1d", "label_return_1h", "label_max_loss_1d", "label_direction_4h"]
    assert set(names) <= set(result["labels"])
    with open_warehouse(settings) as warehouse:
        stored = warehouse.read_labels(tenant="default", symbol="LIQT", timeframe="15m", labels=names)
    assert stored["liq_log_volume_6h"].iloc[0] == np.log1p(bars["volume"].iloc[1:25].sum())
    assert stored["liq_log_volume_1d"].iloc[-96:].isna().all() and stored["liq_log_volume_1d"].iloc[-97] > 0
    assert set(stored["label_direction_4h"].dropna().unique()) <= {0.0, 1.0, 2.0}


def test_monthly_bars_label_the_specs_they_can_and_name_the_ones_they_cannot(alphaops_home, caplog):
    from pipelines.steps.extract import extract_samples

    settings = get_settings()
    extract_samples(settings, ["CRUDE"], AS_OF)
    with caplog.at_level("WARNING", logger="pipelines.steps.build"):
        result = build_labels(settings, symbol="CRUDE", timeframe="1mo", spec_names=["volatility_h5", "liquidity_volume"],
                              as_of=AS_OF)
    assert "fwd_rv_5" in result["labels"] and not any(name.startswith("liq_") for name in result["labels"])
    assert "no liquidity_volume labels for CRUDE 1mo: its horizons are in hours" in caplog.text
    assert list(result["skipped"]) == ["liquidity_volume"] and "1mo" in result["skipped"]["liquidity_volume"]
