"""The simple rule of each family's field, as a baseline that a model must beat on its holdout.

A naive rule sees what a model sees at bar ``t`` (the bars up to ``t`` and the feature row) and
is fitted on the training rows only. Each rule returns holdout predictions in the form of the
spec's primary output (class probabilities, a value, or an anomaly score), so validation scores
it with the spec's own primary metric on the same rows as the model.

| family | rules |
|---|---|
| direction, sequence, ensemble | sign of the last h-bar return (momentum or reversal, as the training rows prefer) |
| momentum | logistic regression on the size of the past h-bar move |
| regime | persistence: the regime rule applied to the last h bars |
| volatility | GARCH(1,1), EGARCH(1,1), HAR-RV (1, 5 and 22-bar realized variance), the last h bars' realized volatility |
| risk | persistence of the trailing excursion percentile |
| gate | the seed's fallback heuristic; logistic regression on the label's own scale |
| anomaly | a robust z-score of volume and range |
| trade_quality | the R multiple implied by the training win rate |
| chart_pattern | the training class frequencies; nearest template and logistic regression on the normalized close path |
| pattern_similarity | the base rate: the training rows' class shares on every holdout row |
| correlation_regime | the tercile of the current average correlation in its trailing history (hard and soft) |
| sentiment | without any headline: the direction rule, and a logistic regression on the price features |
| liquidity | the training window's mean volume of each future bar's hour of week (seasonal mean); the last 24 hours' volume |
| returns | the training window's mean of each target |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class NaiveContext:
    """What a naive rule may use: the bars up to the last row, and the dataset's rows.

    ``index`` holds the dataset's row times (for sequence specs, the last bar of each window);
    ``train_idx`` / ``holdout_idx`` are positions in it. ``X`` is the feature matrix (2-D: for
    sequence specs, the last feature vector of each window).
    """

    bars: pd.DataFrame
    index: pd.DatetimeIndex
    y: np.ndarray
    X: np.ndarray
    feature_names: list[str]
    train_idx: np.ndarray
    holdout_idx: np.ndarray
    horizon: int
    windows: np.ndarray | None = None  # sequence specs: the whole windows [n, window, f]
    # Multi-output specs: each target's horizon in bars (y is [n, len(target_horizons)]), and the bar length.
    target_horizons: tuple[int, ...] = ()
    bar_hours: float = 0.0

    def at_rows(self, series: pd.Series) -> np.ndarray:
        """A bar-indexed series read at the dataset's row times (NaN where absent)."""
        return series.reindex(self.index).to_numpy(dtype=np.float64)

    def feature(self, name: str) -> np.ndarray | None:
        if name not in self.feature_names:
            return None
        return np.asarray(self.X[:, self.feature_names.index(name)], dtype=np.float64)

    @property
    def log_close(self) -> pd.Series:
        return np.log(self.bars["close"].astype(float))

    def past_return(self, horizon: int) -> np.ndarray:
        """``ln(close_t / close_{t-h})`` at each row: known when bar t closes."""
        return self.at_rows(self.log_close.diff(horizon))


NaiveRules = Callable[[NaiveContext], dict[str, np.ndarray]]


def _binary_proba(p_up: np.ndarray) -> np.ndarray:
    p_up = np.clip(np.nan_to_num(p_up, nan=0.5), 0.0, 1.0)
    return np.column_stack([1.0 - p_up, p_up])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else 0.5


def _logistic(ctx: NaiveContext, inputs: np.ndarray) -> np.ndarray:
    """P(class 1) of a logistic regression on ``inputs``, fitted on the training rows only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    inputs = np.asarray(inputs, dtype=np.float64).reshape(len(ctx.y), -1)
    train = ctx.train_idx[np.isfinite(inputs[ctx.train_idx]).all(axis=1)]
    y_train = ctx.y[train].astype(int)
    hold = inputs[ctx.holdout_idx]
    if len(np.unique(y_train)) < 2:
        return np.full(len(hold), float(y_train.mean()) if len(y_train) else 0.5)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    model.fit(inputs[train], y_train)
    fill = np.nanmedian(inputs[train], axis=0)
    hold = np.where(np.isfinite(hold), hold, fill)
    return model.predict_proba(hold)[:, 1]


# -- direction ---------------------------------------------------------------------------

def last_return_sign(ctx: NaiveContext) -> np.ndarray:
    """Sign of the last h-bar return, oriented (momentum or reversal) by the training rows' AUC."""
    sign = np.nan_to_num(np.sign(ctx.past_return(max(ctx.horizon, 1))))
    up = ctx.y[ctx.train_idx] == ctx.y.max() if ctx.y.max() > 1 else ctx.y[ctx.train_idx] == 1
    orientation = 1.0 if _auc(up, sign[ctx.train_idx]) >= 0.5 else -1.0
    return orientation * sign[ctx.holdout_idx]


def direction_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Binary (down, up) or three-class (down, flat, up) probabilities from the last move's sign."""
    sign = last_return_sign(ctx)
    if int(np.nanmax(ctx.y)) >= 2:  # down / flat / up: the sign ranks up and down, flat stays neutral
        proba = np.select([sign[:, None] > 0, sign[:, None] < 0],
                          [np.array([[0.2, 0.3, 0.5]]), np.array([[0.5, 0.3, 0.2]])],
                          np.array([[0.3, 0.4, 0.3]]))
        return {"last_return_sign": proba}
    return {"last_return_sign": _binary_proba(0.5 + 0.25 * sign)}


# -- momentum ----------------------------------------------------------------------------

def momentum_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Logistic regression on |past h-bar log return|: a large past move is hard to outrun."""
    size = np.abs(ctx.past_return(ctx.horizon))
    return {"past_move_size_logit": _binary_proba(_logistic(ctx, size))}


# -- regime ------------------------------------------------------------------------------

def regime_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Persistence: the regime of the last h bars (the label rule shifted back by h) is the forecast."""
    from features.labels import REGIME_NAMES, regime_label

    n_classes = len(REGIME_NAMES)
    past = ctx.at_rows(regime_label(ctx.bars, horizon=ctx.horizon).shift(ctx.horizon))
    majority = int(np.bincount(ctx.y[ctx.train_idx].astype(int), minlength=n_classes).argmax())
    predicted = np.where(np.isfinite(past), past, majority).astype(int)[ctx.holdout_idx]
    proba = np.full((len(predicted), n_classes), 0.4 / (n_classes - 1))
    proba[np.arange(len(predicted)), predicted] = 0.6
    return {"persistence": proba}


# -- correlation regime ------------------------------------------------------------------

def correlation_regime_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """The current average |ρ|'s trailing tercile is the next window's regime (0 tight, 1 normal, 2 dispersed).

    ``current_tercile`` puts 0.6 on that tercile and 0.2 on each other; ``current_rank`` scores
    tight by the rank r, dispersed by 1 - r and normal by 1 - |2r - 1| (normalized), the same
    rule without the steps, so that AUC compares rankings rather than ties.
    """
    rank_name = next((n for n in ctx.feature_names if n.startswith("xa_avg_abs_corr_") and "_pct" in n), None)
    if rank_name is None:
        raise ValueError("correlation_regime rules need the trailing-rank feature xa_avg_abs_corr_<W>_pct<N>")
    rank = np.clip(ctx.feature(rank_name), 0.0, 1.0)[ctx.holdout_idx]  # type: ignore[index]
    tercile = np.where(rank >= 2 / 3, 0, np.where(rank < 1 / 3, 2, 1))
    hard = np.full((len(rank), 3), 0.2)
    hard[np.arange(len(rank)), tercile] = 0.6
    soft = np.column_stack([rank, 1.0 - np.abs(2.0 * rank - 1.0), 1.0 - rank]) + 1e-9
    return {"current_tercile": hard, "current_rank": soft / soft.sum(axis=1, keepdims=True)}


# -- volatility --------------------------------------------------------------------------

def _bar_log_returns(ctx: NaiveContext) -> pd.Series:
    """1-bar log returns, each at the bar where it ends."""
    return ctx.log_close.diff()


def volatility_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """GARCH(1,1) and EGARCH(1,1) fitted on the training returns, and HAR-RV fitted on the training rows.

    The returns are those that end at each bar (known at its close), so no forecast sees a
    return of its own target window.
    """
    from models.baselines import garch_baselines, naive_realized_vol

    returns = _bar_log_returns(ctx)
    positions = ctx.bars.index.get_indexer(ctx.index)
    first, last_train = positions[ctx.train_idx[0]], positions[ctx.train_idx[-1]]
    start = max(first, 1)
    series = returns.to_numpy(dtype=np.float64)[start:positions[-1] + 1]
    series = np.nan_to_num(series)
    out = garch_baselines(series[: last_train - start + 1], series, positions[ctx.holdout_idx] - start,
                          ctx.horizon)
    out["last_h_rv"] = naive_realized_vol(series, positions[ctx.holdout_idx] - start, ctx.horizon)
    out["har_rv"] = har_rv_forecast(ctx)
    out = {name: np.maximum(values, 1e-12) for name, values in out.items()}
    return out


def har_rv_forecast(ctx: NaiveContext) -> np.ndarray:
    """Corsi's HAR-RV on variance: ``RV_fwd = b0 + b1 RV_1 + b2 RV_5 + b3 RV_22`` by OLS on the
    training rows; the forecast's square root is in the label's units (per-bar volatility)."""
    squared = _bar_log_returns(ctx) ** 2
    terms = np.column_stack([ctx.at_rows(squared.rolling(w, min_periods=w).mean()) for w in (1, 5, 22)])
    design = np.column_stack([np.ones(len(terms)), terms])
    target = np.asarray(ctx.y, dtype=np.float64) ** 2
    train = ctx.train_idx[np.isfinite(design[ctx.train_idx]).all(axis=1)]
    coef, *_ = np.linalg.lstsq(design[train], target[train], rcond=None)
    hold = design[ctx.holdout_idx]
    fallback = float(np.mean(target[train]))
    variance = np.where(np.isfinite(hold).all(axis=1), hold @ coef, fallback)
    floor = float(np.quantile(target[train], 0.01)) if len(train) else 1e-12
    return np.sqrt(np.maximum(variance, max(floor, 1e-24)))


# -- risk --------------------------------------------------------------------------------

def risk_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Persistence: the percentile of the last h bars' max excursion, among the trailing ones."""
    from features.labels import risk_percentile

    past = ctx.at_rows(risk_percentile(ctx.bars, horizon=ctx.horizon).shift(ctx.horizon))
    fill = float(np.mean(ctx.y[ctx.train_idx]))
    return {"excursion_persistence": np.where(np.isfinite(past), past, fill)[ctx.holdout_idx]}


# -- gate --------------------------------------------------------------------------------

def _fallback_approves(rule: dict[str, Any], ctx: NaiveContext) -> np.ndarray | None:
    """1 where the seed's fallback rule approves a row, 0 elsewhere; None without its features."""
    ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
    approve = np.zeros(len(ctx.holdout_idx), dtype=bool)
    for clause in rule["rules"]:
        holds = np.ones(len(ctx.holdout_idx), dtype=bool)
        for name, op, value in clause["when"]:
            column = ctx.feature(name)
            if column is None:
                return None
            holds &= ops[op](np.nan_to_num(column[ctx.holdout_idx], nan=0.0), value)
        if clause["output"].get("label") == 1:
            approve |= holds
    return approve.astype(np.float64)


def gate_rules(ctx: NaiveContext, window: int = 20, vol_window: int = 100) -> dict[str, np.ndarray]:
    """The seed's fallback heuristic, and a logistic regression on the label's own scale.

    The σ-reversion label asks for a move of kσ, where σ is the std of the last ``window``
    closes. How far that is depends on σ against the per-bar volatility (the std of 1-bar
    returns over ``vol_window`` bars, in price units), and on the distance to the mean in σ:
    both are known at t, and they predict the label even on a random walk.
    """
    from models.families.gate import GATE_FALLBACK

    close = ctx.bars["close"].astype(float)
    sigma = close.rolling(window).std(ddof=0)
    mean = close.rolling(window).mean()
    per_bar = close * np.log(close).diff().rolling(vol_window, min_periods=window).std()
    scale = np.log((sigma / per_bar).where(sigma > 0))
    distance = ((close - mean).abs() / sigma).where(sigma > 0)
    inputs = np.column_stack([ctx.at_rows(scale), ctx.at_rows(distance)])
    out = {"label_scale_logit": _binary_proba(_logistic(ctx, inputs))}
    fallback = _fallback_approves(GATE_FALLBACK, ctx)
    if fallback is not None:
        out["fallback_rule"] = _binary_proba(0.25 + 0.5 * fallback)
    return out


# -- anomaly -----------------------------------------------------------------------------

def _robust_z(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    reference = values[train][np.isfinite(values[train])]
    if not len(reference):
        return np.zeros(len(values))
    median = float(np.median(reference))
    mad = float(np.median(np.abs(reference - median))) * 1.4826
    return np.abs(values - median) / mad if mad > 0 else np.zeros(len(values))


def anomaly_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """The larger robust z-score (median and MAD of the training rows) of log volume and of the bar's range."""
    bars = ctx.bars
    log_range = ctx.at_rows(np.log((bars["high"] - bars["low"]).clip(lower=0) / bars["close"] + 1e-12))
    scores = [_robust_z(log_range, ctx.train_idx)]
    if "volume" in bars and float(bars["volume"].abs().sum()) > 0:
        scores.append(_robust_z(ctx.at_rows(np.log1p(bars["volume"].clip(lower=0))), ctx.train_idx))
    score = np.nan_to_num(np.maximum.reduce(scores))
    return {"robust_z_volume_range": score[ctx.holdout_idx]}


# -- trade quality -----------------------------------------------------------------------

def trade_quality_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Expected R from the training win rate: ``p·mean(R | win) + (1 − p)·mean(R | loss)``."""
    r = np.asarray(ctx.y[ctx.train_idx], dtype=np.float64)
    wins = r > 0
    p = float(wins.mean()) if len(r) else 0.0
    expected = (p * float(r[wins].mean()) if wins.any() else 0.0) + \
        ((1 - p) * float(r[~wins].mean()) if (~wins).any() else 0.0)
    return {"training_win_rate": np.full(len(ctx.holdout_idx), expected)}


# -- chart pattern -----------------------------------------------------------------------

def chart_pattern_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """:func:`models.families.chart_pattern.chart_pattern_rules` on the context's OHLCV windows."""
    from models.families.chart_pattern import chart_pattern_rules as rules

    if ctx.windows is None:
        raise ValueError("chart_pattern's naive rules need the OHLCV windows (NaiveContext.windows)")
    return rules(ctx.windows, ctx.y, ctx.train_idx, ctx.holdout_idx)
def base_rate_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Every holdout row gets the training rows' class shares (the base rate): what a vote of
    neighbours drawn at random from the training windows would say on average."""
    classes = np.asarray(ctx.y[ctx.train_idx]).astype(int)
    shares = np.bincount(classes, minlength=int(np.max(ctx.y).astype(int)) + 1) / len(classes)
    return {"base_rate": np.tile(shares, (len(ctx.holdout_idx), 1))}
# -- sentiment ---------------------------------------------------------------------------

def sentiment_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """The no-sentiment rules: the last move's sign, and a logistic regression on every feature
    that is not a news feature (``news_*``), fitted on the training rows."""
    price_columns = [i for i, name in enumerate(ctx.feature_names) if not name.startswith("news_")]
    out = direction_rules(ctx)
    if price_columns:
        out["price_features_logit"] = _binary_proba(_logistic(ctx, np.asarray(ctx.X[:, price_columns])))
    return out


# -- liquidity ---------------------------------------------------------------------------

def _bar_positions(ctx: NaiveContext) -> np.ndarray:
    positions = ctx.bars.index.get_indexer(ctx.index)
    if (positions < 0).any():
        raise ValueError("naive rules need every dataset row among the bars")
    return positions


def _forward_sum(per_bar: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
    """``sum(per_bar[p+1 .. p+horizon])`` at each position (NaN past the end)."""
    cumulative = np.concatenate([[0.0], np.cumsum(per_bar)])
    end = positions + horizon + 1
    out = np.full(len(positions), np.nan)
    ok = end < len(cumulative)
    out[ok] = cumulative[end[ok]] - cumulative[positions[ok] + 1]
    return out


def liquidity_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """``seasonal_mean``: each future bar's volume is the training window's mean volume of its
    hour of week (UTC), summed over the horizon; ``last_day``: the volume of the last 24 hours,
    scaled to the horizon. Both in the targets' units, ln(1 + volume)."""
    if not ctx.target_horizons or not ctx.bar_hours > 0:
        raise ValueError("liquidity rules need the targets' horizons in bars and the bar length (NaiveContext)")
    volume = ctx.bars["volume"].to_numpy(dtype=np.float64)
    index = ctx.bars.index
    slot = np.asarray(index.dayofweek * 24 + index.hour)
    positions = _bar_positions(ctx)
    first, last = positions[ctx.train_idx[0]], positions[ctx.train_idx[-1]]
    in_train = np.zeros(len(volume), dtype=bool)
    in_train[first:last + 1] = True  # bars of the training window only: none after its last row
    overall = float(volume[in_train].mean())
    slot_mean = pd.Series(volume[in_train]).groupby(slot[in_train]).mean()
    seasonal = pd.Series(slot).map(slot_mean).fillna(overall).to_numpy(dtype=np.float64)
    hold = positions[ctx.holdout_idx]
    per_day = max(1, int(round(24.0 / ctx.bar_hours)))
    cumulative = np.concatenate([[0.0], np.cumsum(volume)])
    start = np.maximum(hold + 1 - per_day, 0)
    last_day = (cumulative[hold + 1] - cumulative[start]) * per_day / (hold + 1 - start)
    seasonal_out = np.column_stack([np.log1p(_forward_sum(seasonal, hold, h)) for h in ctx.target_horizons])
    last_out = np.column_stack([np.log1p(last_day * h / per_day) for h in ctx.target_horizons])
    return {"seasonal_mean": seasonal_out, "last_day": last_out}


# -- returns -----------------------------------------------------------------------------

def train_mean_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Every holdout row gets the training rows' mean of each target."""
    y = np.asarray(ctx.y[ctx.train_idx], dtype=np.float64)
    mean = y.mean(axis=0)
    return {"train_mean": np.tile(mean, (len(ctx.holdout_idx), 1)) if y.ndim == 2
            else np.full(len(ctx.holdout_idx), float(mean))}


def returns_rules(ctx: NaiveContext) -> dict[str, np.ndarray]:
    """The returns family: the training mean of each target for its multi-output regressors
    (``y`` of shape ``[n, targets]``), the last move's sign for its three-class direction spec."""
    return train_mean_rules(ctx) if np.ndim(ctx.y) == 2 else direction_rules(ctx)


RULES_BY_FAMILY: dict[str, NaiveRules] = {
    "direction": direction_rules,
    "sequence": direction_rules,
    "ensemble": direction_rules,
    "momentum": momentum_rules,
    "regime": regime_rules,
    "volatility": volatility_rules,
    "risk": risk_rules,
    "gate": gate_rules,
    "anomaly": anomaly_rules,
    "trade_quality": trade_quality_rules,
    "chart_pattern": chart_pattern_rules,
    "pattern_similarity": base_rate_rules,
    "correlation_regime": correlation_regime_rules,
    "sentiment": sentiment_rules,
    "liquidity": liquidity_rules,
    "returns": returns_rules,
}


def naive_predictions(family: str, ctx: NaiveContext) -> dict[str, np.ndarray]:
    """Every naive rule of ``family`` on the holdout rows; a family without rules has none."""
    rules = RULES_BY_FAMILY.get(family)
    return rules(ctx) if rules else {}
