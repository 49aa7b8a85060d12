"""Bundled sample data and the synthetic markets, by symbol: ``SAMPLE_SYMBOLS`` and their timeframes.

arch's real daily samples (SPX, NASDAQ, VIX, WTI; CRUDE monthly), the synthetic one-minute market
(SYN1, SYN2), the synthetic correlation universe's members (SYNU00..), the headline market (SYNNEWS)
and the seasonal-volume market (SYNLIQ). Each is a ``Source`` (``pipelines.ingest.sources``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pandas as pd

from pipelines.ingest.sources import Kind, Source, columns_frame, parse_timestamps

ARCH_DATASETS = ("sp500", "nasdaq", "vix", "wti", "crude")


class ArchSampleSource:
    """Real daily market data bundled with the ``arch`` package (offline, nothing downloads).

    - ``sp500``: S&P 500 daily OHLCV, 1999-01-04 to 2018-12-31 (5031 bars). ``Adj Close`` is
      dropped: the bars are the index's own OHLC.
    - ``nasdaq``: NASDAQ Composite daily OHLCV, same dates and layout as ``sp500`` (5031 bars).
    - ``vix``: the CBOE VIX daily close, 2014 to 2019. One price column only.
    - ``wti``: WTI crude spot (FRED ``DCOILWTICO``), daily from 1986. One price column only.
    - ``crude``: Brent and WTI, **monthly** (mid-month) from 1987; the bars use Brent (WTI is
      already the ``wti`` sample), and its timeframe is ``1mo``, not ``1d``.

    For the single-price series nothing is synthesized: ``open = high = low = close = price``
    and ``volume = 0``. Days without a print (the series' holidays, NaN in the data) are
    dropped rather than filled.
    """

    kind: ClassVar[Kind] = "bars"
    _PRICE_COLUMN: ClassVar[dict[str, str]] = {"vix": "vix", "wti": "DCOILWTICO", "crude": "Brent"}

    def __init__(self, dataset: str) -> None:
        if dataset not in ARCH_DATASETS:
            raise ValueError(f"unknown arch dataset {dataset!r}; known: {', '.join(ARCH_DATASETS)}")
        self.dataset = dataset
        self.name = f"arch:{dataset}"

    def read(self) -> pd.DataFrame:
        import importlib

        raw = importlib.import_module(f"arch.data.{self.dataset}").load()
        index = parse_timestamps(raw.index)
        if self.dataset in ("sp500", "nasdaq"):
            frame = columns_frame(index, {c.lower(): raw[c].astype(float) for c in ["Open", "High", "Low", "Close", "Volume"]})
        else:
            price = raw[self._PRICE_COLUMN[self.dataset]].astype(float).to_numpy()
            frame = columns_frame(index, {"open": price, "high": price, "low": price, "close": price,
                                   "volume": np.zeros(len(price))})
        return frame[frame["close"].notna()]


class SyntheticSource:
    """Bars from ``pipelines.ingest.synthetic.SyntheticMarket``; ``events()`` gives its anomalies."""

    kind: ClassVar[Kind] = "bars"

    def __init__(self, seed: int, n_bars: int = 30_000, **market_kwargs: object) -> None:
        self.seed = seed
        self.n_bars = n_bars
        self.market_kwargs = market_kwargs
        self.name = f"synthetic:seed={seed}"
        self._cache: tuple[pd.DataFrame, pd.DataFrame] | None = None

    def _generate(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self._cache is None:
            from pipelines.ingest.synthetic import SyntheticMarket

            market = SyntheticMarket(seed=self.seed, n_bars=self.n_bars, **self.market_kwargs)  # type: ignore[arg-type]
            self._cache = market.generate()
        return self._cache

    def read(self) -> pd.DataFrame:
        return self._generate()[0].copy()

    def events(self) -> pd.DataFrame:
        return self._generate()[1].copy()


class UniverseMemberSource:
    """One member's bars of the synthetic universe ``UNIV_SYN``; ``events()`` gives the universe's
    recorded correlation-regime switches, stored under ``events_symbol`` (the universe's name)."""

    kind: ClassVar[Kind] = "bars"
    events_symbol = "UNIV_SYN"

    def __init__(self, member: str) -> None:
        from pipelines.universes import synthetic_universe_members

        if member not in synthetic_universe_members():
            raise ValueError(f"{member!r} is not a member of UNIV_SYN")
        self.member = member
        self.name = f"synthetic-universe:{member}"

    def read(self) -> pd.DataFrame:
        from pipelines.ingest.synthetic_universe import synthetic_universe_sample

        return synthetic_universe_sample().bars[self.member].copy()

    def events(self) -> pd.DataFrame:
        from pipelines.ingest.synthetic_universe import synthetic_universe_sample

        return synthetic_universe_sample().switches.copy()


def _liquidity_market() -> pd.DataFrame:
    from pipelines.ingest.synthetic import liquidity_market

    return liquidity_market(seed=11, days=180, freq="15min")


def _universe_members() -> dict[str, Callable[[], Source]]:
    from pipelines.universes import synthetic_universe_members

    return {m: (lambda m=m: UniverseMemberSource(m)) for m in synthetic_universe_members()}


class SyntheticNewsSource(SyntheticSource):
    """Bars from ``pipelines.ingest.synthetic_news.NewsMarket`` (a synthetic market whose price
    reacts to its headlines); ``headlines()`` gives the headlines, ``events()`` the anomalies."""

    def __init__(self, seed: int, n_bars: int = 20_000, **news_kwargs: object) -> None:
        super().__init__(seed, n_bars)
        self.news_kwargs = news_kwargs
        self.name = f"synthetic-news:seed={seed}"
        self._news: pd.DataFrame | None = None

    def _generate(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self._cache is None:
            from pipelines.ingest.synthetic_news import NewsMarket

            bars, events, self._news = NewsMarket(seed=self.seed, n_bars=self.n_bars,
                                                  **self.news_kwargs).generate()  # type: ignore[arg-type]
            self._cache = (bars, events)
        return self._cache

    def headlines(self) -> pd.DataFrame:
        self._generate()
        assert self._news is not None
        return self._news.copy()


SAMPLE_SYMBOLS: dict[str, Callable[[], Source]] = {
    "SPX": lambda: ArchSampleSource("sp500"),
    "NASDAQ": lambda: ArchSampleSource("nasdaq"),
    "VIX": lambda: ArchSampleSource("vix"),
    "WTI": lambda: ArchSampleSource("wti"),
    "CRUDE": lambda: ArchSampleSource("crude"),
    # SYN1 carries a book-imbalance edge (0.2) strong enough that its direction_h1 model
    # survives the run's false-discovery control and deflated Sharpe (at 0.15 its deflated
    # Sharpe over the 36 trials of `make run` was 0.79); SYN2 keeps the simulator's weak edge (0.05).
    "SYN1": lambda: SyntheticSource(seed=1, n_bars=20_000, imbalance_coef=0.2),
    "SYN2": lambda: SyntheticSource(seed=2),
    # SYNU00..SYNU11: the members of the synthetic correlation universe UNIV_SYN (daily).
    **_universe_members(),
    # SYNNEWS: headlines (one per ~20 bars) whose tone moves the price after them (the sentiment family).
    "SYNNEWS": lambda: SyntheticNewsSource(seed=3, n_bars=20_000),
    # SYNLIQ: 180 days of 15-minute bars with hour-of-day, day-of-week and holiday volume seasonality
    # (pipelines.ingest.synthetic.liquidity_market): the liquidity family's synthetic market.
    "SYNLIQ": lambda: FrameSource(_liquidity_market(), name="synthetic-liquidity:seed=11"),
}

_SAMPLE_TIMEFRAMES = {"SPX": "1d", "NASDAQ": "1d", "VIX": "1d", "WTI": "1d", "CRUDE": "1mo", "SYN1": "1m", "SYN2": "1m",
                      "SYNNEWS": "1m", "SYNLIQ": "15m", **{member: "1d" for member in _universe_members()}}


def sample_timeframe(symbol: str) -> str:
    """``1d`` for the arch daily samples (SPX, NASDAQ, VIX, WTI) and the SYNU* universe members, ``1mo`` for
    CRUDE (monthly), ``1m`` for SYN1, SYN2 and SYNNEWS, ``15m`` for SYNLIQ."""
    if symbol not in _SAMPLE_TIMEFRAMES:
        raise ValueError(f"unknown sample symbol {symbol!r}; known: {', '.join(SAMPLE_SYMBOLS)}")
    return _SAMPLE_TIMEFRAMES[symbol]
