"""Trade feedback: validated ingestion into trade_results and the frame trade_quality trains on."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.config import get_settings
from pipelines.ingest.feedback import ingest_trades, trades_frame, validate_trades

SYMBOL = "MONFEED"


def trades(n: int = 4) -> pd.DataFrame:
    entry = pd.date_range("2024-02-01 10:00", periods=n, freq="30min", tz="UTC")
    side = np.where(np.arange(n) % 2 == 0, 1, -1)
    entry_price = 100.0 + np.arange(n)
    exit_price = entry_price + np.array([1.5, -0.5, -1.0, 2.0])[:n]
    pnl = side * (exit_price - entry_price)
    return pd.DataFrame({
        "symbol": SYMBOL, "trade_id": [f"t{i}" for i in range(n)], "entry_ts": entry,
        "exit_ts": entry + pd.Timedelta(minutes=12), "side": np.where(side > 0, "long", "short"),
        "entry_price": entry_price, "exit_price": exit_price, "pnl": pnl, "r_multiple": pnl / 0.75,
        "signal_source": ["ema_cross", "rsi_reversion"] * (n // 2),
        "exit_reason": ["target", "stop", "time", "target"][:n], "bars_held": [12, 3, 60, 7][:n]})


def test_ingest_round_trips_with_context_columns_and_is_idempotent(alphaops_home, tmp_path):
    settings = get_settings()
    frame = trades()
    assert ingest_trades(settings, frame) == 4
    path = tmp_path / "trades.csv"
    frame.to_csv(path, index=False)
    assert ingest_trades(settings, path) == 4  # the same ids again: replaced, not duplicated
    back = trades_frame(settings, SYMBOL)
    assert len(back) == 4 and list(back["trade_id"]) == ["t0", "t1", "t2", "t3"]
    assert list(back["side"]) == [1, -1, 1, -1]
    np.testing.assert_allclose(back["pnl"], frame["pnl"])
    np.testing.assert_allclose(back["r_multiple"], frame["r_multiple"])
    assert list(back["exit_reason"]) == ["target", "stop", "time", "target"]  # context expanded back
    assert list(back["bars_held"]) == [12, 3, 60, 7]
    assert (back["exit_ts"] - back["entry_ts"] == pd.Timedelta(minutes=12)).all()
    assert list(back["signal_source"]) == ["ema_cross", "rsi_reversion", "ema_cross", "rsi_reversion"]
    assert trades_frame(settings, "NOSUCHSYMBOL").empty


def test_missing_id_and_side_are_derived():
    frame = trades().drop(columns=["trade_id", "side"])
    out = validate_trades(frame)
    assert out["trade_id"].str.len().eq(16).all() and out["trade_id"].is_unique
    assert list(validate_trades(frame)["trade_id"]) == list(out["trade_id"])  # stable ids
    assert list(out["side"]) == [1, -1, 1, -1]  # from the PnL sign and the price move
    assert json.loads(out["context"].iloc[0]) == {"bars_held": 12, "exit_reason": "target"}


@pytest.mark.parametrize("edit, column", [
    (lambda f: f.drop(columns=["pnl"]), "'pnl'"),
    (lambda f: f.drop(columns=["signal_source", "r_multiple"]), "'r_multiple', 'signal_source'"),
    (lambda f: f.assign(exit_ts=f["entry_ts"] - pd.Timedelta(minutes=1)), "'exit_ts'"),
    (lambda f: f.assign(pnl=[1.0, np.nan, 2.0, 3.0]), "'pnl'"),
    (lambda f: f.assign(r_multiple=[1.0, 2.0, np.inf, 3.0]), "'r_multiple'"),
    (lambda f: f.assign(entry_price=["100", "x", "101", "102"]), "'entry_price'"),
    (lambda f: f.assign(exit_price=[0.0, 1.0, 1.0, 1.0]), "'exit_price'"),
    (lambda f: f.assign(entry_ts=["2024-02-01", "not a time", "2024-02-02", "2024-02-03"]), "'entry_ts'"),
    (lambda f: f.assign(side=["long", "sideways", "long", "short"]), "'side'"),
    (lambda f: f.assign(trade_id=["a", "a", "b", "c"]), "'trade_id'"),
    (lambda f: f.assign(signal_source=["ema_cross", "", "x", "y"]), "'signal_source'"),
])
def test_invalid_trades_are_rejected_naming_the_column(edit, column, alphaops_home):
    from warehouse import open_warehouse

    settings = get_settings()
    with pytest.raises(ValueError, match=column):
        ingest_trades(settings, edit(trades()).assign(symbol="MONBAD"))
    with open_warehouse(settings) as warehouse:
        assert warehouse.read_trades(tenant="default", symbol="MONBAD").empty  # all-or-nothing


def test_symbol_can_come_from_the_argument_and_a_missing_file_is_clear(tmp_path):
    out = validate_trades(trades().drop(columns=["symbol"]), symbol="OTHER")
    assert set(out["symbol"]) == {"OTHER"}
    with pytest.raises(FileNotFoundError, match="trades file not found"):
        ingest_trades(get_settings(), tmp_path / "nope.csv")
