"""models.head_scorer and models.text_sentiment's scorer choice: what runs without the 'text' extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from models.head_scorer import HeadScorer, SentimentHeadError, current_head_dir, heads_root, scorer_for
from models.text_sentiment import SCORER_NAME, VaderScorer, score_headlines
from pipelines.config import get_settings


def _settings(tmp_path: Path, scorer: str = "minilm"):
    return get_settings(home=tmp_path, clickhouse_url=None, news_scorer=scorer)


def test_every_scored_headline_names_its_scorer_and_a_user_label_is_not_a_score(tmp_path: Path) -> None:
    frame = pd.DataFrame({"headline": ["Token soars after record partnership", "Exchange hacked, wallets drained"],
                          "label": ["very bearish", "very bullish"]})  # deliberately the wrong way round
    scored = score_headlines(frame)
    assert scored["scorer"].tolist() == [SCORER_NAME] * 2
    assert scored["label"].tolist() == ["very bullish", "very bearish"]  # VADER's, not the user's
    assert isinstance(scorer_for(_settings(tmp_path, "vader")), VaderScorer)


def test_minilm_without_the_extra_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # an import of it now fails as if not installed
    with pytest.raises(SentimentHeadError, match=r"pip install 'alphaops\[text\]'.*ALPHAOPS_NEWS_SCORER=vader"):
        scorer_for(_settings(tmp_path))


def test_minilm_without_an_adopted_head_refuses_and_names_the_command(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers", reason="the optional 'text' extra (pip install 'alphaops[text]') is absent")
    with pytest.raises(SentimentHeadError, match="alphaops sentiment train-head"):
        scorer_for(_settings(tmp_path))


def test_a_broken_head_refuses_naming_what_is_wrong(tmp_path: Path) -> None:
    pytest.importorskip("tokenizers", reason="the optional 'text' extra (pip install 'alphaops[text]') is absent")
    settings = _settings(tmp_path)
    root = heads_root(settings)
    root.mkdir(parents=True)
    (root / "current.json").write_text("{not json")
    with pytest.raises(SentimentHeadError, match="not a head pointer"):
        current_head_dir(settings)
    (root / "current.json").write_text(json.dumps({"version": "head-x"}))
    head = root / "head-x"
    head.mkdir()
    with pytest.raises(SentimentHeadError, match="lacks model.onnx, tokenizer.json, head.json"):
        scorer_for(settings)
    (head / "head.json").write_text(json.dumps({"scorer": "minilm-l6-v2+head-x", "labels": ["very bearish", "bearish",
                                                "neutral", "bullish", "very bullish"]}))
    (head / "tokenizer.json").write_text("{}")
    (head / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(SentimentHeadError, match="minilm-l6-v2[+]head-x cannot be loaded"):
        HeadScorer(head)
