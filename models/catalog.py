"""The spec catalog: every model family's specs, picked by name through :data:`FAMILIES`.

``FAMILIES`` is an explicit dict (family name → spec builder), not import strings;
``specs_for(["all"])`` selects every family, ``spec_by_name`` one spec. Every spec names its
label (a rule of :mod:`features.labels` with its parameters bound, or the trade log's
:func:`models.families.trade_quality.trade_label`), its estimator builder and Optuna search
space (from :mod:`models.builders` and :mod:`models.search_spaces`), and its primary metric.
Estimator modules are imported inside the builders, so importing this module stays cheap (no
torch, LightGBM, scikit-learn or arch at import time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from features import labels
from features.timeframes import timeframe_hours
from models import builders
from models.search_spaces import (
    lightgbm_space,
    small_lightgbm_space,
    anomaly_space,
    forest_space,
    svm_space,
    gbm_space,
    sequence_space,
    chart_pattern_space,
    logistic_space,
    ensemble_space,
    fixed_parameters,
)
from models.specs import Gates, ModelSpec

# -- specs -------------------------------------------------------------------------------

DIRECTION_HORIZONS = (1, 5)
DIRECTION3_HORIZON, DIRECTION3_THRESHOLD = 5, 0.001
VOLATILITY_HORIZONS = (5, 20)
REGIME_HORIZON = 20
RISK_HORIZON = 20
MOMENTUM_HORIZON = 10
GATE_HORIZON, GATE_K = 20, 1.0
SEQUENCE_HORIZON, SEQUENCE_WINDOW = 5, 32
ENSEMBLE_HORIZON = 5
EXECUTION_HORIZON = 30
CHART_PATTERN_HORIZON, CHART_PATTERN_WINDOW = 10, 100
PATTERN_HORIZON, PATTERN_WINDOW, PATTERN_THRESHOLD = 1, 8, 0.0002
CORRELATION_WINDOW, CORRELATION_RANK_WINDOW = 40, 500
SENTIMENT_HORIZON = 10
LIQUIDITY_HOURS = (6, 12, 24)
RETURNS_HOURS, RETURNS_DIRECTION_THRESHOLD = (1, 4, 24), 0.001
RETURNS_TRADED_TARGET = "label_return_1h"


def direction_specs() -> list[ModelSpec]:
    specs = [
        ModelSpec(
            name=f"direction_h{h}", family="direction", task="classifier", label=f"dir_up_h{h}",
            horizon=h, make_label=partial(labels.direction_up, horizon=h), build=builders.direction_classifier,
            search_space=lightgbm_space, metric="auc", class_names=("down", "up"), select_features=True,
            description=f"P(close[t+{h}] > close[t]), LightGBM",
        )
        for h in DIRECTION_HORIZONS
    ]
    h, threshold = DIRECTION3_HORIZON, DIRECTION3_THRESHOLD
    specs.append(ModelSpec(
        name=f"direction3_h{h}", family="direction", task="classifier", label=f"dir3_h{h}_{threshold:g}",
        horizon=h, make_label=partial(labels.direction_three_class, horizon=h, threshold=threshold),
        build=builders.direction_classifier, search_space=lightgbm_space, metric="auc",
        class_names=("down", "flat", "up"), max_train_rows=8000, select_features=True,
        description=f"down / flat / up over {h} bars with a ±{threshold:.1%} band, LightGBM",
    ))
    return specs


def volatility_specs() -> list[ModelSpec]:
    return [
        ModelSpec(
            name=f"volatility_h{h}", family="volatility", task="regressor", label=f"fwd_rv_{h}", horizon=h,
            make_label=partial(labels.forward_realized_vol, horizon=h), build=builders.volatility,
            search_space=builders.volatility_space, metric="qlike", greater_is_better=False,
            description=f"realized volatility (RMS of 1-bar log returns) of the next {h} bars: HAR on "
                        "Garman-Klass volatility (1, 5, 22 bars) with leverage, boosted by LightGBM, both on "
                        "QLIKE; naive rules GARCH(1,1), EGARCH(1,1), HAR-RV and last-h RV fitted on the training window",
            schema_extras={"outputs": [{"name": "value", "kind": "value", "meaning": f"realized_vol_h{h}",
                                        "units": "per-bar log return"}]},
            baselines=builders.train_mean_baseline,
        )
        for h in VOLATILITY_HORIZONS
    ]


def regime_specs() -> list[ModelSpec]:
    h = REGIME_HORIZON
    return [ModelSpec(
        name=f"regime_h{h}", family="regime", task="classifier", label=f"regime_{h}", horizon=h,
        make_label=partial(labels.regime_label, horizon=h), build=builders.regime_classifier, search_space=lightgbm_space,
        metric="auc", class_names=labels.REGIME_NAMES, max_train_rows=8000, select_features=True,
        description=f"regime of the next {h} bars (trend up/down, range, high vol, consolidation), LightGBM",
    )]


def anomaly_specs() -> list[ModelSpec]:
    from models.families.anomaly import ANOMALY_GROUP_FEATURES

    return [ModelSpec(
        name="anomaly_iforest", family="anomaly", task="anomaly", label="anomaly_unsupervised", horizon=0,
        make_label=labels.zero_label, build=builders.anomaly, search_space=anomaly_space, metric="event_auc",
        class_names=("anomaly", "normal"),
        description="IsolationForest; score = training CDF of -score_samples, anomaly if score > 0.99; "
                    "type by feature-group robust z-scores. Unsupervised: y is ignored; validate with "
                    "recorded events (models.families.anomaly.event_mask)",
        schema_extras={
            # ONNX ``score`` = 1 - anomaly_score (lower is more abnormal, docs/bundle.md): anomaly below 0.01
            "outputs": [{"name": "label", "kind": "label"}, {"name": "score", "kind": "score"},
                        {"name": "anomaly_score", "kind": "value", "meaning": "anomaly_score"}],
            "thresholds": {"anomaly_score": 0.01},
            "anomaly_group_features": {g: list(names) for g, names in ANOMALY_GROUP_FEATURES.items()},
        },
    )]


def risk_specs() -> list[ModelSpec]:
    h = RISK_HORIZON
    return [ModelSpec(
        name=f"risk_h{h}", family="risk", task="regressor", label=f"risk_pct_h{h}", horizon=h,
        make_label=partial(labels.risk_percentile, horizon=h), build=builders.risk_scorer, search_space=forest_space,
        metric="mae", max_train_rows=4000, greater_is_better=False,
        # float32 resolution near 100 is 7.6e-6, and a forest sums 100 float32 leaves: the ONNX
        # score differs from the native one by up to ~4e-5 points (relative 5e-7).
        gates=Gates(max_onnx_abs_diff=1e-4),
        description=f"0-100 risk score: percentile of the next {h} bars' max adverse excursion, random forest",
        schema_extras={"outputs": [{"name": "value", "kind": "value", "meaning": "risk_score_0_100"}]},
        baselines=builders.train_mean_baseline,
    )]


def momentum_specs() -> list[ModelSpec]:
    h = MOMENTUM_HORIZON
    return [ModelSpec(
        name=f"momentum_h{h}", family="momentum", task="classifier", label=f"mom_accel_h{h}", horizon=h,
        make_label=partial(labels.momentum_acceleration, horizon=h), build=builders.momentum_svm, search_space=svm_space,
        metric="auc", class_names=("decelerating", "accelerating"),
        description=f"does the next {h}-bar move continue the past {h}-bar move with a larger size? "
                    "scaled RBF SVM, sigmoid-calibrated",
    )]


def gate_specs() -> list[ModelSpec]:
    from models.families.gate import APPROVE_THRESHOLD, GATE_FALLBACK, QUANTIZED_MAX_ABS_DIFF

    h, k = GATE_HORIZON, GATE_K
    return [ModelSpec(
        name=f"gate_h{h}", family="gate", task="classifier", label=f"sigma_reversion_{h}", horizon=h,
        make_label=partial(labels.sigma_reversion_label, horizon=h, k=k), build=builders.gate, search_space=gbm_space,
        metric="auc", max_train_rows=4000, class_names=("reject", "approve"),
        description=f"σ-reversion gate: P(price moves ≥ {k:g}σ toward its 20-bar mean within {h} bars), "
                    "StandardScaler + GradientBoosting; float and UInt8-quantized ONNX",
        schema_extras={
            # ``decision`` makes the bundle runtime label a row "approve" at the same threshold
            "thresholds": {"approve": APPROVE_THRESHOLD, "decision": APPROVE_THRESHOLD},
            "fallback": GATE_FALLBACK,
            "quantized_variant": {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QUInt8",
                                  "max_abs_diff": QUANTIZED_MAX_ABS_DIFF},
        },
    )]


def trade_quality_specs() -> list[ModelSpec]:
    return [ModelSpec(
        name="trade_quality", family="trade_quality", task="regressor", label="trade_r_multiple", horizon=60,
        make_label=builders.trade_label, build=builders.trade_quality, search_space=small_lightgbm_space, metric="rmse",
        greater_is_better=False,
        description="R-multiple of the sample strategies' trades (EMA cross, RSI reversion; ATR stop/target), "
                    "labelled at entry bars; LightGBM win classifier + R regressor in one graph",
        schema_extras={"outputs": [
            {"name": "value", "kind": "value", "meaning": "expected_r_multiple"},
            {"name": "win_prob", "kind": "value", "meaning": "win_probability"},
        ]},
        baselines=builders.train_mean_baseline,
    )]


def sequence_specs() -> list[ModelSpec]:
    h, w = SEQUENCE_HORIZON, SEQUENCE_WINDOW
    return [
        ModelSpec(
            name=f"sequence_{arch}_h{h}", family="sequence", task="classifier", label=f"dir_up_h{h}", horizon=h,
            make_label=partial(labels.direction_up, horizon=h), build=partial(builders.sequence, arch),
            search_space=sequence_space, metric="auc", class_names=("down", "up"), window=w, max_train_rows=1500,
            max_trials=2, parallel_fits=False, max_null_retrains=20,
            description=f"P(close[t+{h}] > close[t]) and expected return from the last {w} feature vectors, "
                        f"torch {arch}",
            schema_extras={
                "window": w,
                "outputs": [{"name": "label", "kind": "label"}, {"name": "probabilities", "kind": "probabilities"},
                            {"name": "expected_return", "kind": "value", "meaning": "expected_return"}],
            },
        )
        for arch in ("lstm", "transformer")
    ]


def ensemble_specs() -> list[ModelSpec]:
    h = ENSEMBLE_HORIZON
    return [ModelSpec(
        name=f"ensemble_h{h}", family="ensemble", task="classifier", label=f"dir_up_h{h}", horizon=h,
        make_label=partial(labels.direction_up, horizon=h), build=builders.ensemble, search_space=ensemble_space, metric="auc",
        class_names=("down", "up"), max_train_rows=8000,
        description="three LightGBM direction members combined by mean, vote, stacking or regime selection "
                    "(searched), exported as one ONNX graph",
    )]


def execution_specs() -> list[ModelSpec]:
    from models.families.execution import OUTPUT_NAMES

    h = EXECUTION_HORIZON
    return [ModelSpec(
        name="execution_ppo", family="execution", task="regressor", label=f"episode_start_h{h}", horizon=h,
        make_label=partial(labels.episode_start_label, horizon=h), build=builders.execution_policy, search_space=fixed_parameters,
        metric="shortfall_bps", greater_is_better=False, max_trials=1,
        episode_costs=builders.execution_costs, rule_to_beat="twap",
        description=f"PPO (Stable-Baselines3) working a parent order of 5% of the expected volume over {h} bars "
                    "through replayed book snapshots (fees, spread crossing, square-root impact); implementation "
                    "shortfall after costs against TWAP (paired Wilcoxon) and VWAP on held-out episodes",
        schema_extras={
            "outputs": [
                {"name": OUTPUT_NAMES[0], "kind": "value", "meaning": "child_fraction_of_remaining",
                 "units": "fraction in [0, 1] of the parent order still to do, sent now"},
                {"name": OUTPUT_NAMES[1], "kind": "value", "meaning": "limit_offset_half_spreads",
                 "units": "limit price = mid + side * offset * spread / 2, offset in [-1, 1]; 1 takes the far touch"},
            ],
            "execution": {
                "horizon_bars": h, "order_participation": 0.05,
                "state": "remaining_fraction = remaining / parent; time_left_fraction = bars left / horizon; "
                         "log_spread_bps = log(spread / mid * 1e4); log_depth_to_remaining = log(displayed size "
                         "on the side the order would take / remaining), clipped to [-8, 8]; book_imbalance = "
                         "side * (bid_size - ask_size) / (bid_size + ask_size); log_volume_ratio = log(mean "
                         "volume of the last 5 bars / of the last 60); recent_direction = side * 5-bar log "
                         "return / (sigma * sqrt 5), clipped to [-5, 5]; log_volatility_bps = log(sigma * 1e4), "
                         "sigma the std of the last 30 one-bar log returns; side +1 buy, -1 sell",
                "runtime": "each bar: send child_fraction * remaining at the limit; cancel what is unfilled at "
                           "the bar's end; take what remains after the last bar",
            },
        },
    )]


def sentiment_specs() -> list[ModelSpec]:
    from features.news import news_feature_names
    from models.families.sentiment import FILTER_FEATURE, FILTER_THRESHOLD

    h = SENTIMENT_HORIZON
    return [ModelSpec(
        name=f"sentiment_h{h}", family="sentiment", task="classifier", label=f"dir_up_h{h}", horizon=h,
        make_label=partial(labels.direction_up, horizon=h), build=builders.sentiment, search_space=logistic_space,
        metric="auc", class_names=("down", "up"),
        required_features=tuple(news_feature_names()),
        description=f"P(close[t+{h}] > close[t]) from bar and headline-sentiment features (VADER scores, event "
                    f"counts, decayed sentiment), scaled logistic regression; block_long = {FILTER_FEATURE} <= {FILTER_THRESHOLD:g}; naive rules see no "
                    "headline",
        schema_extras={
            "outputs": [{"name": "label", "kind": "label"}, {"name": "probabilities", "kind": "probabilities"},
                        {"name": "block_long", "kind": "value", "meaning": "block_long"}],
            "thresholds": {"block_long_sentiment": FILTER_THRESHOLD},
            "risk_filter": {"output": "block_long", "feature": FILTER_FEATURE, "op": "<=",
                            "value": FILTER_THRESHOLD, "action": "no new long position while block_long is 1"},
        },
    )]


def correlation_regime_specs() -> list[ModelSpec]:
    from features.correlation import REGIME_NAMES, forward_correlation_regime
    from models.families.correlation_regime import CHANGE_THRESHOLD

    w, n = CORRELATION_WINDOW, CORRELATION_RANK_WINDOW
    return [ModelSpec(
        name=f"correlation_regime_w{w}", family="correlation_regime", task="classifier", label=f"corr_regime_{w}",
        horizon=w, make_label=partial(forward_correlation_regime, window=w, rank_window=n),
        build=builders.correlation_regime, search_space=builders.correlation_regime_space, metric="auc",
        class_names=REGIME_NAMES, universe=True, holdout_checks=builders.correlation_switch_checks,
        description=f"correlation regime of a universe over the next {w} bars (tercile of the average |ρ| in the "
                    f"trailing {n}): k-means on the {w}-bar correlation matrix's summaries, the change "
                    "probability between consecutive windows, and a logistic head",
        schema_extras={
            "outputs": [{"name": "correlation_regime", "kind": "label"},
                        {"name": "probabilities", "kind": "probabilities"},
                        {"name": "average_correlation", "kind": "value", "meaning": "average_correlation"},
                        {"name": "regime_change_probability", "kind": "value",
                         "meaning": "regime_change_probability"},
                        {"name": "current_regime", "kind": "value", "meaning": "current_regime_index"}],
            "thresholds": {"regime_change": CHANGE_THRESHOLD},
            "correlation_window": w, "rank_window": n,
        },
    )]


def chart_pattern_specs() -> list[ModelSpec]:
    from models.families.chart_pattern_generator import OHLCV, PATTERN_NAMES

    h, w = CHART_PATTERN_HORIZON, CHART_PATTERN_WINDOW
    return [ModelSpec(
        name="chart_pattern_cnn", family="chart_pattern", task="classifier", label="chart_pattern_generated",
        horizon=h, make_label=builders.no_market_label, build=builders.chart_pattern, search_space=chart_pattern_space,
        metric="auc", class_names=PATTERN_NAMES, window=w, max_trials=2, parallel_fits=False,
        max_null_retrains=20, rows=partial(builders.chart_pattern_rows, horizon=h),
        holdout_report=builders.chart_pattern_report,
        description=f"multi-bar chart pattern of the last {w} OHLCV bars (head and shoulders, double top/bottom, "
                    "triangles, wedges, channels, none) and its breakout direction over the next "
                    f"{h} bars; 1-D CNN trained on generated patterns (models.families.chart_pattern_generator)",
        schema_extras={
            "window": w,
            "ohlcv": list(OHLCV),
            "outputs": [
                {"name": "pattern_type", "kind": "label"},
                {"name": "probabilities", "kind": "probabilities"},
                {"name": "confidence", "kind": "value", "meaning": "pattern_confidence"},
                {"name": "breakout_direction", "kind": "value", "meaning": "breakout_direction"},
                {"name": "breakout_probabilities", "kind": "value", "meaning": "breakout_probabilities"},
            ],
            "breakout_direction_values": {"down": -1, "none": 0, "up": 1},
        },
    )]


def pattern_similarity_specs() -> list[ModelSpec]:
    h, w, threshold = PATTERN_HORIZON, PATTERN_WINDOW, PATTERN_THRESHOLD
    return [ModelSpec(
        name=f"pattern_similarity_h{h}", family="pattern_similarity", task="classifier",
        label=f"dir3_h{h}_{threshold:g}", horizon=h,
        make_label=partial(labels.direction_three_class, horizon=h, threshold=threshold),
        build=builders.pattern_similarity, search_space=builders.pattern_space, metric="auc",
        class_names=("bearish", "neutral", "bullish"), window=w, max_train_rows=3000, max_trials=2,
        parallel_fits=False, max_null_retrains=20,
        description=f"outcome votes (down / flat / up over {h} bars, ±{threshold:.2%}) of the k most similar "
                    f"training windows of {w} feature vectors, by cosine similarity of torch autoencoder "
                    "embeddings; naive rule: the training base rate",
        schema_extras={"window": w},
    )]


def _needs_timeframe(name: str) -> Callable[[Any], Any]:
    """The label rule of a spec not yet resolved for a timeframe: raises, naming the fix."""
    def rule(bars: Any) -> Any:
        raise ValueError(f"{name}: its horizons are in hours; resolve it for the bars' timeframe with "
                         f"models.catalog.spec_by_name({name!r}, timeframe)")
    return rule


def _hour_outputs(targets: Sequence[str], hours: Sequence[float], bars: Sequence[int], units: str
                  ) -> list[dict[str, Any]]:
    return [{"name": t, "kind": "value", "meaning": t, "horizon_hours": float(h), "horizon_bars": int(n),
             "units": units} for t, h, n in zip(targets, hours, bars)]


def liquidity_spec(timeframe: str | None = None) -> ModelSpec:
    """``liquidity_volume`` for bars of ``timeframe`` (horizons of 6, 12 and 24 hours in bars; a daily bar is 24h)."""
    bar_hours = timeframe_hours(timeframe) if timeframe else 1.0
    bars = [labels.bars_for_hours(h, bar_hours) for h in LIQUIDITY_HOURS]
    targets = tuple(f"liq_log_volume_{labels.hours_name(h)}" for h in LIQUIDITY_HOURS)
    make = partial(labels.liquidity_targets, bar_hours=bar_hours, hours=LIQUIDITY_HOURS) if timeframe \
        else _needs_timeframe("liquidity_volume")
    return ModelSpec(
        name="liquidity_volume", family="liquidity", task="regressor", label="liq_log_volume", horizon=max(bars),
        make_label=make, build=builders.liquidity, search_space=small_lightgbm_space, metric="rmsle",
        greater_is_better=False, targets=targets, per_timeframe=liquidity_spec, max_trials=4,
        # float32 resolution near ln(1 + volume) ~ 10 is 9.5e-7, and each output sums float32 leaves:
        # the ONNX forecast differs from the native one by up to ~1e-5 (relative 1e-6).
        gates=Gates(max_onnx_abs_diff=1e-4),
        description="ln(1 + volume) over the next 6, 12 and 24 hours, one LightGBM booster per horizon in one "
                    "ONNX graph, on hour of day, day of week, the NYSE holiday calendar and the log-volume trend; "
                    "rmsle = RMSE of the log targets, mean over horizons; naive rules: the training window's "
                    "hour-of-week mean volume, and the last 24 hours' volume",
        schema_extras={"outputs": _hour_outputs(targets, LIQUIDITY_HOURS, bars, "ln(1 + volume)"),
                       "timeframe": timeframe or "",
                       "execution_limit": {"max_order_fraction_of_forecast": 0.1,
                                           "rule": "refuse an order larger than 0.1 * (exp(forecast) - 1)"}},
    )


def liquidity_specs() -> list[ModelSpec]:
    return [liquidity_spec()]


def returns_spec(name: str, timeframe: str | None = None) -> ModelSpec:
    """``returns_lgbm`` or ``returns_mlp`` for bars of ``timeframe`` (1h, 4h and 1d horizons in bars)."""
    bar_hours = timeframe_hours(timeframe) if timeframe else 1.0
    bars = [labels.bars_for_hours(h, bar_hours) for h in RETURNS_HOURS]
    kinds = ("return", "max_gain", "max_loss")
    targets = tuple(f"label_{kind}_{labels.hours_name(h)}" for kind in kinds for h in RETURNS_HOURS)
    make = partial(labels.multi_horizon_labels, bar_hours=bar_hours, hours=RETURNS_HOURS,
                   threshold=RETURNS_DIRECTION_THRESHOLD) if timeframe \
        else _needs_timeframe(name)
    mlp = name == "returns_mlp"
    units = {"return": "log return", "max_gain": "max high / close - 1", "max_loss": "min low / close - 1"}
    outputs = [o for kind in kinds for o in _hour_outputs([t for t in targets if f"_{kind}_" in t], RETURNS_HOURS,
                                                          bars, units[kind])]
    return ModelSpec(
        name=name, family="returns", task="regressor", label="label_returns", horizon=max(bars), make_label=make,
        build=builders.returns_mlp if mlp else builders.returns_lgbm,
        search_space=builders.returns_mlp_space if mlp else small_lightgbm_space, metric="rmse",
        greater_is_better=False, targets=targets, per_timeframe=partial(returns_spec, name),
        max_trials=2 if mlp else 4, parallel_fits=not mlp, max_null_retrains=20 if mlp else None,
        max_train_rows=6000 if mlp else 8000, baselines=builders.train_mean_baseline,
        description=("torch MLP price predictor" if mlp else "one LightGBM booster per target") +
                    ": return, largest favourable move (max gain) and largest adverse move (max loss) over the next "
                    "1h, 4h and 1d, one ONNX output per target; rmse is the mean over targets; naive rule: the "
                    f"training-window mean; {RETURNS_TRADED_TARGET}'s sign is traded after costs. The label step also "
                    f"stores label_direction_<H> (down / neutral / up, ±{RETURNS_DIRECTION_THRESHOLD:.1%} band)",
        schema_extras={"outputs": outputs, "timeframe": timeframe or "", "traded_output": RETURNS_TRADED_TARGET},
    )


def returns_direction_spec(timeframe: str | None = None) -> ModelSpec:
    """``returns_direction_1h``: down / neutral / up over the next hour (the ±0.1% band), for bars of ``timeframe``."""
    hours = RETURNS_HOURS[0]
    bars = labels.bars_for_hours(hours, timeframe_hours(timeframe) if timeframe else 1.0)
    name, label = f"returns_direction_{labels.hours_name(hours)}", f"label_direction_{labels.hours_name(hours)}"
    make = partial(labels.direction_three_class, horizon=bars, threshold=RETURNS_DIRECTION_THRESHOLD) if timeframe \
        else _needs_timeframe(name)
    return ModelSpec(
        name=name, family="returns", task="classifier", label=label, horizon=bars, make_label=make,
        build=builders.direction_classifier, search_space=lightgbm_space, metric="auc",
        class_names=("down", "neutral", "up"), max_train_rows=8000, select_features=True,
        per_timeframe=returns_direction_spec,
        description=f"the three-class direction label of the returns family: down / neutral / up over the next "
                    f"{hours}h ({bars} bars) with a ±{RETURNS_DIRECTION_THRESHOLD:.1%} neutral band, LightGBM",
        schema_extras={"timeframe": timeframe or ""},
    )


def returns_specs() -> list[ModelSpec]:
    return [returns_spec("returns_lgbm"), returns_spec("returns_mlp"), returns_direction_spec()]


FAMILIES: dict[str, Callable[[], list[ModelSpec]]] = {
    "direction": direction_specs,
    "volatility": volatility_specs,
    "regime": regime_specs,
    "anomaly": anomaly_specs,
    "risk": risk_specs,
    "momentum": momentum_specs,
    "gate": gate_specs,
    "trade_quality": trade_quality_specs,
    "sequence": sequence_specs,
    "ensemble": ensemble_specs,
    "execution": execution_specs,
    "chart_pattern": chart_pattern_specs,
    "pattern_similarity": pattern_similarity_specs,
    "correlation_regime": correlation_regime_specs,
    "sentiment": sentiment_specs,
    "liquidity": liquidity_specs,
    "returns": returns_specs,
}


def family_names() -> list[str]:
    return sorted(FAMILIES)


def specs_for(families: Sequence[str]) -> list[ModelSpec]:
    """Specs of the named families (``all`` for every family) or single specs by name.

    Unknown names raise ValueError listing what is known.
    """
    names = sorted(FAMILIES) if "all" in families else list(dict.fromkeys(families))
    by_spec = {spec.name: spec for build in FAMILIES.values() for spec in build()}
    unknown = [n for n in names if n not in FAMILIES and n not in by_spec]
    if unknown:
        raise ValueError(f"unknown model family {', '.join(unknown)}; known families: "
                         f"{', '.join(family_names())}, all (or a spec name such as direction_h1)")
    chosen: list[ModelSpec] = []
    for name in names:
        for spec in FAMILIES[name]() if name in FAMILIES else [by_spec[name]]:
            if spec.name not in {c.name for c in chosen}:
                chosen.append(spec)
    return chosen


def spec_by_name(name: str, timeframe: str | None = None) -> ModelSpec:
    """The spec called ``name``; with ``timeframe``, resolved for it when its horizons are in hours."""
    for builder in FAMILIES.values():
        for spec in builder():
            if spec.name == name:
                return spec.per_timeframe(timeframe) if timeframe and spec.per_timeframe else spec
    raise ValueError(f"unknown model spec {name!r}")


def timeframe_problem(name: str, timeframe: str) -> str | None:
    """Why the spec called ``name`` cannot run on ``timeframe`` bars (None when it can): a spec whose
    horizons are in hours needs bars of a fixed length (not monthly ones)."""
    spec = spec_by_name(name)  # an unknown name raises, as everywhere else
    if spec.per_timeframe is None:
        return None
    try:
        spec.per_timeframe(timeframe)
    except ValueError as exc:
        return f"its horizons are in hours and cannot be resolved on {timeframe} bars ({exc})"
    return None
