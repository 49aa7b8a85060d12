"""Named universes: sets of symbols on one timeframe that universe specs (``ModelSpec.universe``) model as one.

A universe's name is a pseudo-symbol: ``--symbols UNIV_SYN`` stands for its members
(:func:`expand_symbols`), and a universe spec trains one model under that name
(``<tenant>.<spec>.UNIV_SYN``) once every member is among a run's symbols
(:func:`universes_covered`).

- ``UNIV_SYN``: the 12 daily members ``SYNU00``–``SYNU11`` of
  :func:`pipelines.ingest.synthetic_universe.synthetic_universe_sample` (seed 7, 5,000 bars); its
  recorded correlation-regime switches are stored as market events of the pseudo-symbol.
- ``UNIV_ARCH``: the real daily series bundled with ``arch`` that span 1999–2018: S&P 500,
  NASDAQ Composite and WTI crude (VIX starts in 2014; joining it would cut the history to 5 years).
"""

from __future__ import annotations

from dataclasses import dataclass

SYNTHETIC_UNIVERSE_SEED = 7
SYNTHETIC_UNIVERSE_BARS = 5000
SYNTHETIC_UNIVERSE_ASSETS = 12


@dataclass(frozen=True)
class Universe:
    name: str
    members: tuple[str, ...]
    timeframe: str


def synthetic_universe_members() -> tuple[str, ...]:
    return tuple(f"SYNU{i:02d}" for i in range(SYNTHETIC_UNIVERSE_ASSETS))


UNIVERSES: dict[str, Universe] = {
    "UNIV_SYN": Universe("UNIV_SYN", synthetic_universe_members(), "1d"),
    "UNIV_ARCH": Universe("UNIV_ARCH", ("SPX", "NASDAQ", "WTI"), "1d"),
}


def universe(name: str) -> Universe:
    if name not in UNIVERSES:
        raise ValueError(f"unknown universe {name!r}; known: {', '.join(UNIVERSES)}")
    return UNIVERSES[name]


def expand_symbols(symbols: list[str]) -> list[str]:
    """``symbols`` with each universe name replaced by its members (order kept, no duplicates)."""
    out: list[str] = []
    for symbol in symbols:
        out += list(UNIVERSES[symbol].members) if symbol in UNIVERSES else [symbol]
    return list(dict.fromkeys(out))


def universes_covered(symbols: list[str], symbol: str, timeframe: str) -> list[str]:
    """Names of the universes that contain ``symbol`` on ``timeframe`` and whose members are all in ``symbols``."""
    have = set(expand_symbols(symbols))
    return [u.name for u in UNIVERSES.values()
            if u.timeframe == timeframe and symbol in u.members and set(u.members) <= have]
