"""The monitoring loop on the synthetic market: a champion trained on the first bars serves later
bars through ``serving.Predictor``; its log is sunk, outcomes are filled, and the monitor must see
a regime shift as drift (and ask for retraining) but leave data from the same regime alone."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from pipelines.config import get_settings

SYMBOL = "MONDRIFT"
NAME = f"default.direction_h1.{SYMBOL}"
AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
N_BARS, TRAIN_BARS, SHIFT_AT = 9000, 5000, 7000
SAME = slice(5000, 6500)      # after the training window, same regime
SHIFTED = slice(7500, 9000)   # after the regime shift: volatility x3, the imbalance edge gone


def register_champion(settings, symbol: str, source) -> tuple[pd.DataFrame, str]:
    """Ingest the market, train direction_h1 on the first TRAIN_BARS bars, validate, deploy."""
    from pipelines.steps.build import build_features, build_labels
    from pipelines.steps.deploy import deploy_models
    from pipelines.ingest.ingestion import ingest
    from pipelines.steps.rank import rank_models
    from pipelines.steps.train import train_spec
    from pipelines.steps.validate import validate_version

    bars = source.read()
    ingest(source, symbol=symbol, timeframe="1m", settings=settings, as_of=AS_OF)
    train_end = bars.index[TRAIN_BARS - 1]
    ref = build_features(settings, symbol=symbol, timeframe="1m", as_of=train_end)
    build_labels(settings, symbol=symbol, timeframe="1m", spec_names=["direction_h1"], as_of=train_end)
    trained = train_spec(settings, spec_name="direction_h1", symbol=symbol, timeframe="1m",
                         feature_set_version=ref["feature_set_version"], as_of=train_end, trials=2,
                         holdout_fraction=0.25, trigger="test")
    validated = validate_version(settings, model_name=trained["model_name"], version=trained["version"],
                                 as_of=train_end, holdout_fraction=0.25)
    assert validated["status"] == "validated", validated["failed_gates"]
    deploy_models(settings, ranking=rank_models(settings, validated=[validated]), as_of=train_end)
    return bars, trained["model_name"]


def serve(settings, name: str, bars: pd.DataFrame, segments: list[slice], bundle_dir: Path) -> list[dict]:
    """Score each bar of the segments one row at a time through Predictor + PredictionLog, like a
    trading loop; each record is stamped with the bar it scored."""
    import features
    import serving
    from registry import CHAMPION, Registry

    bundle = Registry.from_settings(settings).load_bundle(name, CHAMPION, bundle_dir)
    log = serving.PredictionLog(maxsize=100_000)
    predictor = serving.Predictor.load(bundle, log=log)
    matrix = features.compute(bars)[list(predictor.features)]
    records = []
    for segment in segments:
        for row in matrix.iloc[segment].to_numpy(np.float32):
            predictor.predict(row)
        drained = log.drain()
        for record, ts in zip(drained, matrix.index[segment]):
            record["bar_ts"] = ts
        records += drained
    return records


@pytest.fixture(scope="module")
def market(alphaops_home, tmp_path_factory) -> dict:
    from pipelines.live.prediction_sink import write_predictions
    from pipelines.ingest.samples import SyntheticSource

    # Every usable feature (no selection), so the drift checks below cover the whole feature set.
    settings = get_settings().model_copy(update={"feature_selection": False})
    source = SyntheticSource(seed=7, n_bars=N_BARS, imbalance_coef=0.35, shift_at=SHIFT_AT, shift_vol_mult=3.0)
    bars, name = register_champion(settings, SYMBOL, source)
    records = serve(settings, name, bars, [SAME, SHIFTED], tmp_path_factory.mktemp("mon") / "bundle")
    written = write_predictions(settings, records)
    return {"settings": settings, "bars": bars, "records": records, "written": written}


@pytest.fixture(scope="module")
def filled(market) -> int:
    from pipelines.live.outcomes import fill_outcomes

    return fill_outcomes(market["settings"], market["bars"].index[-1])


@pytest.fixture(scope="module")
def unchanged(filled, market) -> dict:
    from pipelines.live.monitor import monitor_models

    results = monitor_models(market["settings"], as_of=market["bars"].index[SAME.stop - 1], window=1500)
    return next(r for r in results if r["model"] == NAME)


@pytest.fixture(scope="module")
def shifted(filled, market) -> dict:
    from pipelines.live.monitor import monitor_models

    results = monitor_models(market["settings"], as_of=market["bars"].index[SHIFTED.stop - 1], window=1500)
    return next(r for r in results if r["model"] == NAME)


def test_fill_outcomes_writes_the_direction_label_once(market, filled):
    from pipelines.live.outcomes import join_predictions_outcomes
    from pipelines.live.outcomes import fill_outcomes

    assert market["written"] == 3000
    assert filled == 2999  # the last bar's next close is not known yet
    assert fill_outcomes(market["settings"], market["bars"].index[-1]) == 0  # nothing left to fill
    joined = join_predictions_outcomes(market["settings"], f"direction_h1.{SYMBOL}")
    close = market["bars"]["close"]
    expected = (close.shift(-1) > close).astype(float).reindex(pd.DatetimeIndex(joined["ts"]))
    np.testing.assert_array_equal(joined["outcome"].to_numpy(), expected.to_numpy())
    assert set(joined["outcome"]) == {0.0, 1.0} and joined["correct"].dtype == bool


def test_unchanged_regime_is_not_drift_and_does_not_retrain(unchanged):
    r = unchanged
    assert r["status"] == "ok" and r["n_predictions"] == 1500 and r["n_features"] > 100
    assert r["drifted"] is False and r["drift_share"] < 0.3, r["drifted_features"]
    assert r["prediction_drift"] is False
    assert r["retrain"] is False and r["reasons"] == []
    assert r["n_outcomes"] == 1500 and r["live_accuracy"] > 0.55  # the edge still works
    assert abs(r["live_accuracy"] - r["backtest_accuracy"]) < 0.05
    assert 0 < r["latency_p50_us"] <= r["latency_p95_us"] <= r["latency_p99_us"]
    assert r["error_rate"] == 0.0 and r["fallback_rate"] == 0.0
    json.dumps(r)  # JSON-safe


def test_regime_shift_is_drift_and_requests_retraining(shifted, unchanged):
    from pipelines.live.retrain import request_retrain, retrain_event_extra

    r = shifted
    assert r["drifted"] is True and r["drift_share"] > 0.3 > unchanged["drift_share"]
    assert r["n_drifted"] == round(r["drift_share"] * r["n_features"])
    assert r["retrain"] is True and r["triggers"][0] == "drift" and r["reasons"][0].startswith("drift: ")
    assert r["prediction_drift"] is True
    assert r["live_accuracy"] < unchanged["live_accuracy"]  # the imbalance edge disappeared
    requests = request_retrain([unchanged, r])
    assert [q["model"] for q in requests] == [NAME]
    assert requests[0]["symbol"] == SYMBOL and requests[0]["spec"] == "direction_h1" and requests[0]["reasons"]
    extra = retrain_event_extra(requests)
    assert extra["symbols"] == [SYMBOL] and extra["families"] == ["direction_h1"] and NAME in extra["reason"]
    json.dumps(extra)


def test_reports_are_mlflow_artifacts_and_history_is_written(unchanged, shifted, market):
    from registry import Registry
    from warehouse import open_warehouse

    for r in (unchanged, shifted):
        assert r["report_uri"].endswith("/evidently/data_drift.html")
        path = Path(urlparse(r["report_uri"]).path)
        html = path.read_text(errors="ignore")
        assert "drift" in html.lower() and "ret_1" in html and "model_output" in html
    client = Registry.from_settings(market["settings"]).client
    experiment = client.get_experiment_by_name("default/monitoring")
    runs = client.search_runs([experiment.experiment_id], f"tags.model = '{NAME}'")
    assert len(runs) >= 2 and {"drift_share", "live_accuracy"} <= set(runs[0].data.metrics)
    with open_warehouse(market["settings"]) as warehouse:
        history = warehouse.read_monitor_history(tenant="default", model=NAME)
    checks = history[history["report_uri"].isin([unchanged["report_uri"], shifted["report_uri"]])]
    assert sorted(checks["drifted"].tolist()) == [0, 1] and sorted(checks["retrain"].tolist()) == [0, 1]
    drifted = checks[checks["drifted"] == 1].iloc[0]
    assert drifted["drift_share"] == pytest.approx(shifted["drift_share"]) and drifted["reasons"][0].startswith("drift")


def test_live_accuracy_below_baseline_and_backtest_triggers_retraining(market):
    """A constructed log with known outcomes (too few rows for a drift check): 40% right."""
    from pipelines.live.monitor import monitor_models
    from warehouse import open_warehouse

    settings = market["settings"]
    n = 150
    ts = pd.date_range("2025-06-01", periods=n, freq="1min", tz="UTC")
    up = np.arange(n) % 2 == 0                   # the model says up on even rows
    right = np.arange(n) % 5 < 2                 # 40% of the calls are right
    p_up = np.where(up, 0.7, 0.3)
    frame = pd.DataFrame({
        "tenant": "default", "model": NAME, "model_version": "1", "symbol": SYMBOL, "ts": ts, "routed_to": "",
        "features": [[0.0]] * n, "output": p_up, "confidence": np.maximum(p_up, 1 - p_up), "latency_us": 20.0,
        "error": "", "fallback": False, "outcome": np.where(right == up, 1.0, 0.0), "version": np.uint64(1)})
    with open_warehouse(settings) as warehouse:
        warehouse.write_predictions(frame)
    results = monitor_models(settings, as_of=ts[-1], window=pd.Timedelta(hours=3))
    r = next(x for x in results if x["model"] == NAME)
    assert r["status"] == "insufficient_data" and r["n_features"] == 0  # no drift check on 150 rows
    assert r["n_outcomes"] == n and r["live_accuracy"] == pytest.approx(0.4)
    assert r["triggers"] == ["accuracy_vs_baseline", "accuracy_vs_backtest"] and r["retrain"] is True
    assert f"{r['baseline_accuracy']:.3f}" in r["reasons"][0]
    assert r["latency_p99_us"] == pytest.approx(20.0) and r["report_uri"] == ""


def test_cli_monitor_prints_the_same_results_as_json(market, alphaops_home):
    """`alphaops monitor` calls the same monitor_models (here on the constructed log above)."""
    import os
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("alphaops")
    env = {**os.environ, "ALPHAOPS_HOME": str(alphaops_home)}
    args = [str(cli), "monitor", "--json", "--as-of", "2025-06-01T02:29:00Z", "--window-hours", "3"]
    result = subprocess.run([*args, "--retrain", f"direction_h1.{SYMBOL}"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    r = next(x for x in json.loads(result.stdout) if x["model"] == NAME)
    assert r["triggers"] == ["accuracy_vs_baseline", "accuracy_vs_backtest", "manual"]
    assert r["live_accuracy"] == pytest.approx(0.4)
    bad = subprocess.run([*args, "--retrain", "direction_h1.NOSUCH"], capture_output=True, text=True, timeout=300,
                         env=env)
    assert bad.returncode == 2 and "error: cannot request retraining of default.direction_h1.NOSUCH" in bad.stderr


def test_manual_request_for_an_unknown_model_is_a_clear_error(market):
    from pipelines.live.monitor import monitor_models

    with pytest.raises(ValueError, match="no champion of that name"):
        monitor_models(market["settings"], as_of=AS_OF, manual=["direction_h1.NOSUCH"])


@pytest.mark.parametrize("preset", [False, True])
def test_drift_report_flags_exactly_the_shifted_columns(preset):
    from pipelines.live.drift import OUTPUT_COLUMN, drift_report
    from pipelines.live.thresholds import MonitorConfig

    rng = np.random.default_rng(0)
    cols = ["a", "b", "c", "d", "e"]
    reference = pd.DataFrame(rng.normal(size=(2000, 5)), columns=cols).assign(**{OUTPUT_COLUMN: rng.uniform(size=2000)})
    current = pd.DataFrame(rng.normal(size=(500, 5)), columns=cols).assign(**{OUTPUT_COLUMN: rng.uniform(size=500)})
    current["a"] *= 3.0
    current["b"] += 1.0
    drift = drift_report(reference, current, cols, MonitorConfig(drift_preset=preset))
    assert drift.drifted_features == ["a", "b"] and drift.drift_share == pytest.approx(0.4)
    assert drift.n_features == 5 and drift.prediction_drift is False and drift.prediction_drift_score < 0.2


def test_decide_retrain_rules():
    from pipelines.live.thresholds import MonitorConfig
    from pipelines.live.retrain import decide_retrain

    config = MonitorConfig()
    base = dict(drift_share=0.1, n_features=100, n_outcomes=500, live_accuracy=0.62, backtest_accuracy=0.63,
                baseline_accuracy=0.5, model_age_hours=10.0, scheduled=False, manual=False, config=config)
    assert decide_retrain(**base) == ([], [])
    assert decide_retrain(**{**base, "drift_share": 0.31})[0] == ["drift"]
    assert decide_retrain(**{**base, "drift_share": 0.30})[0] == []          # strictly above the threshold
    assert decide_retrain(**{**base, "live_accuracy": 0.57})[0] == ["accuracy_vs_backtest"]
    assert decide_retrain(**{**base, "live_accuracy": 0.44})[0] == ["accuracy_vs_baseline", "accuracy_vs_backtest"]
    assert decide_retrain(**{**base, "live_accuracy": 0.44, "n_outcomes": 99})[0] == []  # too few outcomes
    assert decide_retrain(**{**base, "live_accuracy": None})[0] == []
    assert decide_retrain(**{**base, "model_age_hours": 200.0})[0] == []     # age only counts on schedule
    assert decide_retrain(**{**base, "model_age_hours": 200.0, "scheduled": True})[0] == ["schedule"]
    assert decide_retrain(**{**base, "manual": True}) == (["manual"], ["manual: retraining requested"])


def test_live_metrics_and_the_predicted_class():
    from pipelines.live.metrics import live_metrics, predicted_up

    frame = pd.DataFrame({
        "output": [0.8, 0.3, 0.55, 0.9, np.nan], "confidence": [0.8, 0.7, 0.45, 0.9, np.nan],
        "outcome": [1.0, 1.0, 0.0, np.nan, np.nan], "latency_us": [10.0, 20.0, 30.0, 40.0, 50.0],
        "error": ["", "", "", "", "boom"], "fallback": [False, False, False, True, False]})
    # row 2: P(up)=0.55 but the predicted class has confidence 0.45 -> a decision threshold said down
    assert predicted_up(frame[:3]).tolist() == [True, False, False]
    m = live_metrics(frame)
    assert m["n_predictions"] == 5 and m["n_outcomes"] == 3
    assert m["live_accuracy"] == pytest.approx(2 / 3) and m["hit_rate"] == m["live_accuracy"]
    assert m["error_rate"] == pytest.approx(0.2) and m["fallback_rate"] == pytest.approx(0.2)
    assert m["latency_p50_us"] == pytest.approx(30.0)
    assert live_metrics(frame, binary=False)["live_accuracy"] is None
    assert m["live_mae"] is None  # not a regression model
    # A regression model: errors of output against outcome on the three answered rows with an outcome.
    r = live_metrics(frame, binary=False, regression=True)
    errors = np.array([0.8 - 1.0, 0.3 - 1.0, 0.55 - 0.0])
    assert r["live_mae"] == pytest.approx(np.abs(errors).mean()) and r["live_rmse"] == pytest.approx(np.sqrt((errors ** 2).mean()))


def test_cooldown_holds_back_automatic_requests_only():
    from pipelines.live.thresholds import MonitorConfig
    from pipelines.live.retrain import apply_cooldown

    config = MonitorConfig(retrain_cooldown_hours=12)
    last = pd.Timestamp("2026-01-01 00:00", tz="UTC")
    drifted = {"model": NAME, "checked_at": "2026-01-01T05:00:00+00:00", "retrain": True,
               "triggers": ["drift"], "reasons": ["drift: 38% of 144 features drifted (> 30%)"]}
    held = apply_cooldown(drifted, last, config)
    assert held["retrain"] is False and held["triggers"] == ["drift"]
    assert held["reasons"][0] == drifted["reasons"][0] and held["reasons"][1].startswith("cool-down: ")
    assert "2026-01-01 12:00 UTC" in held["reasons"][1] and held["cooldown_until"] == "2026-01-01T12:00:00+00:00"
    assert drifted["retrain"] is True  # the input is not changed
    later = {**drifted, "checked_at": "2026-01-01T12:00:00+00:00"}
    assert apply_cooldown(later, last, config) is later  # the cool-down is over
    assert apply_cooldown(drifted, None, config) is drifted  # nothing requested before
    manual = {**drifted, "triggers": ["drift", "manual"]}
    assert apply_cooldown(manual, last, config)["retrain"] is True
    quiet = {**drifted, "retrain": False, "triggers": [], "reasons": []}
    assert apply_cooldown(quiet, last, config) is quiet


def test_a_persisting_drift_is_requested_again_only_after_the_cooldown(shifted, market):
    from pipelines.live.thresholds import MonitorConfig
    from pipelines.live.monitor import monitor_models
    from pipelines.live.retrain import request_retrain

    checked = pd.Timestamp(shifted["checked_at"])
    assert shifted["retrain"] is True
    config = MonitorConfig(retrain_cooldown_hours=12)
    soon = monitor_models(market["settings"], as_of=checked + pd.Timedelta(hours=1), window=1500, config=config)
    r = next(x for x in soon if x["model"] == NAME)
    assert r["drifted"] is True and r["triggers"][0] == "drift"  # the drift is still seen and recorded
    assert r["retrain"] is False and r["reasons"][-1].startswith("cool-down: ") and request_retrain(soon) == []
    from registry import Registry

    client = Registry.from_settings(market["settings"]).client
    experiment = client.get_experiment_by_name("default/monitoring")
    run = client.search_runs([experiment.experiment_id], f"tags.model = '{NAME}' and tags.as_of = '{r['checked_at']}'")
    assert [x.data.tags["retrain"] for x in run] == ["false"]  # the MLflow run says what the result says
    manual = monitor_models(market["settings"], as_of=checked + pd.Timedelta(hours=2), window=1500, config=config,
                            manual=[NAME])
    assert next(x for x in manual if x["model"] == NAME)["retrain"] is True
    after = monitor_models(market["settings"], as_of=checked + pd.Timedelta(hours=15), window=1500, config=config)
    r = next(x for x in after if x["model"] == NAME)
    assert r["retrain"] is True and not any(reason.startswith("cool-down") for reason in r["reasons"])


def test_a_quiet_check_writes_an_html_report_once_per_interval(unchanged, market):
    """The check of the same-regime window wrote a report; a quiet check within the interval only
    logs its metrics; after the interval the next quiet check writes one again."""
    from pipelines.live.thresholds import MonitorConfig
    from pipelines.live.monitor import monitor_models

    assert unchanged["report_uri"].endswith("/evidently/data_drift.html") and unchanged["drifted"] is False
    checked = pd.Timestamp(unchanged["checked_at"])
    config = MonitorConfig(report_interval_hours=12)

    def check(hours: float) -> dict:
        # The latest 1,500 logged rows up to as_of: the same-regime rows until the shifted ones
        # (bar SHIFTED.start, ~16.7 h after `checked`) are logged.
        results = monitor_models(market["settings"], as_of=checked + pd.Timedelta(hours=hours), window=1500,
                                 config=config)
        return next(x for x in results if x["model"] == NAME)

    quiet = check(2)
    assert quiet["drifted"] is False and quiet["retrain"] is False and quiet["report_uri"] == ""
    assert quiet["status"] == "ok" and quiet["n_features"] > 100 and quiet["n_predictions"] == 1500
    later = check(13)
    assert later["drifted"] is False and later["report_uri"].endswith("/evidently/data_drift.html")
