"""The train, validate and deploy steps of episodic specs (``ModelSpec.episode_costs`` set).

Such a spec (the execution family's PPO policy) is not fitted on (features, label) rows but on
episodes replayed from the symbol's bars. It goes through the same train → validate → rank →
deploy → canary path as every spec: an MLflow run with the same tags and train key, a sealed
bundle (``model.onnx`` + ``schema.json``), a registered version tagged ``validated`` or
``rejected`` with the same gate names, and a model card. What differs:

- **Split:** the last ``holdout_fraction`` of the bars up to ``as_of`` are held out; training
  episodes lie wholly in the bars before ``holdout_start − horizon`` (a purge of one episode),
  and the held-out episodes are consecutive, non-overlapping windows from ``holdout_start`` on.
- **No search:** one fit with the spec's parameters (a PPO run per Optuna trial is too costly).
- **Scoring:** the bundle's ONNX policy is replayed on the held-out episodes beside the rules of
  the field (``spec.episode_costs``). The primary metric is the mean implementation shortfall
  (bps, lower is better); the rules' means are its baselines and naive rules, and the null test
  is a one-sided paired Wilcoxon test of the per-episode shortfalls against ``spec.rule_to_beat``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.bundle import spec_schema, write_bundle
from models.cv import InsufficientDataError
from models.outputs import build_estimator
from models.specs import ModelSpec
from pipelines.config import Settings
from pipelines.evaluation.replay import episode_bars, episode_split
from pipelines.evaluation.scoring import onnx_outputs, version_bundle
from pipelines.tracking import code_version, use_experiment
from registry import Registry, model_name
from warehouse import open_warehouse

log = logging.getLogger(__name__)


def bars_fingerprint(bars: pd.DataFrame) -> str:
    """SHA-256 (16 hex digits) of the bars' index and values: a changed warehouse slice changes it."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(bars, index=True).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def episode_params(settings: Settings, spec: ModelSpec) -> dict[str, Any]:
    """The spec's parameters: the seed and the taker fee from the settings (the platform's commission)."""
    return {"random_state": settings.seed, "taker_fee_bps": settings.commission_bps}


def train_episodes(settings: Settings, spec: ModelSpec, *, symbol: str, timeframe: str, feature_set_version: str,
                   as_of: pd.Timestamp, trials: int, holdout_fraction: float, trigger: str) -> dict[str, Any]:
    """Fit the spec's policy on the training episodes, export, parity-check and register it."""
    import mlflow

    from models.families.execution import holdout_states
    from models.families.execution_env import STATE_NAMES
    from pipelines.steps.train import (SUPERSEDED_TAG, TRAIN_KEY_TAG, AttemptSupersededError,
                                       registered_by_earlier_attempt, train_key)

    bars = episode_bars(settings, spec, symbol=symbol, timeframe=timeframe, as_of=as_of)
    train_stop, holdout_start = episode_split(len(bars), holdout_fraction, spec.horizon)
    fingerprint = bars_fingerprint(bars)
    params = episode_params(settings, spec)
    name = model_name(settings.scope, spec.name, symbol)
    experiment_id = use_experiment(settings, f"{settings.scope}/{spec.family}")
    registry = Registry.from_settings(settings)
    key = train_key(name, timeframe=timeframe, feature_set_version=feature_set_version, as_of=as_of, trials=1,
                    holdout_fraction=holdout_fraction, seed=settings.seed, data_fingerprint=fingerprint)
    result = {"model_name": name, "spec": spec.name, "family": spec.family, "symbol": symbol,
              "timeframe": timeframe, "feature_set_version": feature_set_version}
    earlier = registered_by_earlier_attempt(registry, experiment_id, name, key, result)
    if earlier is not None:
        return earlier

    index = bars.index
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{spec.name}.{symbol}") as parent:
        run_id = parent.info.run_id
        mlflow.set_tags({
            TRAIN_KEY_TAG: key, "tenant": settings.tenant, "family": spec.family, "spec": spec.name,
            "symbol": symbol, "timeframe": timeframe, "feature_set_version": feature_set_version,
            "label": spec.label, "data_fingerprint": fingerprint, "code_version": code_version(),
            "as_of": as_of.isoformat(), "trigger": trigger, "train_start": index[0].isoformat(),
            "train_end": index[train_stop - 1].isoformat(), "holdout_start": index[holdout_start].isoformat(),
            "holdout_end": index[-1].isoformat(), "best_params": json.dumps(params, sort_keys=True),
        })
        model = build_estimator(spec, params, list(STATE_NAMES))
        mlflow.log_params({"trials": 1, "holdout_fraction": holdout_fraction, "purge_bars": spec.horizon,
                           "n_train": train_stop, "n_holdout": len(bars) - holdout_start,
                           "n_features": len(STATE_NAMES), **{f"best_{k}": v for k, v in model.get_params().items()}})
        model.fit(bars.iloc[:train_stop])
        mlflow.log_metrics({"train_episodes": model.n_training_episodes_, "train_timesteps": model.timesteps_})
        onnx_model = model.to_onnx()
        states = holdout_states(bars, holdout_start, params)
        exported = onnx_outputs(onnx_model.SerializeToString(), states)
        native = model.predict(states)
        parity = float(max(np.max(np.abs(exported[out].reshape(-1) - native[:, k]))
                           for k, out in enumerate(o["name"] for o in spec.schema_extras["outputs"])))
        mlflow.log_metrics({"onnx_max_abs_diff": parity, "onnx_parity_tolerance": spec.gates.max_onnx_abs_diff})
        with tempfile.TemporaryDirectory() as tmp:
            schema = spec_schema(spec, feature_set_version=feature_set_version, features=list(STATE_NAMES), model={
                "name": name, "family": spec.family, "spec": spec.name, "tenant": settings.tenant,
                "user": settings.user, "symbol": symbol, "timeframe": timeframe, "run_id": run_id, "version": ""})
            mlflow.log_artifacts(str(write_bundle(Path(tmp) / "bundle", onnx_model, schema)), "bundle")
        if SUPERSEDED_TAG in registry.client.get_run(run_id).data.tags:
            raise AttemptSupersededError(f"{name}: a later attempt took over train key {key}; not registering")
        version = registry.register(name, run_id, tags={
            "family": spec.family, "spec": spec.name, "symbol": symbol, "timeframe": timeframe,
            "feature_set_version": feature_set_version, "data_fingerprint": fingerprint,
            "train_end": index[train_stop - 1].isoformat(), "holdout_start": index[holdout_start].isoformat(),
            TRAIN_KEY_TAG: key,
        })
        mlflow.set_tag("registered_version", version)
    log.info("trained %s v%s: %d training episodes, %d timesteps, onnx parity %.2e", name, version,
             model.n_training_episodes_, model.timesteps_, parity)
    return {**result, "version": version, "run_id": run_id}


# Rules whose shortfall is reported on the card but is not a gate (nor a rival in ranking).
REFERENCE_RULES = ("passive_twap",)


def paired_test(policy: np.ndarray, rule: np.ndarray) -> float:
    """One-sided paired Wilcoxon signed-rank p-value of "the policy's shortfall is lower than the rule's"."""
    from scipy.stats import wilcoxon

    if np.allclose(policy, rule):
        return 1.0
    return float(wilcoxon(policy, rule, alternative="less").pvalue)


def episode_metrics(spec: ModelSpec, costs: dict[str, np.ndarray]) -> dict[str, float]:
    """The primary metric, the rules as baselines and naive rules, and the paired test against the rule to beat."""
    policy, rule = costs["policy"], costs[spec.rule_to_beat]
    p_value = paired_test(policy, rule)
    metrics = {"n_test": float(len(policy)), spec.metric: float(np.mean(policy)),
               "shortfall_std_bps": float(np.std(policy)), "shortfall_median_bps": float(np.median(policy)),
               f"naive_{spec.rule_to_beat}_{spec.metric}": float(np.mean(rule)),
               "paired_mean_gain_bps": float(np.mean(rule - policy)),
               "paired_win_share": float(np.mean(policy < rule)),
               "null_screen_p_value": p_value, "null_screen_n": float(len(policy)), "null_p_value": p_value}
    for name, values in costs.items():
        if name in REFERENCE_RULES:  # reported beside the rules, not gated on
            metrics[f"reference_{name}_{spec.metric}"] = float(np.mean(values))
        elif name not in ("policy", spec.rule_to_beat):
            metrics[f"baseline_{name}_{spec.metric}"] = float(np.mean(values))
    return metrics


def episodic_card(name: str, version: str, spec: ModelSpec, metrics: dict[str, float], gates: dict[str, bool],
                  tags: dict[str, str]) -> str:
    rules = "\n".join(f"| {k.split('_', 1)[1].removesuffix('_' + spec.metric)} "
                      f"| {v:.4f} | {'gate (paired test)' if k.startswith('naive_') else 'gate' if k.startswith('baseline_') else 'reported only'} |"
                      for k, v in sorted(metrics.items()) if k.startswith(("naive_", "baseline_", "reference_")))
    gate_rows = "\n".join(f"| {g.removeprefix('gate_')} | {'pass' if ok else 'FAIL'} |" for g, ok in gates.items())
    return f"""# Model card: {name} v{version}

- Family / spec: `{spec.family}` / `{spec.name}` — {spec.description}
- Episodes replayed from the bars: training ends {tags.get('train_end')}, held-out episodes from
  {tags.get('holdout_start')} to {tags.get('holdout_end')} (purge of {spec.horizon} bars between them)
- Lineage: run `{tags.get('mlflow.runName', '')}`, data fingerprint `{tags.get('data_fingerprint')}`,
  code `{tags.get('code_version')}`, as of {tags.get('as_of')}

## Held-out episodes (out of sample), the bundle's ONNX policy

Implementation shortfall after fees, spread and impact, bps of the parent order: mean
{metrics[spec.metric]:.4f}, median {metrics['shortfall_median_bps']:.4f}, std {metrics['shortfall_std_bps']:.4f}
over {int(metrics['n_test'])} episodes (half buys, half sells).

| rule | mean shortfall (bps) | role |
|---|---|---|
{rules}

Against {spec.rule_to_beat.upper()} on the same episodes: mean gain {metrics['paired_mean_gain_bps']:.4f} bps, lower in
{metrics['paired_win_share']:.1%} of the episodes; one-sided paired Wilcoxon p = {metrics['null_p_value']:.3g}.

## Gates

| gate | result |
|---|---|
{gate_rows}
"""


def validate_episodes(settings: Settings, spec: ModelSpec, *, model_name: str, version: str, as_of: pd.Timestamp,
                      holdout_fraction: float) -> dict[str, Any]:
    """Replay the version's bundle on the held-out episodes beside the rules; gate and tag it."""
    import mlflow

    from models.families.execution import holdout_states, onnx_policy
    from pipelines.steps.validate import one_row_latency_us, record_verdict

    registry = Registry.from_settings(settings)
    mv = registry.client.get_model_version(model_name, version)
    run = registry.client.get_run(mv.run_id)
    params = json.loads(run.data.tags["best_params"])
    bars = episode_bars(settings, spec, symbol=mv.tags["symbol"], timeframe=mv.tags["timeframe"], as_of=as_of)
    if bars_fingerprint(bars) != run.data.tags.get("data_fingerprint"):
        raise RuntimeError(f"{model_name} v{version}: the warehouse slice changed since training "
                           f"(fingerprint {bars_fingerprint(bars)} != {run.data.tags.get('data_fingerprint')})")
    train_stop, holdout_start = episode_split(len(bars), holdout_fraction, spec.horizon)
    bundle = version_bundle(settings, registry, model_name, version)
    costs = spec.episode_costs(onnx_policy((bundle / "model.onnx").read_bytes()), bars, train_stop,
                               holdout_start, params)
    metrics = episode_metrics(spec, costs)
    metrics["onnx_max_abs_diff"] = float(run.data.metrics["onnx_max_abs_diff"])
    metrics["latency_p50_us"] = one_row_latency_us(bundle, holdout_states(bars, holdout_start, params))
    metrics["n_trials"] = 1.0

    def log_episode_artifacts(gates: dict[str, bool]) -> None:
        mlflow.log_text(pd.DataFrame(costs).to_csv(index_label="episode"), "episodes/holdout_shortfall_bps.csv")
        mlflow.log_text(episodic_card(model_name, version, spec, metrics, gates, run.data.tags), "model_card.md")

    result = record_verdict(settings, registry, spec, mv, metrics, log_episode_artifacts)
    log.info("%s v%s %s: %s=%.4f vs %s %.4f, paired p=%.3g, gates failed=%s", model_name, version, result["status"],
             spec.metric, metrics[spec.metric], spec.rule_to_beat,
             metrics[f"naive_{spec.rule_to_beat}_{spec.metric}"], metrics["null_p_value"],
             result["failed_gates"] or "none")
    return result


def compare_episodes(settings: Settings, registry: Registry, spec: ModelSpec, name: str, new: str, incumbent: str,
                     as_of: pd.Timestamp, holdout_fractions: tuple[float, float]) -> dict[str, Any]:
    """Both versions' policies on the held-out episodes that follow both training windows."""
    from models.families.execution import onnx_policy

    mv = registry.client.get_model_version(name, new)
    bars = episode_bars(settings, spec, symbol=mv.tags["symbol"], timeframe=mv.tags["timeframe"], as_of=as_of)
    splits = [episode_split(len(bars), fraction, spec.horizon) for fraction in holdout_fractions]
    train_stop, holdout_start = min(s[0] for s in splits), max(s[1] for s in splits)
    scores = {}
    for version in (new, incumbent):
        params = json.loads(registry.client.get_run(registry.client.get_model_version(name, version).run_id)
                            .data.tags["best_params"])
        policy = onnx_policy((version_bundle(settings, registry, name, version) / "model.onnx").read_bytes())
        try:
            costs = spec.episode_costs(policy, bars, train_stop, holdout_start, params)
        except InsufficientDataError as exc:
            return {"shared_rows": 0, "better": False, "reason": f"{exc}; keep the champion"}
        scores[version] = costs["policy"]
    new_score, old_score = float(np.mean(scores[new])), float(np.mean(scores[incumbent]))
    better = new_score < old_score and paired_test(scores[new], scores[incumbent]) < spec.gates.max_null_p_value
    return {"shared_rows": int(len(bars) - holdout_start), "new_score": new_score, "champion_score": old_score,
            "better": bool(better), "metric": spec.metric,
            "reason": f"{spec.metric} {new_score:.4f} vs champion {old_score:.4f} on {len(scores[new])} shared "
                      "episodes (paired Wilcoxon)"}
