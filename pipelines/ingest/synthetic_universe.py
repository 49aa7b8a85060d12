"""A seeded synthetic universe of correlated assets whose correlation regime switches at recorded times.

``SyntheticUniverse(seed=...).generate()`` returns a :class:`UniverseSample`:

- ``bars``: one canonical OHLCV frame per member (UTC ``ts`` index), ready for
  ``pipelines.ingest.ingestion.ingest``;
- ``regimes``: the true regime name of every bar (``tight``, ``normal`` or ``dispersed``);
- ``switches``: one row per regime switch at the first bar of the new regime (columns ``ts``,
  ``type`` = ``correlation_switch_to_<regime>``, ``n_bars`` = how long the new regime lasts),
  the ground truth that validation reads back from the warehouse's ``market_events``.

The process is a one-factor model. Member i's standardized return is
``β_i f_t + sqrt(1 - β_i²) e_it`` with a common factor f and idiosyncratic e, both Student-t
scaled to unit variance, so the correlation of members i and j is ``β_i β_j``. The loading
level follows a sticky chain over three regimes (default loadings 0.85 / 0.6 / 0.25, i.e. pair
correlations near 0.72 / 0.36 / 0.06), each lasting at least ``min_regime_bars`` bars plus a
geometric number with mean ``mean_regime_bars - min_regime_bars``, and switching to one of the
other regimes uniformly. Each member's loading is the level plus a fixed offset drawn once in
±``loading_spread``; its volatility is drawn once in ``sigma_range`` and is 30% higher in the
tight regime (stress). OHLC is valid: high ≥ max(open, close), low ≤ min(open, close).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from features.correlation import REGIME_NAMES, SWITCH_EVENT_PREFIX
from pipelines.universes import SYNTHETIC_UNIVERSE_ASSETS, SYNTHETIC_UNIVERSE_BARS, SYNTHETIC_UNIVERSE_SEED


@dataclass(frozen=True)
class UniverseSample:
    bars: dict[str, pd.DataFrame]
    regimes: pd.Series
    switches: pd.DataFrame


def _regime_path(rng: np.random.Generator, n: int, mean_bars: float, min_bars: int) -> np.ndarray:
    """Regime index per bar: segments of ``min_bars`` + geometric length, each a different regime."""
    extra = max(mean_bars - min_bars, 1.0)
    states, lengths, total = [int(rng.integers(0, 3))], [], 0
    while total < n:
        length = int(min_bars + rng.geometric(1.0 / extra) - 1)
        lengths.append(length)
        total += length
        states.append((states[-1] + int(rng.integers(1, 3))) % 3)
    return np.repeat(states[:len(lengths)], lengths)[:n]


@dataclass
class SyntheticUniverse:
    """A seeded simulator of a correlated universe; see the module doc."""

    seed: int = 0
    n_assets: int = 12
    n_bars: int = 5000
    start: str = "2000-01-01"
    freq: str = "1D"
    symbol_prefix: str = "SYNU"
    loadings: tuple[float, float, float] = (0.85, 0.6, 0.25)  # tight, normal, dispersed
    loading_spread: float = 0.05
    mean_regime_bars: float = 200.0
    min_regime_bars: int = 100
    sigma_range: tuple[float, float] = (0.01, 0.02)
    tail_df: float = 5.0

    def symbols(self) -> list[str]:
        return [f"{self.symbol_prefix}{i:02d}" for i in range(self.n_assets)]

    def generate(self) -> UniverseSample:
        """The same seed always gives the same sample."""
        n, m = int(self.n_bars), int(self.n_assets)
        if m < 2:
            raise ValueError(f"n_assets must be at least 2, got {m}")
        if n < 2 * self.min_regime_bars:
            raise ValueError(f"n_bars must be at least 2 * min_regime_bars = {2 * self.min_regime_bars}, got {n}")
        if not all(0.0 <= b < 1.0 for b in self.loadings) or not 0 <= self.loading_spread < 0.15:
            raise ValueError("loadings must lie in [0, 1) and loading_spread in [0, 0.15)")
        rng = np.random.default_rng(self.seed)
        ts = pd.date_range(self.start, periods=n, freq=self.freq, tz="UTC", name="ts")
        regime = _regime_path(rng, n, self.mean_regime_bars, self.min_regime_bars)
        offsets = rng.uniform(-self.loading_spread, self.loading_spread, m)
        beta = np.clip(np.asarray(self.loadings)[regime][:, None] + offsets[None, :], 0.0, 0.99)  # [n, m]
        scale = np.sqrt(self.tail_df / (self.tail_df - 2.0))
        factor = rng.standard_t(self.tail_df, n) / scale
        idio = rng.standard_t(self.tail_df, (n, m)) / scale
        standardized = beta * factor[:, None] + np.sqrt(1.0 - beta ** 2) * idio
        sigma = rng.uniform(*self.sigma_range, m)[None, :] * np.where(regime == 0, 1.3, 1.0)[:, None]
        log_ret = sigma * standardized
        log_ret[0] = 0.0
        close = 100.0 * np.exp(np.cumsum(log_ret, axis=0))
        open_ = np.vstack([close[:1], close[:-1]])
        wick = np.abs(rng.standard_normal((2, n, m))) * 0.5 * sigma
        high = np.maximum(open_, close) * np.exp(wick[0])
        low = np.minimum(open_, close) * np.exp(-wick[1])
        volume = 1e6 * rng.lognormal(0.0, 0.3, (n, m)) * (1.0 + 20.0 * np.abs(log_ret))
        bars = {symbol: pd.DataFrame({"open": open_[:, i], "high": high[:, i], "low": low[:, i],
                                      "close": close[:, i], "volume": volume[:, i]}, index=ts)
                for i, symbol in enumerate(self.symbols())}
        starts = np.flatnonzero(np.diff(regime)) + 1
        ends = np.append(starts[1:], n)
        switches = pd.DataFrame({"ts": ts[starts],
                                 "type": [SWITCH_EVENT_PREFIX + REGIME_NAMES[regime[s]] for s in starts],
                                 "n_bars": (ends - starts).astype(int)})
        regimes = pd.Series(np.asarray(REGIME_NAMES)[regime], index=ts, name="correlation_regime")
        return UniverseSample(bars=bars, regimes=regimes, switches=switches)


@lru_cache(maxsize=2)
def synthetic_universe_sample(seed: int = SYNTHETIC_UNIVERSE_SEED) -> UniverseSample:
    """The ``UNIV_SYN`` sample (generated once per process): bars per member and the recorded switches."""
    return SyntheticUniverse(seed=seed, n_assets=SYNTHETIC_UNIVERSE_ASSETS, n_bars=SYNTHETIC_UNIVERSE_BARS,
                             symbol_prefix="SYNU").generate()
