"""OHLCV features: the numpy/TA-Lib engine behind :func:`features.compute`.

Every feature is stationary (a ratio, a distance normalised by price or ATR, a return, a
bounded oscillator) and has finite memory: its value at bar t depends only on bars
``t - warmup .. t`` (see :mod:`features.definitions`). EMA- and Wilder-based indicators
use the truncated smoothers of :mod:`features.smoothing` for that reason; everything else
is TA-Lib as is, with two numerical precautions from :mod:`features.smoothing`: rolling
functions of price levels (σ, Bollinger, regression slope, CCI, VWAP) run on the price
minus a nearby anchor, and windows that are exactly flat give exact zeros rather than
TA-Lib's running-sum residues. Both keep values independent of where the series starts,
so :mod:`features.online` (the last bar only) reproduces them within 1e-9.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from features import talib_raw as talib  # TA-Lib C functions without the package's pandas wrapper

from features import definitions as cat
from features.smoothing import (
    Centering,
    centered_talib,
    level_stddev,
    mean_of_nonnegative,
    ratio_of_sums,
    rolling_constant,
    safe_divide,
    shift,
    truncated_ema,
    wilder,
    zscore,
)

Put = Callable[[str, np.ndarray], None]

_NS_PER_MINUTE = 60_000_000_000
_MINUTES_PER_DAY = 1_440
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass
class BarArrays:
    """Bars as contiguous float64 arrays; ``ts_ns`` is UTC epoch nanoseconds (bar open)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    ts_ns: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.close)


class _Context:
    """Input arrays plus intermediates shared by several feature groups (memoised).

    Groups may run on several threads (see :func:`ohlcv_tasks`): each intermediate is then
    computed once, by the first group that asks, and the others wait for it."""

    def __init__(self, bars: BarArrays, centering: Centering) -> None:
        self.o, self.h, self.l, self.c, self.v = bars.open, bars.high, bars.low, bars.close, bars.volume
        self.centering = centering  # anchors for rolling TA-Lib functions on price levels
        self.ts_ns = bars.ts_ns
        self.log_close = np.log(self.c)
        self.ret_1 = self.log_close - shift(self.log_close, 1)
        self.close_diff = self.c - shift(self.c, 1)
        self.true_range = talib.TRANGE(self.h, self.l, self.c)
        self.atr = wilder(self.true_range, cat.ATR_PERIOD)
        # 1 / ATR, and 0 where ATR is 0 (a flat market): "x / ATR" features are then 0.
        self.per_atr = safe_divide(np.ones_like(self.atr), self.atr)
        self._lock = threading.Lock()
        self._memo: dict[Hashable, Future[np.ndarray]] = {}

    def _once(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """``make()``, computed once per ``key`` whichever thread asks first."""
        with self._lock:
            cell = self._memo.get(key)
            owner = cell is None
            if owner:
                cell = self._memo[key] = Future()
        if owner:
            try:
                cell.set_result(make())
            except BaseException as error:
                cell.set_exception(error)
        return cell.result()

    def ema(self, period: int) -> np.ndarray:
        """Truncated EMA of close."""
        return self._once(("ema", period), lambda: truncated_ema(self.c, period))

    def highest(self, period: int) -> np.ndarray:
        """``talib.MAX(high, period)``: the highest high of the last ``period`` bars."""
        return self._once(("highest", period), lambda: talib.MAX(self.h, period))

    def lowest(self, period: int) -> np.ndarray:
        """``talib.MIN(low, period)``: the lowest low of the last ``period`` bars."""
        return self._once(("lowest", period), lambda: talib.MIN(self.l, period))

    def close_constant(self, period: int) -> np.ndarray:
        """True where the last ``period`` closes are all equal."""
        return self._once(("close_constant", period), lambda: rolling_constant(self.c, period))

    def donchian_pos(self, period: int) -> np.ndarray:
        """``(close - lowest) / (highest - lowest)`` over ``period`` bars, 0.5 on a flat range."""

        def make() -> np.ndarray:
            highest, lowest = self.highest(period), self.lowest(period)
            return safe_divide(self.c - lowest, highest - lowest, fill=0.5)

        return self._once(("donchian_pos", period), make)

    def volume_sum(self, period: int) -> np.ndarray:
        """``talib.SUM(volume, period)``."""
        return self._once(("volume_sum", period), lambda: talib.SUM(self.v, period))


class Task(NamedTuple):
    """A group of features: ``run(put)`` hands each to ``put(name, values)``. ``cost`` is
    the group's share of the work (ms on 1M bars, one thread, measured), so that a thread
    pool can take the costliest first and its threads finish close together."""

    run: Callable[[Put], None]
    cost: float


def ohlcv_tasks(bars: BarArrays, centering: Centering | None = None) -> list[Task]:
    """The OHLCV features of the catalog as independent tasks. They share memoised
    intermediates and may run on several threads at once (TA-Lib and numpy release the GIL).

    ``centering``: :class:`features.smoothing.Centering` of the close, if already built."""
    ctx = _Context(bars, Centering(bars.close) if centering is None else centering)
    return [Task(lambda put, group=group: group(ctx, put), cost) for group, cost in _GROUPS]


def _returns(ctx: _Context, put: Put) -> None:
    for lag in cat.RETURN_LAGS:
        put(f"ret_{lag}", ctx.ret_1 if lag == 1 else ctx.log_close - shift(ctx.log_close, lag))


def _trend(ctx: _Context, put: Put) -> None:
    c = ctx.c
    smas = {n: talib.SMA(c, n) for n in cat.MA_PERIODS}
    for n in cat.MA_PERIODS:
        put(f"sma_dist_{n}", c / smas[n] - 1.0)
    for n in cat.MA_PERIODS:
        put(f"ema_dist_{n}", c / ctx.ema(n) - 1.0)
    for n in cat.MA_PERIODS:
        put(f"ema_slope_{n}", ctx.ema(n) / shift(ctx.ema(n), cat.EMA_SLOPE_LAG) - 1.0)
    for kind, fast, slow in cat.MA_CROSSES:
        if kind == "sma":
            put(f"sma_cross_{fast}_{slow}", smas[fast] / smas[slow] - 1.0)
        else:
            put(f"ema_cross_{fast}_{slow}", ctx.ema(fast) / ctx.ema(slow) - 1.0)

    macd_line = ctx.ema(cat.MACD_FAST) - ctx.ema(cat.MACD_SLOW)
    macd_signal = truncated_ema(macd_line, cat.MACD_SIGNAL)
    put("macd_line", macd_line * ctx.per_atr)
    put("macd_signal", macd_signal * ctx.per_atr)
    put("macd_hist", (macd_line - macd_signal) * ctx.per_atr)


def _trend_directional(ctx: _Context, put: Put) -> None:
    # Directional movement from TA-Lib's one-bar +DM/-DM and the true range, Wilder-smoothed.
    n = cat.ADX_PERIOD
    smoothed_tr = ctx.atr if n == cat.ATR_PERIOD else wilder(ctx.true_range, n)
    plus_di = 100.0 * safe_divide(wilder(talib.PLUS_DM(ctx.h, ctx.l, 1), n), smoothed_tr)
    minus_di = 100.0 * safe_divide(wilder(talib.MINUS_DM(ctx.h, ctx.l, 1), n), smoothed_tr)
    di_sum = plus_di + minus_di
    put(f"adx_{n}", wilder(100.0 * safe_divide(np.abs(plus_di - minus_di), di_sum), n))
    put(f"plus_di_{n}", plus_di)
    put(f"minus_di_{n}", minus_di)
    put(f"di_spread_{n}", plus_di - minus_di)


def _trend_channels(ctx: _Context, put: Put) -> None:
    aroon_down, aroon_up = talib.AROON(ctx.h, ctx.l, cat.AROON_PERIOD)
    put(f"aroon_up_{cat.AROON_PERIOD}", aroon_up)
    put(f"aroon_down_{cat.AROON_PERIOD}", aroon_down)
    put(f"aroon_osc_{cat.AROON_PERIOD}", aroon_up - aroon_down)  # = talib.AROONOSC

    c = ctx.c

    def midpoint(period: int) -> np.ndarray:
        return (ctx.highest(period) + ctx.lowest(period)) * 0.5

    tenkan, kijun = midpoint(cat.ICHIMOKU_TENKAN), midpoint(cat.ICHIMOKU_KIJUN)
    # The cloud drawn at bar t was computed `kijun` bars earlier: no look-ahead.
    senkou_a = shift((tenkan + kijun) * 0.5, cat.ICHIMOKU_KIJUN)
    senkou_b = shift(midpoint(cat.ICHIMOKU_SENKOU_B), cat.ICHIMOKU_KIJUN)
    put("ichimoku_tenkan_dist", c / tenkan - 1.0)
    put("ichimoku_kijun_dist", c / kijun - 1.0)
    put("ichimoku_senkou_a_dist", c / senkou_a - 1.0)
    put("ichimoku_senkou_b_dist", c / senkou_b - 1.0)
    put("ichimoku_cloud_thickness", (senkou_a - senkou_b) / c)

    per_atr = ctx.per_atr
    for n in cat.LINREG_PERIODS:
        slope = centered_talib(talib.LINEARREG_SLOPE, (c,), n, centering=ctx.centering)[1][0]
        slope[ctx.close_constant(n)] = 0.0  # exactly 0 on a flat window, not a rounding residue
        put(f"linreg_slope_{n}", slope * per_atr)


def _momentum(ctx: _Context, put: Put) -> None:
    o, h, l, c = ctx.o, ctx.h, ctx.l, ctx.c
    gains = np.maximum(ctx.close_diff, 0.0)
    losses = np.maximum(-ctx.close_diff, 0.0)
    for n in cat.RSI_PERIODS:
        avg_gain, avg_loss = wilder(gains, n), wilder(losses, n)
        put(f"rsi_{n}", 100.0 * safe_divide(avg_gain, avg_gain + avg_loss, fill=0.5))
    slow_k, slow_d = talib.STOCH(h, l, c, cat.STOCH_K, cat.STOCH_SMOOTH_K, 0, cat.STOCH_D, 0)
    put("stoch_k", slow_k)
    put("stoch_d", slow_d)
    for n in cat.CCI_PERIODS:
        put(f"cci_{n}", centered_talib(talib.CCI, (h, l, c), n, centering=ctx.centering)[1][0])
    put(f"willr_{cat.WILLR_PERIOD}", talib.WILLR(h, l, c, cat.WILLR_PERIOD))
    for n in cat.ROC_PERIODS:
        put(f"roc_{n}", talib.ROCP(c, n))
    put(f"mom_{cat.MOMENTUM_PERIOD}_atr", talib.MOM(c, cat.MOMENTUM_PERIOD) * ctx.per_atr)
    put("ultosc", talib.ULTOSC(h, l, c, *cat.ULTOSC_PERIODS))
    put(f"bop_{cat.BOP_PERIOD}", talib.SMA(talib.BOP(o, h, l, c), cat.BOP_PERIOD))


def _volatility(ctx: _Context, put: Put) -> None:
    o, h, l, c, atr = ctx.o, ctx.h, ctx.l, ctx.c, ctx.atr
    for n in cat.BBANDS_PERIODS:
        # TA-Lib BBANDS on the close minus a nearby anchor (see smoothing.centered_talib).
        anchor, (upper, middle, lower) = centered_talib(
            talib.BBANDS, (c,), n, cat.BBANDS_NBDEV, cat.BBANDS_NBDEV, 0, centering=ctx.centering
        )
        band = upper - lower
        band[ctx.close_constant(n)] = 0.0  # exactly 0, not a rounding residue
        put(f"bb_pctb_{n}", safe_divide((c - anchor) - lower, band, fill=0.5))
        put(f"bb_width_{n}", band / (middle + anchor))
    atr_slow = wilder(ctx.true_range, cat.ATR_SLOW_PERIOD)
    put(f"atr_pct_{cat.ATR_PERIOD}", atr / c)
    put(f"atr_pct_{cat.ATR_SLOW_PERIOD}", atr_slow / c)
    put(f"atr_ratio_{cat.ATR_PERIOD}_{cat.ATR_SLOW_PERIOD}", safe_divide(atr, atr_slow, fill=1.0))
    keltner_mid = ctx.ema(cat.KELTNER_PERIOD)
    put(f"keltner_pos_{cat.KELTNER_PERIOD}", (c - keltner_mid) * ctx.per_atr * (1.0 / cat.KELTNER_ATR_MULT))
    put(f"keltner_width_{cat.KELTNER_PERIOD}", (2.0 * cat.KELTNER_ATR_MULT) * atr / keltner_mid)
    for n in cat.DONCHIAN_PERIODS:
        highest, lowest = ctx.highest(n), ctx.lowest(n)
        put(f"donchian_pos_{n}", ctx.donchian_pos(n))
        put(f"donchian_width_{n}", (highest - lowest) / c)
    squared_ret = ctx.ret_1 * ctx.ret_1
    rv = {n: np.sqrt(mean_of_nonnegative(squared_ret, n)) for n in cat.RV_PERIODS}
    for n in cat.RV_PERIODS:
        put(f"rv_{n}", rv[n])
    for n in cat.HV_PERIODS:
        put(f"hv_{n}", talib.STDDEV(ctx.ret_1, n))
    log_hl = np.log(h / l)
    log_co = np.log(c / o)
    squared_hl = log_hl * log_hl
    n = cat.RANGE_VOL_PERIOD
    put(f"parkinson_vol_{n}", np.sqrt(mean_of_nonnegative(squared_hl, n) * (1.0 / (4.0 * np.log(2.0)))))
    gk_terms = 0.5 * squared_hl - (2.0 * np.log(2.0) - 1.0) * log_co * log_co
    gk_variance = np.maximum(talib.SMA(gk_terms, n), 0.0)
    gk_variance[talib.MAX(squared_hl, n) == 0.0] = 0.0  # no range in the window (then close = open too)
    put(f"garman_klass_vol_{n}", np.sqrt(gk_variance))
    _har_terms(ctx, put, squared_ret, squared_hl, gk_terms, log_co)
    put("rv_ratio_10_60", safe_divide(rv[10], rv[60], fill=1.0))
    put("range_pct", (h - l) / c)
    put("tr_atr", safe_divide(ctx.true_range, atr, fill=1.0))


def yang_zhang_k(n: int) -> float:
    """Yang and Zhang's weight of the open-to-close variance for an ``n``-bar window."""
    return 0.34 / (1.34 + (n + 1) / (n - 1))


def _har_terms(ctx: _Context, put: Put, squared_ret: np.ndarray, squared_hl: np.ndarray, gk_terms: np.ndarray,
               log_co: np.ndarray) -> None:
    """Realized and range-based volatility over the HAR windows (1, 5, 22 bars): each is the square root of
    the mean per-bar variance term over the window (TA-Lib SMA; the term itself for 1 bar)."""
    o, h, l, c = ctx.o, ctx.h, ctx.l, ctx.c
    rs_terms = np.maximum(np.log(h / o) * np.log(h / c) + np.log(l / o) * np.log(l / c), 0.0)
    gk_bar = np.maximum(gk_terms, 0.0)
    gk_bar[squared_hl == 0.0] = 0.0
    overnight = np.log(o / shift(c, 1))
    squared_on, squared_co = overnight * overnight, log_co * log_co
    pk_scale = 1.0 / (4.0 * np.log(2.0))
    for n in cat.HAR_PERIODS:
        if n == 1:
            put("rv_1", np.abs(ctx.ret_1))
            put("parkinson_vol_1", np.sqrt(squared_hl * pk_scale))
            put("garman_klass_vol_1", np.sqrt(gk_bar))
            put("rogers_satchell_vol_1", np.sqrt(rs_terms))
            continue
        put(f"rv_{n}", np.sqrt(mean_of_nonnegative(squared_ret, n)))
        put(f"parkinson_vol_{n}", np.sqrt(mean_of_nonnegative(squared_hl, n) * pk_scale))
        gk_variance = np.maximum(talib.SMA(gk_terms, n), 0.0)
        gk_variance[talib.MAX(squared_hl, n) == 0.0] = 0.0
        put(f"garman_klass_vol_{n}", np.sqrt(gk_variance))
        rs_variance = mean_of_nonnegative(rs_terms, n)
        put(f"rogers_satchell_vol_{n}", np.sqrt(rs_variance))
        k = yang_zhang_k(n)
        put(f"yang_zhang_vol_{n}", np.sqrt(mean_of_nonnegative(squared_on, n) + k * mean_of_nonnegative(squared_co, n)
                                            + (1.0 - k) * rs_variance))


def _volume(ctx: _Context, put: Put) -> None:
    h, l, c, v = ctx.h, ctx.l, ctx.c, ctx.v
    # OBV's increments (TA-Lib OBV: +volume on an up close, -volume on a down close). The
    # cumulative OBV itself is not stationary, and its level depends on where it started.
    signed_volume = np.sign(ctx.close_diff) * v
    n = cat.OBV_PERIOD
    obv_change = talib.SUM(signed_volume, n)
    obv_flow = ratio_of_sums(signed_volume, v, n, denominator_sum=ctx.volume_sum(n))
    put(f"obv_flow_{n}", obv_flow)
    put(f"obv_slope_z_{n}", zscore(obv_change, cat.OBV_Z_PERIOD))

    typical = (h + l + c) * (1.0 / 3.0)
    for n in cat.VWAP_PERIODS:
        vwap = rolling_vwap(typical, v, n, ctx.centering)
        sigma = level_stddev(c, n, constant=ctx.close_constant(n), centering=ctx.centering)
        put(f"vwap_dist_sigma_{n}", safe_divide(c - vwap, sigma))
        if n == cat.VWAP_PERIODS[0]:
            put(f"vwap_dist_pct_{n}", c / vwap - 1.0)
    put(f"mfi_{cat.MFI_PERIOD}", talib.MFI(h, l, c, v, cat.MFI_PERIOD))
    put(f"vol_ratio_{cat.VOLUME_PERIOD}", safe_divide(v, talib.SMA(v, cat.VOLUME_PERIOD), fill=1.0))
    log_volume = np.log1p(v)
    for n in cat.VOLUME_Z_PERIODS:
        put(f"vol_z_{n}", zscore(log_volume, n))
    volume_change = log_volume - shift(log_volume, 1)
    vp_corr = talib.CORREL(ctx.ret_1, volume_change, cat.VP_PERIOD)
    vp_corr[rolling_constant(ctx.ret_1, cat.VP_PERIOD) | rolling_constant(volume_change, cat.VP_PERIOD)] = 0.0
    put(f"vp_corr_{cat.VP_PERIOD}", vp_corr)
    put(f"vp_divergence_{cat.VP_PERIOD}", ctx.donchian_pos(cat.VP_PERIOD) - (obv_flow + 1.0) * 0.5)
    money_flow_multiplier = safe_divide((c - l) - (h - c), h - l)
    n = cat.CMF_PERIOD
    put(f"cmf_{n}", ratio_of_sums(money_flow_multiplier * v, v, n, denominator_sum=ctx.volume_sum(n)))
    log_mean_volume = {}
    for n in cat.LOG_VOLUME_PERIODS:
        mean_volume = v if n == 1 else ctx.volume_sum(n) * (1.0 / n)
        log_mean_volume[n] = np.log1p(np.maximum(mean_volume, 0.0))
        put(f"log_vol_{n}", log_mean_volume[n])
    fast, slow = cat.LOG_VOLUME_TREND
    put(f"log_vol_trend_{fast}_{slow}", log_mean_volume[fast] - log_mean_volume[slow])


def rolling_vwap(price: np.ndarray, volume: np.ndarray, period: int, centering: Centering | None = None) -> np.ndarray:
    """Σ price·volume / Σ volume over ``period`` bars; the plain mean price where the
    window has no volume at all. Computed on the price minus a nearby anchor (see
    :func:`features.smoothing.centered_talib`)."""
    anchor, (weighted_sum, volume_sum, mean_price) = centered_talib(
        _vwap_sums, (price,), period, others=(volume,), centering=centering
    )
    vwap = weighted_sum / volume_sum
    no_volume = talib.MAX(volume, period) == 0.0  # exact; the running sum would leave a residue
    vwap[no_volume] = mean_price[no_volume]
    return vwap + anchor


def _vwap_sums(price: np.ndarray, volume: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return talib.SUM(price * volume, period), talib.SUM(volume, period), talib.SMA(price, period)


def _candles(ctx: _Context, put: Put) -> None:
    o, h, l, c = ctx.o, ctx.h, ctx.l, ctx.c
    for function, short in cat.CANDLE_PATTERNS:
        put(f"cdl_{short}", getattr(talib, function)(o, h, l, c) * 0.01)


def _structure(ctx: _Context, put: Put) -> None:
    o, h, l, c, per_atr = ctx.o, ctx.h, ctx.l, ctx.c, ctx.per_atr
    bar_range = h - l
    put("candle_body", safe_divide(c - o, bar_range))
    put("candle_upper_wick", safe_divide(h - np.maximum(o, c), bar_range))
    put("candle_lower_wick", safe_divide(np.minimum(o, c) - l, bar_range))
    for n in cat.SR_PERIODS:
        put(f"resistance_dist_{n}", (ctx.highest(n) - c) * per_atr)
        put(f"support_dist_{n}", (c - ctx.lowest(n)) * per_atr)

    prev_close = shift(c, 1)
    p = cat.PIVOT_PERIOD
    for prefix, prev_high, prev_low in (
        ("pivot", shift(h, 1), shift(l, 1)),
        (f"pivot{p}", shift(ctx.highest(p), 1), shift(ctx.lowest(p), 1)),
    ):
        pivot = (prev_high + prev_low + prev_close) * (1.0 / 3.0)
        put(f"{prefix}_dist", (c - pivot) * per_atr)
        put(f"{prefix}_r1_dist", (c - (2.0 * pivot - prev_low)) * per_atr)
        put(f"{prefix}_s1_dist", (c - (2.0 * pivot - prev_high)) * per_atr)

    # Consolidation: bars since the close last left the previous 20-bar high/low channel.
    channel = cat.CONSOLIDATION_CHANNEL
    breakout = (c > shift(ctx.highest(channel), 1)) | (c < shift(ctx.lowest(channel), 1))
    index = np.arange(len(c))
    last_breakout = np.maximum.accumulate(np.where(breakout, index, -(cat.CONSOLIDATION_CAP + 1)))
    put("consolidation_len", np.minimum(index - last_breakout, cat.CONSOLIDATION_CAP).astype(np.float64))
    n = cat.RANGE_COMPRESSION_PERIOD
    put(f"range_compression_{n}", (ctx.highest(n) - ctx.lowest(n)) * per_atr)


def _time(ctx: _Context, put: Put) -> None:
    minutes = ctx.ts_ns // _NS_PER_MINUTE
    day, minute_of_day = np.divmod(minutes, _MINUTES_PER_DAY)
    hour_angle = minute_of_day * (2.0 * np.pi / _MINUTES_PER_DAY)
    weekday_angle = ((day + _EPOCH_WEEKDAY) % 7) * (2.0 * np.pi / 7.0)
    put("hour_sin", np.sin(hour_angle))
    put("hour_cos", np.cos(hour_angle))
    put("dow_sin", np.sin(weekday_angle))
    put("dow_cos", np.cos(weekday_angle))
    from features.calendar import holiday_flags

    holiday, holiday_next = holiday_flags(day)
    put("holiday", holiday)
    put("holiday_next_day", holiday_next)


# Each group with its cost (see Task).
_GROUPS: tuple[tuple[Callable[[_Context, Put], None], float], ...] = (
    (_volatility, 280), (_candles, 270), (_volume, 260), (_momentum, 220), (_trend, 150),
    (_structure, 140), (_trend_channels, 90), (_trend_directional, 80), (_time, 70), (_returns, 20),
)
