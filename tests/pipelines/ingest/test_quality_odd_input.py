"""Odd input the quality gate refuses: bars whose spacing is another timeframe, boolean volumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import get_settings
from pipelines.ingest.ingestion import IngestRejected, ingest_file
from pipelines.ingest.quality import validate_bars
from pipelines.ingest.sources import OhlcvFileSource
from pipelines.ingest.synthetic import SyntheticMarket

AS_OF = pd.Timestamp("2100-01-01", tz="UTC")
DATA = Path(__file__).resolve().parents[2] / "data"
ROOT = Path(__file__).resolve().parents[3]


def _bars(n: int = 60, freq: str = "1min") -> pd.DataFrame:
    bars, _ = SyntheticMarket(seed=3, n_bars=n, freq=freq).generate()
    return bars[["open", "high", "low", "close", "volume"]].copy()


def _timeframe_failure(report) -> str:
    return next((f.detail for f in report.failures if f.rule == "timeframe"), "")


@pytest.mark.parametrize(("freq", "timeframe", "named"), [
    ("1min", "1d", "the bars are 1 min apart (median; inferred timeframe 1m) but the timeframe given is 1d (1 d)"),
    ("5min", "1m", "the bars are 5 min apart (median; inferred timeframe 5m) but the timeframe given is 1m (1 min)"),
    ("1h", "1m", "inferred timeframe 1h"),
    ("1D", "1h", "the bars are 1 d apart (median; inferred timeframe 1d) but the timeframe given is 1h (1 h)"),
])
def test_bars_of_another_timeframe_are_refused_naming_both(freq, timeframe, named) -> None:
    report = validate_bars(_bars(freq=freq), timeframe=timeframe, as_of=AS_OF)
    assert not report.ok
    assert named in _timeframe_failure(report)
    assert "FAIL timeframe: whole batch" in report.render()


def test_bars_that_fit_their_timeframe_pass() -> None:
    assert validate_bars(_bars(), timeframe="1m", as_of=AS_OF).ok
    sparse = _bars(120).iloc[::2]  # an illiquid market: a bar every other minute
    assert _timeframe_failure(validate_bars(sparse, timeframe="1m", as_of=AS_OF, max_gap_bars=10)) == ""
    daily = OhlcvFileSource(DATA / "gap_bars.csv").read()  # business days with a two-week hole
    report = validate_bars(daily, timeframe="1d", as_of=AS_OF)
    assert report.ok and "timeframe" in report.rules_checked


def test_ingest_refuses_one_minute_bars_as_daily(tmp_path: Path) -> None:
    path = tmp_path / "minutes.csv"
    _bars(200).rename_axis("ts").reset_index().to_csv(path, index=False)
    settings = get_settings()
    with pytest.raises(IngestRejected) as err:
        ingest_file(path, symbol="ODDTF", timeframe="1d", settings=settings, as_of=AS_OF)
    assert "inferred timeframe 1m" in str(err.value) and "timeframe given is 1d" in str(err.value)
    inferred = ingest_file(path, symbol="ODDTF", settings=settings, as_of=AS_OF)
    assert inferred.timeframe == "1m" and inferred.rows_written == 200


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_a_boolean_volume_column_is_refused(tmp_path: Path, suffix: str) -> None:
    frame = _bars().rename_axis("ts").reset_index()
    frame["volume"] = frame["volume"] > frame["volume"].median()
    path = tmp_path / f"bool_volume.{suffix}"
    frame.to_parquet(path) if suffix == "parquet" else frame.to_csv(path, index=False)
    report = validate_bars(OhlcvFileSource(path).read(), timeframe="1m", as_of=AS_OF)
    assert not report.ok
    (failure,) = report.failures
    assert failure.rule == "schema.dtype" and failure.rows == len(frame)
    assert failure.detail == "column 'volume' holds booleans (true/false), not numbers"
    assert failure.examples[0]["volume"] in (True, False)


def test_cli_ingest_names_the_timeframe_problem(tmp_path: Path, alphaops_home: Path) -> None:
    path = tmp_path / "minutes.csv"
    _bars(100).rename_axis("ts").reset_index().to_csv(path, index=False)
    cli = Path(sys.executable).with_name("alphaops")
    result = subprocess.run([str(cli), "ingest", str(path), "--symbol", "ODDCLI", "--timeframe", "1d"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "FAIL timeframe" in result.stderr and "inferred timeframe 1m" in result.stderr
    bad = subprocess.run([str(cli), "ingest", str(path), "--symbol", "", "--timeframe", "1m"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --symbol '' is not a symbol: use 1-32 letters, digits, '_' or '-' (starting with a letter or digit)"]
