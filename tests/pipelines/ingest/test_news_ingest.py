"""Headline ingestion (``alphaops ingest FILE --kind news``): all or nothing, idempotent, corrections."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import Settings, get_settings
from pipelines.ingest.ingestion import IngestRejected
from pipelines.ingest.news import NewsFrameSource, ingest_news, ingest_news_file
from warehouse import DATABASE, open_warehouse

DATA = Path(__file__).resolve().parents[2] / "data"
AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One warehouse path for the module (chDB holds one path per process)."""
    return get_settings(home=tmp_path_factory.mktemp("news-home"), clickhouse_url=None)


def _news(settings: Settings) -> pd.DataFrame:
    with open_warehouse(settings) as wh:
        return wh.read_news(tenant=settings.tenant)


def _log(settings: Settings, ingest_id: str) -> pd.Series:
    with open_warehouse(settings) as wh:
        rows = wh.query(f"SELECT * FROM {DATABASE}.ingest_log WHERE ingest_id = {{id:String}}", {"id": ingest_id})
    assert len(rows) == 1
    return rows.iloc[0]


def test_good_file_then_again_then_a_correction(settings: Settings) -> None:
    first = ingest_news_file(DATA / "good_news.csv", settings=settings, as_of=AS_OF)
    assert (first.rows_in, first.rows_new, first.rows_written) == (4, 4, 4)
    assert first.symbols == ["ACME", "BETA"]
    stored = _news(settings)
    assert len(stored) == 4
    assert stored["ts"].iloc[0] == pd.Timestamp("2024-01-02T10:03:20Z")
    assert stored.loc[stored["symbol"] == "BETA", "source"].item() == "desk"
    assert _log(settings, first.ingest_id)["status"] == "ok"

    again = ingest_news_file(DATA / "good_news.csv", settings=settings, as_of=AS_OF)
    assert (again.rows_new, again.rows_changed, again.rows_written) == (0, 0, 0)
    assert len(_news(settings)) == 4

    # The same id with a corrected text replaces the row; the count stays the same.
    fixed = stored.iloc[[0]][["ts", "symbol", "headline", "source", "headline_id"]].copy()
    fixed["headline"] = "ACME soars after record partnership with Visa (corrected)"
    result = ingest_news(NewsFrameSource(fixed, name="fix"), settings=settings, as_of=AS_OF)
    assert (result.rows_new, result.rows_changed) == (0, 1)
    after = _news(settings)
    assert len(after) == 4
    assert after["headline"].str.endswith("(corrected)").sum() == 1


def test_bad_rows_reject_the_whole_batch_and_name_each_rule(settings: Settings) -> None:
    before = _news(settings)
    with pytest.raises(IngestRejected) as rejected:
        ingest_news_file(DATA / "bad_news_rows.csv", settings=settings, as_of=AS_OF)
    failed = {f.rule: f.rows for f in rejected.value.report.failures}
    # row 1: unparseable ts; row 2: empty symbol; row 3: after as_of; rows 0 and 4: duplicates; row 5: symbol
    assert failed == {"no_nan": 2, "ts_not_future": 1, "headline_unique": 2, "symbol_valid": 1}
    assert "FAIL ts_not_future: 1 row" in str(rejected.value)
    pd.testing.assert_frame_equal(_news(settings), before)
    log = _log(settings, rejected.value.ingest_id)
    assert (log["status"], log["kind"], int(log["rows_written"])) == ("rejected", "news", 0)
    assert "headline_unique" in log["report"]


def test_missing_column_is_named(settings: Settings) -> None:
    with pytest.raises(IngestRejected) as rejected:
        ingest_news_file(DATA / "bad_news_missing_headline.csv", settings=settings, as_of=AS_OF)
    text = str(rejected.value)
    assert "schema.missing_column" in text and "'headline'" in text


def test_symbol_option_fills_a_file_without_a_symbol_column(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "one_symbol.parquet"
    pd.DataFrame({"published_at": [1704189600000], "title": ["GAMMA rallies on approval"]}).to_parquet(path)
    result = ingest_news_file(path, settings=settings, as_of=AS_OF, symbol="GAMMA")
    assert result.symbols == ["GAMMA"] and result.rows_new == 1
    with open_warehouse(settings) as wh:
        row = wh.read_news(tenant=settings.tenant, symbol="GAMMA").iloc[0]
    assert row["ts"] == pd.Timestamp("2024-01-02T10:00:00Z") and row["source"] == "unknown"


def test_labels_and_scores_are_stored_and_bad_ones_reject_the_batch(settings: Settings) -> None:
    base = pd.Timestamp("2024-03-01T09:00:00Z")
    frame = pd.DataFrame({"ts": [base + pd.Timedelta(minutes=i) for i in range(4)], "symbol": "LAB",
                          "headline": ["LAB soars", "LAB slips", "LAB flat", "LAB unlabelled"],
                          "label": ["Very_Bullish", "", "neutral", None], "score": [None, "-0.3", "0.05", None]})
    result = ingest_news(NewsFrameSource(frame, name="labelled"), settings=settings, as_of=AS_OF)
    assert result.rows_written == 4
    with open_warehouse(settings) as wh:
        labelled = wh.read_labelled_news(tenant=settings.tenant)
    labelled = labelled[labelled["symbol"] == "LAB"]
    assert labelled["label"].tolist() == ["very bullish", "bearish", "neutral"]  # the score -0.3 is bearish

    # A relabelled headline (same id) is a change; ingesting it again is not.
    relabel = frame.iloc[[2]].assign(label="bullish", score=None)
    assert ingest_news(NewsFrameSource(relabel, name="relabel"), settings=settings, as_of=AS_OF).rows_changed == 1
    assert ingest_news(NewsFrameSource(relabel, name="relabel"), settings=settings, as_of=AS_OF).rows_written == 0

    bad = frame.assign(ts=frame["ts"] + pd.Timedelta(days=1), label=["meh", "bearish", "", ""],
                       score=[None, "-0.9", "2", None])
    with pytest.raises(IngestRejected) as caught:
        ingest_news(NewsFrameSource(bad, name="bad-labels"), settings=settings, as_of=AS_OF)
    text = caught.value.report.render()
    assert "label_valid: 3 rows" in text and "label='meh'" in text and "score='2'" in text
    assert len(_news(settings).query("symbol == 'LAB'")) == 4  # nothing of the bad batch was written


def test_a_news_table_from_before_labels_gets_the_column(settings: Settings) -> None:
    """Last in the module: it replaces the news table by one in the DDL from before labels."""
    from warehouse.schema import DDL

    old_ddl = DDL["news"].replace("label LowCardinality(String) DEFAULT '',", "")
    assert old_ddl != DDL["news"]
    with open_warehouse(settings) as wh:
        wh.command(f"DROP TABLE {DATABASE}.news")
        wh.command(old_ddl)
        wh.insert("news", pd.DataFrame({"tenant": ["default"], "symbol": ["OLD"],
                                        "ts": [pd.Timestamp("2024-01-01", tz="UTC")], "headline_id": ["x"],
                                        "headline": ["old row"], "source": ["s"], "feed": ["f"],
                                        "ingest_id": ["i"], "version": [1]}))
        wh.ensure_schema()
        stored = wh.read_news(tenant="default")
    assert stored["label"].tolist() == [""]
