from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.families.trade_quality import (
    SIGNAL_SOURCES,
    TRADE_COLUMNS,
    TradeQualityModel,
    generate_trade_log,
    trade_label,
    trade_matrix,
)
from models.onnx_export import run_onnx


@pytest.fixture(scope="module")
def trades(bars) -> tuple[pd.DataFrame, list[str]]:
    import features

    feats = features.compute(bars)
    log = generate_trade_log(bars, feats)
    names = [c for c in feats.columns if np.isfinite(log[c].to_numpy(dtype=float)).all()]
    return log, names


@pytest.fixture(scope="module")
def data(trades):
    log, names = trades
    X, y = trade_matrix(log, names), log["r_multiple"].to_numpy()
    return X, y, int(len(X) * 0.7)


@pytest.fixture(scope="module")
def fitted(data):
    X, y, cut = data
    return TradeQualityModel(n_estimators=40, random_state=8).fit(X[:cut], y[:cut])


def test_trade_log_columns_and_invariants(bars, trades):
    log, names = trades
    assert len(log) >= 100
    assert list(log.columns[: len(TRADE_COLUMNS)]) == list(TRADE_COLUMNS)
    assert {"rsi_14", "ema_cross_20_50", "atr_pct_14"} <= set(log.columns)  # entry-time context
    assert set(log["signal_source"]) == set(SIGNAL_SOURCES) and set(log["side"]) == {-1, 1}
    assert (log["exit_ts"] > log["entry_ts"]).all()
    risk = (log["entry_price"] - log["stop_price"]).abs()
    np.testing.assert_allclose(log["r_multiple"], log["pnl"] / risk)
    np.testing.assert_allclose(log["pnl"], log["side"] * (log["exit_price"] - log["entry_price"]))
    np.testing.assert_allclose(log.loc[log["exit_reason"] == "stop", "r_multiple"], -1.0)
    np.testing.assert_allclose(log.loc[log["exit_reason"] == "target", "r_multiple"], 2.0)  # 3 ATR / 1.5 ATR
    # one position at a time per source
    for _, group in log.groupby("signal_source"):
        group = group.sort_values("entry_ts")
        assert (group["entry_ts"].to_numpy()[1:] > group["exit_ts"].to_numpy()[:-1]).all()
    # entries fill at the signal bar's close
    np.testing.assert_allclose(log["entry_price"], bars["close"].reindex(log["entry_ts"]).to_numpy())


def test_trade_log_is_deterministic(bars, trades):
    log, _ = trades
    pd.testing.assert_frame_equal(generate_trade_log(bars), log)


def test_per_bar_label_sits_on_entry_bars(bars, trades):
    log, _ = trades
    label = trade_label(bars)
    assert label.index.equals(bars.index)
    entries = label.dropna()
    assert set(entries.index) <= set(log["entry_ts"])
    first = log.drop_duplicates("entry_ts").set_index("entry_ts")["r_multiple"]
    np.testing.assert_allclose(entries.to_numpy(), first.reindex(entries.index).to_numpy())


def test_sklearn_contract(data):
    X, y, cut = data
    model = TradeQualityModel(n_estimators=5)
    with pytest.raises(NotFittedError):
        model.predict(X[:5])
    with pytest.raises(NotFittedError):
        model.predict_proba(X[:5])
    assert model.fit(X[:cut], y[:cut]) is model
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "regressor_")
    with pytest.raises(ValueError, match="only wins or only losses"):
        TradeQualityModel().fit(X[:20], np.full(20, -1.0))


def test_one_graph_two_outputs_parity_and_determinism(data, fitted):
    X, y, cut = data
    model = fitted.to_onnx()
    assert [o.name for o in model.graph.output] == ["value", "win_prob"]
    value, win_prob = run_onnx(model, X[cut:])
    assert np.max(np.abs(value[:, 0] - fitted.predict(X[cut:]))) <= 1e-5
    assert np.max(np.abs(win_prob[:, 0] - fitted.win_probability(X[cut:]))) <= 1e-5
    assert win_prob.min() >= 0 and win_prob.max() <= 1
    again = TradeQualityModel(n_estimators=40, random_state=8).fit(X[:cut], y[:cut])
    np.testing.assert_array_equal(again.predict(X[cut:]), fitted.predict(X[cut:]))
    np.testing.assert_array_equal(again.predict_proba(X[cut:]), fitted.predict_proba(X[cut:]))
