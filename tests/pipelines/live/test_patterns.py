"""The warehouse's pattern library: idempotent writes, cosine / L2 search, outcome aggregation,
history and trade windows embedded by a pattern bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import get_settings
from warehouse import open_warehouse

TENANT = "default"
WINDOW, N_FEATURES = 4, 5


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_writes_are_idempotent_and_search_finds_the_nearest(alphaops_home):
    ts = pd.date_range("2024-01-01", periods=300, freq="1min", tz="UTC")
    emb = unit_rows(300, 16, seed=1)
    outcomes = np.arange(300) % 3
    key = {"tenant": TENANT, "library": "lib-a@v1", "symbol": "PAT", "timeframe": "1m"}
    with open_warehouse(get_settings()) as w:
        write = lambda rows: w.write_pattern_windows(  # noqa: E731
            **key, ts=ts[rows], embeddings=emb[rows], outcomes=outcomes[rows],
            forward_returns=np.linspace(-1, 1, 300)[rows], horizon=1, source="history")
        assert write(slice(0, 200)) == 200
        assert write(slice(0, 200)) == 0  # the same windows again: nothing new
        assert write(slice(150, 300)) == 100  # overlap skipped, the rest appended
        assert w.count_pattern_windows(tenant=TENANT, library="lib-a@v1") == 300
        assert w.count_pattern_windows(tenant=TENANT, library="other@v1") == 0
        for metric in ("cosine", "l2"):
            found = w.search_patterns(tenant=TENANT, library="lib-a@v1", embedding=emb[42], limit=5, metric=metric)
            assert len(found) == 5 and pd.Timestamp(found["ts"].iloc[0]) == ts[42]
            assert found["distance"].iloc[0] == pytest.approx(0.0, abs=1e-5)
            assert found["distance"].is_monotonic_increasing
        expected = np.argsort(-(emb @ emb[42]), kind="stable")[:10]
        found = w.search_patterns(tenant=TENANT, library="lib-a@v1", embedding=emb[42], limit=10)
        assert set(pd.DatetimeIndex(found["ts"]).tz_convert("UTC")) == set(ts[expected])
        summary = w.aggregate_pattern_outcomes(tenant=TENANT, library="lib-a@v1", embedding=emb[42], limit=10)
        assert summary["n"].sum() == 10 and summary["share"].sum() == pytest.approx(1.0)
        assert dict(zip(summary["outcome"], summary["n"])) == dict(zip(*np.unique(outcomes[expected],
                                                                                  return_counts=True)))
        with pytest.raises(ValueError, match="finite"):
            w.search_patterns(tenant=TENANT, library="lib-a@v1", embedding=[np.nan] * 16)
        with pytest.raises(ValueError, match="metric"):
            w.search_patterns(tenant=TENANT, library="lib-a@v1", embedding=emb[0], metric="dot")
        with pytest.raises(ValueError, match="one embedding row"):
            w.write_pattern_windows(**key, ts=ts[:3], embeddings=emb[:2], outcomes=outcomes[:3],
                                    forward_returns=np.zeros(3), horizon=1, source="history")


def test_hnsw_copy_answers_like_the_exact_search(alphaops_home):
    ts = pd.date_range("2024-02-01", periods=2000, freq="1min", tz="UTC")
    emb = unit_rows(2000, 8, seed=2)
    with open_warehouse(get_settings()) as w:
        w.write_pattern_windows(tenant=TENANT, library="lib-h@v1", symbol="PATH", timeframe="1m", ts=ts,
                                embeddings=emb, outcomes=np.zeros(2000, dtype=int), forward_returns=np.zeros(2000),
                                horizon=1, source="history")
        table = w.create_hnsw_copy(tenant=TENANT, library="lib-h@v1", dim=8, name="test_pattern_hnsw")
        try:
            exact = w.search_patterns(tenant=TENANT, library="lib-h@v1", embedding=emb[5], limit=10)
            approx = w.search_patterns(tenant=TENANT, library="lib-h@v1", embedding=emb[5], limit=10, table=table)
            assert pd.Timestamp(approx["ts"].iloc[0]) == ts[5]
            overlap = len(set(exact["ts"]) & set(approx["ts"])) / 10
            assert overlap >= 0.8, overlap  # HNSW is approximate; on 2,000 rows it finds nearly all
        finally:
            w.drop_table(table)


@pytest.fixture(scope="module")
def pattern_bundle(tmp_path_factory):
    """A small pattern_similarity bundle over features f0..f4 (windows of 4 bars)."""
    from models.bundle import spec_schema, write_bundle
    from models.catalog import spec_by_name
    from models.families.pattern_similarity import PatternSimilarityModel

    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, WINDOW, N_FEATURES)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    model = PatternSimilarityModel(embedding_dim=8, hidden_size=8, k=10, epochs=2, library_size=100).fit(X, y)
    spec = spec_by_name("pattern_similarity_h1")
    schema = spec_schema(spec, feature_set_version="fs-pat", features=[f"f{i}" for i in range(N_FEATURES)],
                         model={"name": "default.pattern_similarity_h1.PATL", "version": "3"})
    schema["window"] = WINDOW
    schema["input"]["shape"] = ["batch", WINDOW, N_FEATURES]
    schema.update(model.bundle_schema())
    return write_bundle(tmp_path_factory.mktemp("patlive") / "bundle", model.to_onnx(), schema)


def test_history_and_trade_windows_then_find_and_aggregate(alphaops_home, pattern_bundle):
    from pipelines.live.patterns import (
        PatternEmbedder,
        add_trade_windows,
        aggregate_pattern_outcomes,
        find_similar_patterns,
        index_pattern_history,
    )

    embedder = PatternEmbedder(pattern_bundle)
    assert embedder.library == "default.pattern_similarity_h1.PATL@v3" and embedder.horizon == 1
    idx = pd.date_range("2024-03-01", periods=120, freq="1min", tz="UTC", name="ts")
    rng = np.random.default_rng(6)
    feats = pd.DataFrame(rng.standard_normal((120, N_FEATURES)), index=idx, columns=[f"f{i}" for i in range(5)])
    feats.iloc[50, 2] = np.nan  # windows holding this bar are skipped
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, 120)))
    bars = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": 1.0}, index=idx)
    label = pd.DataFrame({embedder.label: np.r_[rng.integers(0, 3, 119).astype(float), np.nan]}, index=idx)
    key = {"tenant": TENANT, "symbol": "PATL", "timeframe": "1m"}
    with open_warehouse(get_settings()) as w:
        w.write_bars(bars, source="test", ingest_id="pat", **key)
        w.write_features(feats, feature_set_version="fs-pat", **key)
        w.write_labels(label, **key)
        first = index_pattern_history(w, embedder, feature_set_version="fs-pat", **key)
        # 117 windows of 4 bars; 4 hold the NaN bar; the last bar has no outcome yet
        assert first == 117 - 4 - 1
        assert index_pattern_history(w, embedder, feature_set_version="fs-pat", **key) == 0
        trades = pd.DataFrame({"entry_ts": [idx[30], idx[80], idx[51]], "exit_ts": [idx[35], idx[90], idx[60]],
                               "side": [1, -1, 1], "entry_price": [100.0, 100.0, 100.0],
                               "exit_price": [101.0, 99.0, 100.0]})
        assert add_trade_windows(w, embedder, trades, feature_set_version="fs-pat", **key) == 2  # idx[51]: NaN window
        assert add_trade_windows(w, embedder, trades, feature_set_version="fs-pat", **key) == 0
        stored = w.search_patterns(tenant=TENANT, library=embedder.library, embedding=np.ones(8), limit=500)
        by_source = stored.groupby("source").size().to_dict()
        assert by_source == {"history": first, "trade": 2}
        trade_rows = stored[stored["source"] == "trade"].sort_values("ts")
        assert trade_rows["outcome"].tolist() == [2, 0]  # price up: bullish; price down: bearish
        neighbours = find_similar_patterns(feats.iloc[60:64], TENANT, "PATL", limit=7, warehouse=w, embedder=embedder)
        assert len(neighbours) == 7 and pd.Timestamp(neighbours["ts"].iloc[0]) == idx[63]
        assert neighbours["distance"].iloc[0] == pytest.approx(0.0, abs=1e-5)
        summary = aggregate_pattern_outcomes(neighbours, embedder.class_names)
        assert set(summary["votes"]) == {"bearish", "neutral", "bullish"} and summary["n"] == 7
        assert sum(summary["votes"].values()) == pytest.approx(1.0)
        assert summary["votes"]["bullish"] == pytest.approx((neighbours["outcome"] == 2).mean())
        with pytest.raises(ValueError, match="window"):
            find_similar_patterns(feats.iloc[:2], TENANT, "PATL", warehouse=w, embedder=embedder)
        with pytest.raises(ValueError, match="columns"):
            add_trade_windows(w, embedder, trades.drop(columns="side"), feature_set_version="fs-pat", **key)
