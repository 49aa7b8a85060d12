"""The prediction sink: real ``serving.Predictor`` + ``PredictionLog`` records into ``ml_predictions``."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import get_settings

MODEL = "default.direction_h1.MONSINK"
FEATURES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small logistic-regression direction bundle with a rule-based fallback."""
    from sklearn.linear_model import LogisticRegression

    from models.bundle import classifier_schema, write_bundle
    from models.onnx_export import sklearn_to_onnx

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] + rng.normal(size=500) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    schema = classifier_schema(
        model={"name": MODEL, "version": "3", "family": "direction", "spec": "direction_h1", "tenant": "default",
               "symbol": "MONSINK", "timeframe": "1m", "run_id": "test"},
        feature_set_version="fs-test", features=FEATURES, class_names=["down", "up"],
        fallback={"kind": "rule", "rules": [], "default": {"label": 0, "confidence": 0.0}})
    return write_bundle(tmp_path_factory.mktemp("sink") / "bundle", sklearn_to_onnx(model, 3), schema)


def _calls(predictor, log) -> tuple[list[dict], dict]:
    """One row, a batch of three, an invalid call (raises) and a fallback answer."""
    import serving

    one = predictor.predict({"a": 0.5, "b": -0.2, "c": 0.1})
    batch = predictor.predict(np.array([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 2.0]], dtype=np.float32))
    with pytest.raises(serving.InputError):
        predictor.predict([1.0, 2.0])
    fb = predictor.predict({"a": math.nan, "b": 0.0, "c": 0.0}, fallback=True)
    return log.drain(), {"one": one, "batch": batch, "fallback": fb}


def test_records_become_one_row_per_answered_row(bundle):
    import serving
    from pipelines.live.prediction_sink import prediction_rows

    log = serving.PredictionLog()
    predictor = serving.Predictor.load(bundle, log=log)
    records, results = _calls(predictor, log)
    assert len(records) == 4
    rows = prediction_rows(records, tenant="default")
    assert len(rows) == 1 + 3 + 1 + 1
    assert set(rows["model"]) == {MODEL} and set(rows["model_version"]) == {"3"} and set(rows["symbol"]) == {"MONSINK"}
    # output is P(up), confidence the probability of the predicted class
    assert rows["output"].iloc[0] == pytest.approx(float(results["one"].probabilities[1]))
    assert rows["confidence"].iloc[0] == pytest.approx(float(results["one"].confidence))
    np.testing.assert_allclose(rows["output"].iloc[1:4], results["batch"].probabilities[:, 1], rtol=1e-6)
    assert rows["features"].iloc[0] == pytest.approx([0.5, -0.2, 0.1], abs=1e-6)
    assert rows["features"].iloc[2] == pytest.approx([-1.0, 1.0, 0.0])
    assert rows["ts"].iloc[1:4].is_unique  # batch rows must not replace each other
    error = rows.iloc[4]
    # the call raised: no output, the message, and the raw input as far as it is numeric
    assert "expected 3 features" in error["error"] and math.isnan(error["output"]) and error["features"] == [1.0, 2.0]
    fallback = rows.iloc[5]
    assert bool(fallback["fallback"]) and fallback["output"] == 0.0 and fallback["error"]
    assert rows["outcome"].isna().all() and (rows["latency_us"] > 0).all()
    assert (rows.iloc[:4]["error"] == "").all()


def test_write_predictions_round_trips_through_the_warehouse(bundle):
    import serving
    from pipelines.live.prediction_sink import write_predictions
    from warehouse import open_warehouse

    settings = get_settings()
    log = serving.PredictionLog()
    predictor = serving.Predictor.load(bundle, log=log)
    records, _ = _calls(predictor, log)
    bars = pd.date_range("2023-03-01 10:00", periods=6, freq="1min", tz="UTC")
    records[0]["bar_ts"] = bars[0]
    records[1]["bar_ts"] = list(bars[1:4])
    records[2]["bar_ts"] = bars[4]
    records[3]["bar_ts"] = bars[5]
    assert write_predictions(settings, records) == 6
    assert write_predictions(settings, records) == 6  # same keys: replaced, not duplicated
    with open_warehouse(settings) as warehouse:
        back = warehouse.read_predictions(tenant="default", model=MODEL, start=bars[0], end=bars[-1])
    assert list(back["ts"]) == list(bars)
    assert back["outcome"].isna().all()
    assert list(back["fallback"]) == [0, 0, 0, 0, 0, 1]
    assert back["error"].iloc[4] != "" and list(back["features"].iloc[4]) == [1.0, 2.0]
    np.testing.assert_allclose(back["features"].iloc[3], [0.0, 0.0, 2.0])


def test_sink_runs_as_the_logs_background_consumer(bundle):
    import serving
    from pipelines.live.prediction_sink import PredictionSink
    from warehouse import open_warehouse

    settings = get_settings()
    log = serving.PredictionLog()
    predictor = serving.Predictor.load(bundle, log=log)
    sink = PredictionSink(settings, timeframe="1m")
    started = pd.Timestamp(time.time(), unit="s", tz="UTC")
    log.start(sink, interval=0.05)
    rng = np.random.default_rng(1)
    for row in rng.normal(size=(20, 3)).astype(np.float32):
        predictor.predict(row)
    log.stop()
    assert sink.rows_written == 20 and log.stats["consumer_errors"] == 0 and len(log) == 0
    with open_warehouse(settings) as warehouse:
        back = warehouse.read_predictions(tenant="default", model=MODEL, start=started - pd.Timedelta(minutes=2))
    assert len(back) == 20
    # stamped one bar before the call: inside the last bar closed at call time
    lag = started - back["ts"]
    assert ((lag > pd.Timedelta(seconds=50)) & (lag < pd.Timedelta(seconds=70))).all()
