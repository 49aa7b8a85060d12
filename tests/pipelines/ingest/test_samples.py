"""The sample symbols: arch's real daily data and the synthetic markets (no warehouse)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.ingest.samples import SAMPLE_SYMBOLS, ArchSampleSource, SyntheticSource, sample_timeframe
from pipelines.ingest.sources import Source, infer_timeframe


@pytest.mark.parametrize(("symbol", "rows", "first", "single_price"), [
    ("SPX", 5031, "1999-01-04", False),
    ("NASDAQ", 5031, "1999-01-04", False),
    ("VIX", 1259, "2014-01-03", True),   # 1305 days, 46 without a print dropped
    ("WTI", 8321, "1986-01-02", True),   # 8611 days, 290 without a print dropped
    ("CRUDE", 393, "1987-05-15", True),  # monthly Brent
])
def test_arch_samples(symbol: str, rows: int, first: str, single_price: bool) -> None:
    source = SAMPLE_SYMBOLS[symbol]()
    assert isinstance(source, ArchSampleSource) and isinstance(source, Source)
    bars = source.read()
    assert len(bars) == rows
    assert bars.index[0] == pd.Timestamp(first, tz="UTC")
    assert bars.index.is_monotonic_increasing and bars.index.is_unique
    assert not bars.isna().any().any()
    assert (bars[["open", "high", "low", "close"]] > 0).all().all()
    if single_price:
        assert (bars["open"] == bars["close"]).all() and (bars["high"] == bars["low"]).all()
        assert (bars["volume"] == 0).all()
    else:
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
        assert bars["volume"].ge(0).all() and bars["volume"].gt(0).mean() > 0.99  # NASDAQ: 2 days print 0
    assert infer_timeframe(bars.index) == sample_timeframe(symbol)


def test_sample_symbols_and_timeframes() -> None:
    universe_members = {f"SYNU{i:02d}" for i in range(12)}  # the synthetic correlation universe UNIV_SYN
    assert set(SAMPLE_SYMBOLS) == {"SPX", "NASDAQ", "VIX", "WTI", "CRUDE", "SYN1", "SYN2", "SYNNEWS", "SYNLIQ"} | universe_members
    assert sample_timeframe("SPX") == "1d" and sample_timeframe("SYN2") == "1m" and sample_timeframe("SYNU03") == "1d"
    assert sample_timeframe("SYNNEWS") == "1m"
    assert sample_timeframe("SYNLIQ") == "15m"
    with pytest.raises(ValueError, match="unknown sample symbol 'ABC'.*SPX"):
        sample_timeframe("ABC")
    syn1, syn2 = SAMPLE_SYMBOLS["SYN1"](), SAMPLE_SYMBOLS["SYN2"]()
    assert isinstance(syn1, SyntheticSource) and syn1.seed != syn2.seed
    small = SyntheticSource(seed=1, n_bars=500)
    bars = small.read()
    assert len(bars) == 500 and infer_timeframe(bars.index) == "1m"
    assert {"buy_volume", "spread", "funding_rate"} <= set(bars.columns)
    assert list(small.events().columns) == ["ts", "type", "n_bars"]
