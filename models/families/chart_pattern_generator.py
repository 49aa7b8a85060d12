"""Generated chart patterns: OHLCV windows with known multi-bar shapes and their breakouts.

Each sample is ``window`` bars of OHLCV (oldest first) followed by ``horizon`` breakout bars
that the model never sees. The pattern fills the last ``length`` bars of the window
(``length`` is drawn in ``length_range``, 50–100 bars: the time stretch); the bars before it
are a lead-in trend into the pattern's first level. The close path of a pattern is a
piecewise-linear skeleton through its key points (peaks, troughs, touches of its boundary
lines), each point's time and level jittered, then:

- ``amplitude``: the pattern's height as a fraction of price (log units), log-uniform in
  ``amplitude_range``;
- ``noise``: i.i.d. Gaussian noise on every close, as a fraction of the height;
- ``drift``: a linear trend over the whole window, as a fraction of the height;
- ``scale``: the price level, log-uniform in ``scale_range``.

Highs and lows extend beyond the bar's open and close by half-normal wicks; the open is the
previous close plus a small gap; volume is log-normal around a level drawn per sample,
higher on bars with larger moves.

The breakout direction follows the pattern (:data:`BREAKOUT`): tops and rising wedges break
down, bottoms and falling wedges up, ascending triangles up, descending ones down, channels
continue their slope, and a symmetric triangle continues its lead-in trend (drawn up or down
per sample). The breakout bars move by ``breakout_range`` times the height in that direction.
``none`` samples are random walks with the same per-bar volatility; their following bars
continue the walk (direction ``none``).

:func:`generate_patterns` returns a :class:`PatternSet` with the windows, the pattern and
direction of each sample, the log return over the breakout bars and the full ground truth
(one row of :class:`PatternTruth` per sample). Everything is drawn from
``numpy.random.default_rng(seed)``: one seed, one set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

PATTERN_NAMES: tuple[str, ...] = (
    "none",
    "head_and_shoulders",
    "inverse_head_and_shoulders",
    "double_top",
    "double_bottom",
    "ascending_triangle",
    "descending_triangle",
    "symmetric_triangle",
    "rising_wedge",
    "falling_wedge",
    "channel_up",
    "channel_down",
)
NONE = 0
DIRECTION_NAMES: tuple[str, ...] = ("down", "none", "up")  # index = direction + 1
OHLCV: tuple[str, ...] = ("open", "high", "low", "close", "volume")

# Breakout direction per pattern: -1 down, +1 up, 0 none; None: the lead-in trend's direction.
BREAKOUT: dict[str, int | None] = {
    "none": 0,
    "head_and_shoulders": -1,
    "inverse_head_and_shoulders": 1,
    "double_top": -1,
    "double_bottom": 1,
    "ascending_triangle": 1,
    "descending_triangle": -1,
    "symmetric_triangle": None,
    "rising_wedge": -1,
    "falling_wedge": 1,
    "channel_up": 1,
    "channel_down": -1,
}
# Direction of the trend that leads into each pattern (None: drawn up or down per sample).
LEAD_IN: dict[str, int | None] = {
    "none": 0,
    "head_and_shoulders": 1,
    "inverse_head_and_shoulders": -1,
    "double_top": 1,
    "double_bottom": -1,
    "ascending_triangle": 1,
    "descending_triangle": -1,
    "symmetric_triangle": None,
    "rising_wedge": 1,
    "falling_wedge": -1,
    "channel_up": 1,
    "channel_down": -1,
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Ranges the generator draws each sample's shape, size and augmentation from."""

    window: int = 100
    horizon: int = 10
    length_range: tuple[int, int] = (50, 100)
    amplitude_range: tuple[float, float] = (0.04, 0.25)
    noise_range: tuple[float, float] = (0.02, 0.10)
    drift_range: tuple[float, float] = (-0.25, 0.25)
    scale_range: tuple[float, float] = (10.0, 2000.0)
    breakout_range: tuple[float, float] = (0.4, 1.0)
    jitter: float = 0.04  # key points' time and level jitter, in fractions of length and height

    def __post_init__(self) -> None:
        low, high = self.length_range
        if not 10 <= low <= high <= self.window:
            raise ValueError(f"length_range {self.length_range} must lie in [10, window={self.window}]")
        if self.horizon < 1:
            raise ValueError("horizon must be at least 1 bar")
        for name in ("amplitude_range", "noise_range", "scale_range", "breakout_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} {getattr(self, name)} must be 0 < low <= high")


@dataclass(frozen=True)
class PatternTruth:
    """The ground truth of one sample."""

    pattern: str
    direction: int          # breakout direction: -1, 0 (none) or +1
    length: int             # bars of the window the pattern fills (its last ``length`` bars)
    start: int              # first bar of the pattern in the window
    amplitude: float        # height, fraction of price (log units)
    noise: float            # close noise std, fraction of the height
    drift: float            # linear trend over the window, fraction of the height
    scale: float            # price level
    lead_in: int            # direction of the lead-in trend
    forward_return: float   # log return from the window's last close to the last breakout close


@dataclass(frozen=True)
class PatternSet:
    """Generated samples: ``windows`` float32 ``[N, window, 5]`` (OHLCV, oldest bar first),
    ``pattern`` int64 ``[N]`` (index in :data:`PATTERN_NAMES`), ``direction`` int64 ``[N]``
    (-1, 0, +1), ``forward_return`` float64 ``[N]``, ``future`` float32 ``[N, horizon, 5]``
    (the breakout bars) and ``truth`` (one row of :class:`PatternTruth` fields per sample)."""

    windows: np.ndarray
    pattern: np.ndarray
    direction: np.ndarray
    forward_return: np.ndarray
    future: np.ndarray
    truth: pd.DataFrame

    def __len__(self) -> int:
        return len(self.pattern)

    def bars(self, i: int, start: pd.Timestamp | str = "2000-01-03", freq: str = "B") -> pd.DataFrame:
        """Sample ``i``'s window and breakout bars as an OHLCV frame on a UTC index."""
        values = np.concatenate([self.windows[i], self.future[i]]).astype(np.float64)
        index = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=len(values), freq=freq)
        return pd.DataFrame(values, columns=list(OHLCV), index=index)


def _skeleton(name: str, rng: np.random.Generator, jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """Key points (times in [0, 1], levels about [0, 1]) of a pattern's close path."""

    def j(values: list[float], amount: float) -> np.ndarray:
        return np.asarray(values) + rng.uniform(-amount, amount, len(values))

    if name in ("head_and_shoulders", "inverse_head_and_shoulders"):
        shoulder, neck = rng.uniform(0.55, 0.75), rng.uniform(0.2, 0.35)
        t = j([0.0, 0.15, 0.32, 0.5, 0.68, 0.85, 1.0], jitter)
        y = j([0.0, shoulder, neck, 1.0, neck, shoulder, neck - 0.05], jitter)
    elif name in ("double_top", "double_bottom"):
        trough = rng.uniform(0.35, 0.6)
        t = j([0.0, 0.25, 0.5, 0.75, 1.0], jitter)
        y = j([0.0, 1.0, trough, 1.0, trough - 0.05], jitter)
    elif name == "none":
        return np.array([0.0, 1.0]), np.array([0.0, 0.0])
    else:
        # Price oscillates between two boundary lines, touching each in turn.
        upper, lower = {
            "ascending_triangle": ((1.0, 1.0), (0.0, 0.8)),
            "descending_triangle": ((1.0, 0.2), (0.0, 0.0)),
            "symmetric_triangle": ((1.0, 0.58), (0.0, 0.42)),
            "rising_wedge": ((0.45, 1.0), (0.0, 0.85)),
            "falling_wedge": ((1.0, 0.15), (0.55, 0.0)),
            "channel_up": ((0.4, 1.0), (0.0, 0.6)),
            "channel_down": ((1.0, 0.4), (0.6, 0.0)),
        }[name]
        n_touches = int(rng.integers(5, 8))
        t = np.linspace(0.0, 1.0, n_touches)
        t[1:-1] += rng.uniform(-jitter, jitter, n_touches - 2)
        top = rng.integers(0, 2) == 1  # which line the first touch is on
        on_upper = (np.arange(n_touches) % 2 == 0) == top
        y = np.where(on_upper, np.interp(t, [0, 1], upper), np.interp(t, [0, 1], lower))
        y = y + rng.uniform(-jitter, jitter, n_touches)
    if name in ("inverse_head_and_shoulders", "double_bottom"):
        y = 1.0 - y
    order = np.argsort(t)
    return np.clip(t[order], 0.0, 1.0), y[order]


def _sample(name: str, config: GeneratorConfig, rng: np.random.Generator) -> tuple[np.ndarray, PatternTruth]:
    """One sample's bars (window + breakout) and its ground truth."""
    w, h = config.window, config.horizon
    length = int(rng.integers(config.length_range[0], config.length_range[1] + 1))
    start = w - length
    amplitude = float(np.exp(rng.uniform(*np.log(config.amplitude_range))))
    noise = float(rng.uniform(*config.noise_range))
    drift = float(rng.uniform(*config.drift_range))
    scale = float(np.exp(rng.uniform(*np.log(config.scale_range))))
    lead_in = LEAD_IN[name] if LEAD_IN[name] is not None else int(rng.choice([-1, 1]))
    direction = BREAKOUT[name] if BREAKOUT[name] is not None else lead_in
    n = w + h
    # Noise on every close: i.i.d. plus a slow random walk (both in heights).
    wander = np.cumsum(rng.normal(0.0, noise / np.sqrt(w), n))
    shake = 0.7 * rng.normal(0.0, noise, n) + wander

    path = np.zeros(n)  # close path in heights
    if name == "none":  # a random walk whose range over the window is about one height
        path = np.cumsum(rng.normal(0.0, rng.uniform(0.5, 1.2) / np.sqrt(w), n)) + shake
        path -= path[w - 1]
        path[:w] += drift * np.linspace(-0.5, 0.5, w)
        path[w:] += drift * 0.5
    else:
        t, y = _skeleton(name, rng, config.jitter)
        path[start:w] = np.interp(np.linspace(0.0, 1.0, length), t, y)
        if start:  # the lead-in trend arrives at the pattern's first level
            slope = lead_in * rng.uniform(0.6, 1.6) / length
            path[:start] = path[start] - slope * np.arange(start, 0, -1)
        path[:w] += shake[:w] + drift * np.linspace(-0.5, 0.5, w)
        # The breakout starts at the window's last (noisy) close; its own noise is clipped so
        # the move over the breakout bars always has the pattern's sign.
        move = direction * float(rng.uniform(*config.breakout_range))
        path[w:] = path[w - 1] + move * np.linspace(1.0 / h, 1.0, h) \
            + np.clip(rng.normal(0.0, noise, h), -0.15, 0.15)
    close = scale * np.exp(amplitude * path)

    gap = rng.normal(0.0, 0.2 * noise * amplitude, n)
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(gap)
    wick = amplitude * noise * 0.5
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, wick, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, wick, n)))
    move_size = np.abs(np.diff(np.log(close), prepend=np.log(close[0]))) / max(amplitude * noise, 1e-12)
    volume = float(np.exp(rng.uniform(np.log(1e3), np.log(1e6)))) * np.exp(rng.normal(0.0, 0.3, n)) \
        * (1.0 + 0.3 * np.minimum(move_size, 5.0))
    bars = np.column_stack([open_, high, low, close, volume])
    truth = PatternTruth(pattern=name, direction=int(direction), length=length, start=start,
                         amplitude=amplitude, noise=noise, drift=drift, scale=scale, lead_in=int(lead_in),
                         forward_return=float(np.log(close[-1] / close[w - 1])))
    return bars, truth


def generate_patterns(n_per_class: int, seed: int, config: GeneratorConfig | None = None,
                      patterns: tuple[str, ...] = PATTERN_NAMES) -> PatternSet:
    """``n_per_class`` samples of each pattern in ``patterns``, in a seeded random order."""
    config = config or GeneratorConfig()
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    unknown = [p for p in patterns if p not in PATTERN_NAMES]
    if unknown:
        raise ValueError(f"unknown chart patterns {unknown}; known: {', '.join(PATTERN_NAMES)}")
    rng = np.random.default_rng(seed)
    names = np.repeat(np.asarray(patterns), n_per_class)
    names = names[rng.permutation(len(names))]
    samples = [_sample(str(name), config, rng) for name in names]
    full = np.stack([bars for bars, _ in samples]).astype(np.float32)
    truth = pd.DataFrame([asdict(t) for _, t in samples])
    return PatternSet(
        windows=np.ascontiguousarray(full[:, :config.window]),
        pattern=np.array([PATTERN_NAMES.index(p) for p in truth["pattern"]], dtype=np.int64),
        direction=truth["direction"].to_numpy(dtype=np.int64),
        forward_return=truth["forward_return"].to_numpy(dtype=np.float64),
        future=np.ascontiguousarray(full[:, config.window:]),
        truth=truth,
    )
