"""A synthetic market with headlines whose sentiment moves the price after they appear.

``NewsMarket(seed=...).generate()`` returns ``(bars, events, headlines)``. The bars and events
are :class:`pipelines.ingest.synthetic.SyntheticMarket`'s with the same seed; on top of them:

- **Headlines** arrive at random times (on average one every ``headline_every`` bars), each
  at a uniform offset inside its bar. Each has a latent tone ``s`` in {-1, -0.5, 0, +0.5, +1}
  (very bearish … very bullish; shares :data:`TONE_SHARES`) and a text drawn from templates of
  that tone (:data:`TEMPLATES`), which name events such as a hack, a listing or a lawsuit. With
  probability ``text_noise`` the text comes from a neighbouring tone instead, so a text scorer
  cannot read the tone perfectly.
- **The price reacts after the headline:** from the bar after the headline's bar on, each bar's
  log return gains ``s · impact · sigma · exp(-k / decay_bars)`` for ``k = 0, 1, …`` (the
  market's base per-bar volatility ``sigma``), so the reaction of a headline inside bar i starts
  in bar i + 1, and a tone-1 headline moves the price by about ``impact · decay_bars · sigma``
  in total. The bar that holds the headline is untouched: no feature computed at its close can
  see the reaction, but it can see the headline.
- OHLC stay valid: open, high, low, close and the spread are scaled by the cumulative
  reaction, and high/low are widened to cover the new open and close.

``headlines`` has columns ``ts, headline, source, tone`` (``tone`` is the latent ``s``, for tests).
It is deterministic for a seed.

:func:`labelled_headlines` turns the latent tone into the five labels (:data:`TONE_LABELS`):
the labelled set a sentiment head trains on (``alphaops sentiment synth-labels``). The texts
are made from 20 templates with 4 assets and 8 venues, so they are easy to learn: a head that
scores well on them says the pipeline works, not that it reads real headlines well. The
labels are the tone, and ``text_noise`` of the texts come from a neighbouring tone, so no
scorer can be right on those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

TONES = (-1.0, -0.5, 0.0, 0.5, 1.0)
TONE_SHARES = (0.15, 0.2, 0.3, 0.2, 0.15)
ASSETS = ("the token", "the coin", "the network", "the protocol")
VENUES = ("Binance", "Coinbase", "Kraken", "OKX", "a major exchange", "a top fund", "Visa", "a large bank")
TEMPLATES: dict[float, tuple[str, ...]] = {
    1.0: ("{a} soars after {v} announces record partnership",
          "{a} surges as {v} confirms listing",
          "{a} rallies to record high on ETF approval",
          "{a} jumps as {v} unveils major partnership"),
    0.5: ("{a} gains as inflows rise at {v}",
          "analysts upgrade {a} on strong adoption",
          "{a} edges higher after {v} listing news",
          "{a} rebounds as buyers return"),
    0.0: ("{a} trades flat ahead of the weekly report",
          "{v} publishes quarterly figures",
          "{a} holds range as traders await data",
          "{v} schedules a call for next week"),
    -0.5: ("{a} slips as regulators weigh new rules",
           "{v} faces lawsuit over {a} custody",
           "{a} sinks amid probe into {v}",
           "outflows hit {a} at {v}"),
    -1.0: ("{a} plunges after {v} hack drains wallets",
           "{v} to delist {a} after regulatory crackdown",
           "{a} crashes as {v} files for bankruptcy",
           "{a} tumbles after exploit at {v}"),
}


TONE_LABELS = dict(zip(TONES, ("very bearish", "bearish", "neutral", "bullish", "very bullish")))


def labelled_headlines(headlines: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """``ts, symbol, headline, source, label`` from :meth:`NewsMarket.generate`'s headlines (label = tone)."""
    return pd.DataFrame({"ts": headlines["ts"], "symbol": symbol, "headline": headlines["headline"],
                         "source": headlines["source"], "label": headlines["tone"].map(TONE_LABELS)})


@dataclass
class NewsMarket:
    """A :class:`~pipelines.ingest.synthetic.SyntheticMarket` plus headlines that move it (module doc)."""

    seed: int = 3
    n_bars: int = 20_000
    headline_every: float = 20.0
    impact: float = 1.0
    decay_bars: float = 10.0
    reaction_bars: int = 60
    text_noise: float = 0.15
    market_kwargs: dict[str, Any] = field(default_factory=dict)

    def generate(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        from pipelines.ingest.synthetic import SyntheticMarket

        if self.headline_every <= 1:
            raise ValueError(f"headline_every must be > 1 bar, got {self.headline_every}")
        market = SyntheticMarket(seed=self.seed, n_bars=self.n_bars, **self.market_kwargs)
        bars, events = market.generate()
        n = len(bars)
        rng = np.random.default_rng([self.seed, 7_771])  # a stream of its own: the bars stay the seed's
        count = int(rng.poisson(n / self.headline_every))
        at_bar = np.sort(rng.integers(0, n - 1, size=count))
        step = pd.Timedelta(market.freq)
        offset = pd.to_timedelta(rng.uniform(0.0, step.total_seconds(), size=count), unit="s").floor("ms")
        tone_index = rng.choice(len(TONES), size=count, p=TONE_SHARES)
        noisy = rng.random(count) < self.text_noise
        text_index = np.clip(tone_index + np.where(noisy, rng.choice([-1, 1], size=count), 0), 0, len(TONES) - 1)
        tone = np.asarray(TONES)[tone_index]
        texts = []
        for k in text_index:
            templates = TEMPLATES[TONES[k]]
            template = templates[int(rng.integers(len(templates)))]
            texts.append(template.format(a=ASSETS[int(rng.integers(len(ASSETS)))],
                                         v=VENUES[int(rng.integers(len(VENUES)))]))
        texts = [t[0].upper() + t[1:] for t in texts]

        # The reaction: from the bar after the headline's, a decaying drift in the tone's direction.
        drift = np.zeros(n + self.reaction_bars + 1)
        kernel = self.impact * market.sigma * np.exp(-np.arange(self.reaction_bars) / self.decay_bars)
        for i, s in zip(at_bar, tone):
            if s:
                drift[i + 1:i + 1 + self.reaction_bars] += s * kernel
        level = np.exp(np.cumsum(drift[:n]))
        prev_level = np.concatenate([[1.0], level[:-1]])
        out = bars.copy()
        out["open"] = bars["open"].to_numpy() * prev_level
        out["close"] = bars["close"].to_numpy() * level
        out["high"] = np.maximum.reduce([bars["high"].to_numpy() * level, out["open"].to_numpy(),
                                         out["close"].to_numpy()])
        out["low"] = np.minimum.reduce([bars["low"].to_numpy() * level, out["open"].to_numpy(),
                                        out["close"].to_numpy()])
        if "spread" in out:
            out["spread"] = bars["spread"].to_numpy() * level
        headlines = pd.DataFrame({
            "ts": bars.index[at_bar] + offset, "headline": texts, "source": "synthetic", "tone": tone,
        })
        return out, events, headlines
