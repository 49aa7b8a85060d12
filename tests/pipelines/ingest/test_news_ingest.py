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
