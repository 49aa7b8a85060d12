"""The sentiment family: headline scorer, the synthetic news market, the estimator, its ONNX and bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from models.families.sentiment import FILTER_FEATURE, FILTER_THRESHOLD, SentimentClassifier
from models.onnx_export import run_onnx
from models.text_sentiment import LABELS, event_flags, label_of, score_headlines


@pytest.fixture(scope="module")
def news_market() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from pipelines.ingest.synthetic_news import NewsMarket

    return NewsMarket(seed=5, n_bars=8000).generate()


@pytest.fixture(scope="module")
def dataset(news_market: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.Series]:
    """Bar and news features (finite columns after the warm-up) and ``dir_up_h10``."""
    import features
    from features.labels import direction_up
    from features.news import news_features

    bars, _, headlines = news_market
    frame = pd.concat([features.compute(bars),
                       news_features(score_headlines(headlines), bars.index, bars.index[-1] + pd.Timedelta("1min"))],
                      axis=1).iloc[features.WARMUP:]
    frame = frame.loc[:, np.isfinite(frame.to_numpy()).all(axis=0)]
    y = direction_up(bars, horizon=10).reindex(frame.index)
    keep = y.notna().to_numpy()
    return frame[keep], y[keep].astype(int)


def test_scorer_labels_and_event_flags() -> None:
    scored = score_headlines(pd.DataFrame({"headline": [
        "Token plunges after exchange hack drains wallets",
        "Token soars as Coinbase confirms listing",
        "Exchange to delist token after regulatory crackdown",
        "Token trades flat ahead of the weekly report",
        "Regulator sues exchange; court date set",
        "Token gains after partnership with Visa",
    ]}))
    assert scored["score"].between(-1, 1).all()
    assert list(scored["label"]) == ["very bearish", "very bullish", "very bearish", "neutral", "bearish",
                                     "very bullish"]
    assert scored[["event_hack", "event_listing", "event_delisting", "event_lawsuit", "event_partnership"]
                  ].to_numpy().tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0],
                                            [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert scored["event_regulation"].tolist() == [0, 0, 1, 0, 1, 0]
    assert event_flags(["delisting"])["event_listing"].item() == 0  # whole words only


def test_label_edges_and_bad_input() -> None:
    assert list(label_of([-1.0, -0.6, -0.59, -0.2, -0.19, 0.19, 0.2, 0.59, 0.6, 1.0])) == [
        LABELS[0], LABELS[0], LABELS[1], LABELS[1], LABELS[2], LABELS[2], LABELS[3], LABELS[3], LABELS[4], LABELS[4]]
    with pytest.raises(ValueError, match="finite"):
        label_of([np.nan])
    with pytest.raises(ValueError, match="'headline' column"):
        score_headlines(pd.DataFrame({"title": ["x"]}))


def test_price_reacts_only_after_the_headline_bar(news_market: tuple[pd.DataFrame, ...]) -> None:
    from pipelines.ingest.synthetic import SyntheticMarket

    bars, _, headlines = news_market
    base, _ = SyntheticMarket(seed=5, n_bars=8000).generate()
    reaction = np.diff(np.log(bars["close"].to_numpy() / base["close"].to_numpy()), prepend=0.0)
    at_bar = bars.index.searchsorted(headlines["ts"], side="right") - 1
    first = int(np.flatnonzero(headlines["tone"].to_numpy() != 0)[0])
    i, tone = at_bar[first], headlines["tone"].iloc[first]
    assert np.allclose(reaction[:i + 1], 0.0, atol=1e-12)  # nothing before or inside the headline's bar
    assert np.sign(reaction[i + 1]) == np.sign(tone)
    assert reaction[i + 1] == pytest.approx(tone * 1.0 * 8e-4, rel=1e-6)  # impact · sigma
    ok = (bars["high"] >= bars[["open", "close"]].max(axis=1)) & (bars["low"] <= bars[["open", "close"]].min(axis=1))
    assert ok.all()
    fwd = np.log(bars["close"]).shift(-10).to_numpy() - np.log(bars["close"]).to_numpy()
    for sign in (-1.0, 1.0):
        rows = at_bar[headlines["tone"].to_numpy() == sign]
        assert np.sign(np.nanmean(fwd[rows])) == sign


def test_estimator_contract_and_missing_filter_feature(dataset: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = dataset
    model = SentimentClassifier(feature_names=tuple(X.columns))
    with pytest.raises(NotFittedError):
        model.predict_proba(X.to_numpy(np.float32))
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(ValueError, match=FILTER_FEATURE):
        SentimentClassifier(feature_names=("a", "b")).fit(np.zeros((10, 2)), np.arange(10) % 2)


def test_onnx_parity_and_risk_filter(dataset: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = dataset
    values = X.to_numpy(np.float32)
    model = SentimentClassifier(feature_names=tuple(X.columns)).fit(values[:4000], y.to_numpy()[:4000])
    label, proba, block = run_onnx(model.to_onnx(), values[4000:])
    assert np.abs(proba - model.predict_proba(values[4000:])).max() < 1e-5
    assert block.shape == (len(values) - 4000, 1)
    expected = (X[FILTER_FEATURE].to_numpy()[4000:] <= FILTER_THRESHOLD).astype(np.float32)
    assert np.array_equal(block[:, 0], expected) and 0 < expected.sum() < len(expected)
    one = run_onnx(model.to_onnx(), values[4000:4001])
    assert one[2].shape == (1, 1)


def test_headlines_beat_the_price_only_rule_out_of_sample(dataset: tuple[pd.DataFrame, pd.Series]) -> None:
    """On the synthetic news market the model beats the family's naive rules on a purged holdout."""
    from models.naive import NaiveContext, sentiment_rules

    X, y = dataset
    n = len(y)
    train, hold = np.arange(0, int(n * 0.7) - 10), np.arange(int(n * 0.7), n)
    values = X.to_numpy(np.float32)
    model = SentimentClassifier(feature_names=tuple(X.columns)).fit(values[train], y.to_numpy()[train])
    auc = roc_auc_score(y.to_numpy()[hold], model.predict_proba(values[hold])[:, 1])
    from pipelines.ingest.synthetic_news import NewsMarket

    bars = NewsMarket(seed=5, n_bars=8000).generate()[0]
    ctx = NaiveContext(bars=bars, index=X.index, y=y.to_numpy(), X=values, feature_names=list(X.columns),
                       train_idx=train, holdout_idx=hold, horizon=10)
    rules = {name: roc_auc_score(y.to_numpy()[hold], p[:, 1]) for name, p in sentiment_rules(ctx).items()}
    assert set(rules) == {"last_return_sign", "price_features_logit"}
    assert auc > max(rules.values()) + 0.03, (auc, rules)


def test_naive_rule_sees_no_headline(dataset: tuple[pd.DataFrame, pd.Series]) -> None:
    """A news column that is the label itself would make any rule that reads it perfect."""
    from models.naive import NaiveContext, sentiment_rules

    X, y = dataset
    leaky = X[[c for c in X.columns if not c.startswith("news_")][:20] + ["news_count_30"]].copy()
    leaky["news_leak"] = y.to_numpy().astype(float)
    n = len(y)
    train, hold = np.arange(0, n // 2), np.arange(n // 2 + 10, n)
    ctx = NaiveContext(bars=pd.DataFrame({"close": np.ones(n)}, index=X.index), index=X.index, y=y.to_numpy(),
                       X=leaky.to_numpy(np.float32), feature_names=list(leaky.columns), train_idx=train,
                       holdout_idx=hold, horizon=10)
    auc = roc_auc_score(y.to_numpy()[hold], sentiment_rules(ctx)["price_features_logit"][:, 1])
    assert auc < 0.8


def test_bundle_answers_in_serving(dataset: tuple[pd.DataFrame, pd.Series], tmp_path) -> None:
    import serving
    from models.bundle import spec_schema, write_bundle
    from models.catalog import spec_by_name

    X, y = dataset
    values = X.to_numpy(np.float32)
    spec = spec_by_name("sentiment_h10")
    model = SentimentClassifier(feature_names=tuple(X.columns)).fit(values[:3000], y.to_numpy()[:3000])
    schema = spec_schema(spec, model={"name": "t.sentiment_h10.SYN", "version": "1"},
                         feature_set_version="fs-1.1+news-1", features=list(X.columns))
    assert schema["thresholds"]["block_long_sentiment"] == FILTER_THRESHOLD
    assert schema["risk_filter"]["feature"] == FILTER_FEATURE
    predictor = serving.Predictor.load(write_bundle(tmp_path / "bundle", model.to_onnx(), schema))
    row = int(np.flatnonzero(X[FILTER_FEATURE].to_numpy() <= FILTER_THRESHOLD)[0])
    answer = predictor.predict(values[row])
    assert answer.extras["block_long"] == 1.0
    assert answer.probabilities[1] == pytest.approx(model.predict_proba(values[row:row + 1])[0, 1], abs=1e-5)
