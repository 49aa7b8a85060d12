"""The episodic path of the train, validate and deploy steps (the execution family's PPO policy)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from models.catalog import spec_by_name
from pipelines.config import get_settings
from pipelines.steps.episodes import episode_metrics, episode_split, paired_test
from pipelines.steps.validate import failed_gates, gate_results

AS_OF = pd.Timestamp("2040-01-01", tz="UTC")
SPEC = spec_by_name("execution_ppo")
PASSING = {"onnx_max_abs_diff": 1e-7, "latency_p50_us": 40.0}


def test_a_policy_that_does_not_beat_twap_in_a_paired_test_is_rejected():
    rng = np.random.default_rng(0)
    twap = rng.normal(5.0, 20.0, 200)
    better = {"policy": twap - 1.0 + rng.normal(0, 0.5, 200), "twap": twap, "vwap": twap + 0.1,
              "passive_twap": twap - 5.0}
    metrics = {**episode_metrics(SPEC, better), **PASSING}
    gates = gate_results(SPEC, metrics)
    assert all(gates.values()), gates
    assert metrics["null_p_value"] < 1e-10 and metrics["paired_mean_gain_bps"] == pytest.approx(1.0, abs=0.1)
    assert "reference_passive_twap_shortfall_bps" in metrics  # reported, not gated on (it is lower here)
    worse = {**better, "policy": twap + 0.3 + rng.normal(0, 0.5, 200)}
    rejected = gate_results(SPEC, {**episode_metrics(SPEC, worse), **PASSING})
    assert {"beats_naive_rule", "beats_baselines", "null_test"} <= set(failed_gates(rejected))
    # Lower on average but not consistently: the paired test decides.
    noisy = {**better, "policy": twap - 0.05 + rng.normal(0, 8.0, 200)}
    assert paired_test(noisy["policy"], twap) > 0.05
    assert not gate_results(SPEC, {**episode_metrics(SPEC, noisy), **PASSING})["gate_null_test"]


def test_the_split_purges_one_episode_and_refuses_too_few_bars():
    from models.cv import InsufficientDataError

    train_stop, holdout_start = episode_split(1000, 0.2, 30)
    assert (train_stop, holdout_start) == (770, 800)
    with pytest.raises(InsufficientDataError, match="too few"):
        episode_split(30, 0.2, 30)


def test_train_validate_serve_and_compare_on_the_synthetic_market(alphaops_home, monkeypatch):
    """A small PPO run end to end: registered, scored by its own ONNX bundle against TWAP and VWAP on
    the held-out episodes, gated, and answered by serving.Predictor with the two action outputs."""
    import serving
    from models.families.execution import ExecutionPolicy, holdout_episode_costs, onnx_policy
    from pipelines.evaluation.scoring import version_bundle
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.sources import FrameSource
    from pipelines.ingest.synthetic import SyntheticMarket
    from pipelines.steps import train as train_step
    from pipelines.steps import validate as validate_step
    from pipelines.steps.episodes import compare_episodes
    from registry import Registry

    small = dataclasses.replace(SPEC, build=lambda params: ExecutionPolicy(**{"total_timesteps": 2048, **params}))
    monkeypatch.setattr(train_step, "spec_by_name", lambda name, timeframe=None: small)
    monkeypatch.setattr(validate_step, "spec_by_name", lambda name, timeframe=None: small)
    settings = get_settings()
    bars, _ = SyntheticMarket(seed=5, n_bars=3000, imbalance_coef=0.2).generate()
    ingest(FrameSource(bars, name="generated"), symbol="EXECSYN", timeframe="1m", settings=settings, as_of=AS_OF)
    trained = train_step.train_spec(settings, spec_name=SPEC.name, symbol="EXECSYN", timeframe="1m",
                                    feature_set_version="fs-test", as_of=AS_OF, trials=3, holdout_fraction=0.3)
    result = validate_step.validate_version(settings, model_name=trained["model_name"], version=trained["version"],
                                            as_of=AS_OF, holdout_fraction=0.3)
    registry = Registry.from_settings(settings)
    run = registry.client.get_run(trained["run_id"])
    metrics = run.data.metrics
    assert run.data.params["trials"] == "1" and metrics["train_timesteps"] >= 2048
    assert metrics["onnx_max_abs_diff"] <= 1e-5
    assert result["status"] in ("validated", "rejected") and result["metric"] == "shortfall_bps"
    assert result["metrics"]["n_test"] == 30  # 900 held-out bars / 30-bar episodes

    # The step's figures are the bundle's policy and the rules replayed on the same held-out episodes.
    bundle = version_bundle(settings, registry, trained["model_name"], trained["version"])
    stored = bars.loc[:AS_OF]
    train_stop, holdout_start = episode_split(len(stored), 0.3, SPEC.horizon)
    costs = holdout_episode_costs(onnx_policy((bundle / "model.onnx").read_bytes()), stored, train_stop,
                                  holdout_start, json.loads(run.data.tags["best_params"]))
    assert metrics["holdout_shortfall_bps"] == pytest.approx(costs["policy"].mean(), rel=1e-6)
    assert metrics["holdout_naive_twap_shortfall_bps"] == pytest.approx(costs["twap"].mean(), rel=1e-6)
    assert metrics["holdout_baseline_vwap_shortfall_bps"] == pytest.approx(costs["vwap"].mean(), rel=1e-6)
    assert metrics["gate_null_test"] == float(paired_test(costs["policy"], costs["twap"]) < 0.05)

    predictor = serving.Predictor.load(bundle)
    assert predictor.task == "multi" and len(predictor.features) == 8
    answer = predictor.predict(np.array([1.0, 1.0, 0.0, 2.0, 0.1, 0.0, 0.5, 2.0], dtype=np.float32))
    values = dict(answer.values) if hasattr(answer, "values") else dict(answer)
    assert 0.0 <= values["child_fraction_of_remaining"] <= 1.0
    assert -1.0 <= values["limit_offset_half_spreads"] <= 1.0
    with pytest.raises(Exception, match="8"):
        predictor.predict(np.zeros(5, dtype=np.float32))

    same = compare_episodes(settings, registry, small, trained["model_name"], trained["version"],
                            trained["version"], AS_OF, (0.3, 0.3))
    assert same["better"] is False and same["new_score"] == same["champion_score"]

    # The monitor checks the champion's logged states against the states its policy saw on its
    # training episodes: the held-out states pass; the same states with spreads 20x wider drift.
    from models.families.execution import policy_states
    from pipelines.live.monitor import monitor_models
    from pipelines.live.prediction_sink import write_predictions

    registry.set_challenger(trained["model_name"], trained["version"], reason="test")
    registry.promote(trained["model_name"], reason="test")
    live = policy_states(onnx_policy((bundle / "model.onnx").read_bytes()), stored.iloc[holdout_start - 60:],
                         len(stored) - holdout_start + 60, json.loads(run.data.tags["best_params"]))[:600]
    wide = live.copy()
    wide[:, 2] += np.log(20.0)  # log_spread_bps

    def monitored(states: np.ndarray, end: pd.Timestamp) -> dict:
        log = serving.PredictionLog(maxsize=10_000)
        logged = serving.Predictor.load(bundle, log=log)
        for row in states:
            logged.predict(row)
        records = log.drain()
        for record, ts in zip(records, pd.date_range(end=end, periods=len(records), freq="1min")):
            record["bar_ts"] = ts
        write_predictions(settings, records, timeframe="1m")
        results = monitor_models(settings, as_of=end, window=len(records))
        return next(r for r in results if r["model"] == trained["model_name"])

    quiet = monitored(live, AS_OF - pd.Timedelta(days=1))
    assert quiet["status"] == "ok" and quiet["n_features"] == 8, quiet
    assert "log_spread_bps" not in quiet["drifted_features"]
    shifted = monitored(wide, AS_OF)
    assert shifted["status"] == "ok" and "log_spread_bps" in shifted["drifted_features"], shifted


def test_bars_without_a_book_are_skipped_with_a_reason(alphaops_home):
    from models.cv import InsufficientDataError
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.sources import FrameSource
    from pipelines.ingest.synthetic import autoregressive_market
    from pipelines.steps.train import train_spec

    settings = get_settings()
    ingest(FrameSource(autoregressive_market(7, 500), name="generated"), symbol="NOBOOK", timeframe="1m",
           settings=settings, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match="no book to replay"):
        train_spec(settings, spec_name=SPEC.name, symbol="NOBOOK", timeframe="1m", feature_set_version="fs-test",
                   as_of=AS_OF)
