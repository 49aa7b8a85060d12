"""The pattern-library step: a served pattern model's warehouse library gets the labelled history and
the windows of closed trades with their realized outcomes, once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import get_settings
from warehouse import open_warehouse

WINDOW, N_FEATURES, SYMBOL = 4, 5, "PATSTEP"
NAME = f"default.pattern_similarity_h1.{SYMBOL}"


@pytest.fixture(scope="module")
def served(tmp_path_factory, alphaops_home):
    """A pattern_similarity champion of SYMBOL (1m bars), its bars, features and labels in the warehouse."""
    import mlflow

    from models.bundle import spec_schema, write_bundle
    from models.catalog import spec_by_name
    from models.families.pattern_similarity import PatternSimilarityModel
    from pipelines.tracking import use_experiment
    from registry import Registry

    rng = np.random.default_rng(11)
    X = rng.standard_normal((200, WINDOW, N_FEATURES)).astype(np.float32)
    model = PatternSimilarityModel(embedding_dim=8, hidden_size=8, k=10, epochs=1, library_size=100).fit(
        X, rng.integers(0, 3, 200))
    spec = spec_by_name("pattern_similarity_h1")
    schema = spec_schema(spec, feature_set_version="fs-step", features=[f"f{i}" for i in range(N_FEATURES)],
                         model={"name": NAME, "version": "1"})
    schema["window"] = WINDOW
    schema["input"]["shape"] = ["batch", WINDOW, N_FEATURES]
    schema.update(model.bundle_schema())
    bundle = write_bundle(tmp_path_factory.mktemp("patstep") / "bundle", model.to_onnx(), schema)

    settings = get_settings()
    registry = Registry.from_settings(settings)
    with mlflow.start_run(experiment_id=use_experiment(settings, "default/pattern-step-test")) as run:
        mlflow.log_artifacts(str(bundle), "bundle")
    version = registry.register(NAME, run.info.run_id, tags={"family": "pattern_similarity", "spec": spec.name,
                                                             "symbol": SYMBOL, "timeframe": "1m"})
    registry.tag(NAME, version, validation_status="validated")
    registry.set_challenger(NAME, version, reason="test")
    registry.promote(NAME, reason="test")

    idx = pd.date_range("2024-05-01", periods=120, freq="1min", tz="UTC", name="ts")
    feats = pd.DataFrame(rng.standard_normal((120, N_FEATURES)), index=idx, columns=[f"f{i}" for i in range(5)])
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, 120)))
    bars = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": 1.0}, index=idx)
    label = pd.DataFrame({spec.label: np.r_[rng.integers(0, 3, 119).astype(float), np.nan]}, index=idx)
    key = {"tenant": settings.scope, "symbol": SYMBOL, "timeframe": "1m"}
    with open_warehouse(settings) as w:
        w.write_bars(bars, source="test", ingest_id="patstep", **key)
        w.write_features(feats, feature_set_version="fs-step", **key)
        w.write_labels(label, **key)
    return {"settings": settings, "idx": idx, "library": f"{NAME}@v{version}", "version": version}


def trade(entry: pd.Timestamp, exit_: pd.Timestamp, entry_price: float, exit_price: float) -> dict:
    return {"symbol": SYMBOL, "entry_ts": entry, "exit_ts": exit_, "side": "long", "entry_price": entry_price,
            "exit_price": exit_price, "pnl": exit_price - entry_price, "r_multiple": 1.0, "signal_source": "test"}


def test_history_and_closed_trades_enter_the_library_once(served):
    from pipelines.ingest.feedback import ingest_trades
    from pipelines.steps.patterns import fill_pattern_library

    settings, idx = served["settings"], served["idx"]
    ingest_trades(settings, pd.DataFrame([
        trade(idx[30] + pd.Timedelta(seconds=20), idx[35], 100.0, 101.0),  # entered inside bar 30: up
        trade(idx[80], idx[90], 100.0, 99.0),                               # down
        trade(idx[100], idx[110], 100.0, 100.001),                          # within the band: neutral
        trade(idx[2], idx[5], 100.0, 101.0),                                # bar 2 has no full window yet
        trade(idx[95], idx[119], 100.0, 102.0),                             # still open at as_of
    ]))
    as_of = idx[115]
    first = fill_pattern_library(settings, as_of=as_of)
    assert [(r["model"], r["library"]) for r in first] == [(NAME, served["library"])]
    # windows of 4 bars end at bars 3..115; the one ending at 115 has no outcome by as_of (h = 1)
    assert first[0]["history_added"] == 115 - 3
    assert first[0]["closed_trades"] == 4 and first[0]["trade_windows_added"] == 3
    again = fill_pattern_library(settings, as_of=as_of)
    assert again[0]["history_added"] == 0 and again[0]["trade_windows_added"] == 0
    assert again[0]["stored"] == first[0]["stored"] == 112 + 3

    with open_warehouse(settings) as w:
        stored = w.search_patterns(tenant=settings.scope, library=served["library"], embedding=np.ones(8), limit=500)
    trades = stored[stored["source"] == "trade"].sort_values("ts")
    assert list(pd.DatetimeIndex(trades["ts"]).tz_convert("UTC")) == [
        idx[30] + pd.Timedelta(seconds=20), idx[80], idx[100]]
    assert trades["outcome"].tolist() == [2, 0, 1]  # bullish, bearish, neutral (±0.02% band)
    np.testing.assert_allclose(trades["forward_return"], np.log([1.01, 0.99, 1.00001]))

    later = fill_pattern_library(settings, as_of=idx[119])  # the open trade has closed; bars 115-118 have outcomes
    assert later[0]["trade_windows_added"] == 1 and later[0]["history_added"] == 4


def test_only_served_pattern_models_are_filled(served, tmp_path):
    import json

    import mlflow

    from pipelines.steps.patterns import served_pattern_versions
    from pipelines.tracking import use_experiment
    from registry import Registry

    settings = served["settings"]
    registry = Registry.from_settings(settings)
    other = tmp_path / "bundle"
    other.mkdir()
    (other / "model.onnx").write_bytes(b"x")
    (other / "schema.json").write_text(json.dumps({"model": {}}))
    for name, family in (("default.direction_h1.PATOTHER", "direction"),
                         ("default.pattern_similarity_h1.PATIDLE", "pattern_similarity")):
        with mlflow.start_run(experiment_id=use_experiment(settings, "default/pattern-step-test")) as run:
            mlflow.log_artifacts(str(other), "bundle")
        version = registry.register(name, run.info.run_id, tags={"family": family, "spec": "x", "symbol": "P",
                                                                 "timeframe": "1m"})
        if family == "direction":  # served, but not a pattern model; PATIDLE is a pattern model nobody serves
            registry.tag(name, version, validation_status="validated")
            registry.set_challenger(name, version, reason="test")
    assert [(name, version) for name, version, _ in served_pattern_versions(registry)] == [
        (NAME, served["version"])]
