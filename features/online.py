"""The online engine: every feature's value at the last bar only, for :func:`features.compute_latest`.

The batch engine (:mod:`features.indicators`, :mod:`features.microstructure`) computes
whole series; a trading runtime needs one vector per bar, within a millisecond. This
engine computes the same definitions at the last bar directly:

* a truncated EMA or Wilder average (:mod:`features.smoothing`) at bar t is the dot
  product of its last ``L`` inputs with fixed weights: the batch's O(n) recursion and
  this sum are the same number up to rounding;
* rolling sums, means and extremes are reductions over the last ``period`` bars;
* TA-Lib still computes every indicator whose result depends on TA-Lib's own conventions
  (STDDEV's zero threshold, CCI, STOCH, ULTOSC, MFI, AROON, WILLR, BBANDS, CORREL,
  LINEARREG_SLOPE, the candlestick patterns), on the shortest tail its warm-up needs.

Degenerate windows get the batch engine's values (exact zeros on a flat market, the
neutral fill of a zero denominator). Every feature equals :func:`features.compute` at
the same bar within 1e-9 (tests/features/test_core.py checks every feature on real and
synthetic bars, including a flat market and zero-volume bars).
"""

from __future__ import annotations

import math

import numpy as np

from features import talib_raw as talib  # TA-Lib C functions without the package's pandas wrapper
from features import definitions as cat
from features import windows as win
from features.indicators import _EPOCH_WEEKDAY, _MINUTES_PER_DAY, _NS_PER_MINUTE, BarArrays, yang_zhang_k
from features.microstructure import _BPS
from features.smoothing import ema_length, wilder_length


def latest_features(bars: BarArrays) -> dict[str, float]:
    """Every feature the columns of ``bars`` allow, at its last bar.

    ``bars`` must hold at least :data:`features.LOOKBACK` bars (validated, finite)."""
    out: dict[str, float] = {}
    last = _Last(bars)
    for group in (_returns, _trend, _momentum, _volatility, _volume, _structure, _time):
        group(last, out)
    _microstructure(bars, last, out)
    return out


def _close_stddev(last: _Last, period: int) -> float:
    """:func:`features.smoothing.level_stddev` of the close: σ, centred; 0 when flat."""
    return win.stddev(last.centred_close[-period:], constant=last.close_constant(period))


_MA_EMAS = tuple((n, ema_length(n)) for n in cat.MA_PERIODS)
_MACD_EMAS = ((cat.MACD_FAST, ema_length(cat.MACD_FAST)), (cat.MACD_SLOW, ema_length(cat.MACD_SLOW)))
_RSI_WILDERS = tuple((2 * n - 1, wilder_length(n)) for n in cat.RSI_PERIODS)


class _Last:
    """The last LOOKBACK bars and the intermediates several groups share."""

    def __init__(self, bars: BarArrays) -> None:
        n = cat.WARMUP + 1
        self.o, self.h, self.l, self.c, self.v = (x[-n:] for x in (bars.open, bars.high, bars.low, bars.close,
                                                                    bars.volume))
        self.ts_ns = int(bars.ts_ns[-1])
        c = self.c
        self.close = float(c[-1])
        self.anchor = self.close  # centring anchor for rolling functions of price levels
        # EMAs run on the centred close: a flat window then gives exactly the anchor, as
        # the batch recursion does, instead of anchor * (sum of weights) with its last ulp.
        self.centred_close = c - self.anchor
        # log returns over the last 100 bars (hv_100 is the longest user)
        log_close = np.log(c[-(max(cat.HV_PERIODS) + 1):])
        self.log_close = log_close
        self.ret_1 = log_close[1:] - log_close[:-1]
        # true range over the last ATR_SLOW memory (and the ADX's 2 x 54 bars)
        tr_bars = max(wilder_length(cat.ATR_SLOW_PERIOD), 2 * wilder_length(cat.ADX_PERIOD) - 1)
        self.true_range = talib.TRANGE(self.h[-(tr_bars + 1):], self.l[-(tr_bars + 1):], c[-(tr_bars + 1):])[1:]
        self.atr = win.wilder(self.true_range, cat.ATR_PERIOD)
        self.per_atr = 1.0 / self.atr if self.atr != 0.0 else 0.0
        self._emas: dict[int, np.ndarray] = {}
        # Bars at the end with exactly the last close (the close is constant over n bars iff n <= run).
        differs = np.flatnonzero(c[::-1] != self.close)
        self.close_run = int(differs[0]) if differs.size else len(c)
        # Highest high / lowest low of the last k bars for every k, ending at the last bar or `lag` before.
        self._highest: dict[int, np.ndarray] = {}
        self._lowest: dict[int, np.ndarray] = {}

    def ema(self, period: int) -> np.ndarray:
        """Truncated EMA of close at the last EMA_SLOPE_LAG + 1 bars."""
        if not self._emas:  # every MA period in one product
            weights = win.ema_weight_matrix(_MA_EMAS)
            values = win.windows(self.centred_close, weights.shape[0], cat.EMA_SLOPE_LAG + 1) @ weights
            values += self.anchor
            self._emas.update(zip(cat.MA_PERIODS, values.T))
        if period not in self._emas:
            self._emas[period] = win.tema(self.centred_close, period, cat.EMA_SLOPE_LAG + 1) + self.anchor
        return self._emas[period]

    def highest(self, period: int, lag: int = 0) -> float:
        """Highest high of the ``period`` bars ending ``lag`` bars before the last."""
        if lag not in self._highest:
            self._highest[lag] = np.maximum.accumulate(self.h[len(self.h) - 1 - lag :: -1])
        return float(self._highest[lag][period - 1])

    def lowest(self, period: int, lag: int = 0) -> float:
        if lag not in self._lowest:
            self._lowest[lag] = np.minimum.accumulate(self.l[len(self.l) - 1 - lag :: -1])
        return float(self._lowest[lag][period - 1])

    def donchian_pos(self, period: int) -> float:
        highest, lowest = self.highest(period), self.lowest(period)
        return win.divide(self.close - lowest, highest - lowest, 0.5)

    def close_constant(self, period: int) -> bool:
        """The last ``period`` closes are all equal."""
        return self.close_run >= period


# --- OHLCV groups (same order and formulas as features.indicators) -----------------------


def _returns(last: _Last, out: dict[str, float]) -> None:
    log_close = last.log_close
    now = float(log_close[-1])
    for lag in cat.RETURN_LAGS:
        out[f"ret_{lag}"] = now - float(log_close[-1 - lag])


def _trend(last: _Last, out: dict[str, float]) -> None:
    c, close = last.c, last.close
    # SMA(n) of the last bar for every n at once: sums of the last n closes.
    periods = np.asarray(cat.MA_PERIODS)
    sums = np.cumsum(c[::-1][: max(cat.MA_PERIODS)])[periods - 1]
    smas = dict(zip(cat.MA_PERIODS, (sums / periods).tolist()))
    for n in cat.MA_PERIODS:
        out[f"sma_dist_{n}"] = close / smas[n] - 1.0
    for n in cat.MA_PERIODS:
        out[f"ema_dist_{n}"] = close / float(last.ema(n)[-1]) - 1.0
    for n in cat.MA_PERIODS:
        ema = last.ema(n)
        out[f"ema_slope_{n}"] = float(ema[-1]) / float(ema[0]) - 1.0
    for kind, fast, slow in cat.MA_CROSSES:
        if kind == "sma":
            out[f"sma_cross_{fast}_{slow}"] = smas[fast] / smas[slow] - 1.0
        else:
            out[f"ema_cross_{fast}_{slow}"] = float(last.ema(fast)[-1]) / float(last.ema(slow)[-1]) - 1.0

    weights = win.ema_weight_matrix(_MACD_EMAS)
    fast_slow = win.windows(last.centred_close, weights.shape[0], ema_length(cat.MACD_SIGNAL)) @ weights
    macd_line = fast_slow[:, 0] - fast_slow[:, 1]
    line, signal = float(macd_line[-1]), win.tema(macd_line, cat.MACD_SIGNAL)
    out["macd_line"] = line * last.per_atr
    out["macd_signal"] = signal * last.per_atr
    out["macd_hist"] = (line - signal) * last.per_atr
    _trend_directional(last, out)
    _trend_channels(last, out)


def _trend_directional(last: _Last, out: dict[str, float]) -> None:
    n = cat.ADX_PERIOD
    memory = wilder_length(n)
    bars = 2 * memory - 1  # DI at each of the last `memory` bars, each from `memory` bars
    h, l = last.h[-(bars + 1):], last.l[-(bars + 1):]
    series = np.empty((3, bars))  # true range, +DM, -DM: Wilder-smoothed in one product
    series[0] = last.true_range[-bars:]
    series[1] = talib.PLUS_DM(h, l, 1)[1:]
    series[2] = talib.MINUS_DM(h, l, 1)[1:]
    smoothed_tr, plus_dm, minus_dm = win.windows(series, memory, memory) @ win.ema_weights(2 * n - 1, memory)
    plus_di = 100.0 * win.divide_arrays(plus_dm, smoothed_tr)
    minus_di = 100.0 * win.divide_arrays(minus_dm, smoothed_tr)
    dx = 100.0 * win.divide_arrays(np.abs(plus_di - minus_di), plus_di + minus_di)
    plus, minus = float(plus_di[-1]), float(minus_di[-1])
    out[f"adx_{n}"] = win.wilder(dx, n)
    out[f"plus_di_{n}"] = plus
    out[f"minus_di_{n}"] = minus
    out[f"di_spread_{n}"] = plus - minus


def _trend_channels(last: _Last, out: dict[str, float]) -> None:
    p = cat.AROON_PERIOD
    aroon_down, aroon_up = talib.AROON(last.h[-(p + 1):], last.l[-(p + 1):], p)
    up, down = float(aroon_up[-1]), float(aroon_down[-1])
    out[f"aroon_up_{p}"] = up
    out[f"aroon_down_{p}"] = down
    out[f"aroon_osc_{p}"] = up - down

    def midpoint(period: int, lag: int = 0) -> float:
        return (last.highest(period, lag) + last.lowest(period, lag)) * 0.5

    close, lag = last.close, cat.ICHIMOKU_KIJUN
    tenkan, kijun = midpoint(cat.ICHIMOKU_TENKAN), midpoint(cat.ICHIMOKU_KIJUN)
    senkou_a = (midpoint(cat.ICHIMOKU_TENKAN, lag) + midpoint(cat.ICHIMOKU_KIJUN, lag)) * 0.5
    senkou_b = midpoint(cat.ICHIMOKU_SENKOU_B, lag)
    out["ichimoku_tenkan_dist"] = close / tenkan - 1.0
    out["ichimoku_kijun_dist"] = close / kijun - 1.0
    out["ichimoku_senkou_a_dist"] = close / senkou_a - 1.0
    out["ichimoku_senkou_b_dist"] = close / senkou_b - 1.0
    out["ichimoku_cloud_thickness"] = (senkou_a - senkou_b) / close

    for n in cat.LINREG_PERIODS:
        slope = 0.0 if last.close_constant(n) else float(talib.LINEARREG_SLOPE(last.centred_close[-n:], n)[-1])
        out[f"linreg_slope_{n}"] = slope * last.per_atr


def _momentum(last: _Last, out: dict[str, float]) -> None:
    o, h, l, c = last.o, last.h, last.l, last.c
    weights = win.ema_weight_matrix(_RSI_WILDERS)
    memory = weights.shape[0]
    recent = c[-(memory + 1):]
    close_diff = recent[1:] - recent[:-1]
    gains_losses = np.empty((2, memory))
    np.maximum(close_diff, 0.0, out=gains_losses[0])
    np.maximum(-close_diff, 0.0, out=gains_losses[1])
    averages = (gains_losses @ weights).tolist()  # [gains, losses] x RSI periods
    for n, avg_gain, avg_loss in zip(cat.RSI_PERIODS, *averages):
        out[f"rsi_{n}"] = 100.0 * win.divide(avg_gain, avg_gain + avg_loss, 0.5)
    k = cat.STOCH_K + cat.STOCH_SMOOTH_K + cat.STOCH_D - 2
    slow_k, slow_d = talib.STOCH(h[-k:], l[-k:], c[-k:], cat.STOCH_K, cat.STOCH_SMOOTH_K, 0, cat.STOCH_D, 0)
    out["stoch_k"] = float(slow_k[-1])
    out["stoch_d"] = float(slow_d[-1])
    anchor = last.anchor
    for n in cat.CCI_PERIODS:
        out[f"cci_{n}"] = float(talib.CCI(h[-n:] - anchor, l[-n:] - anchor, c[-n:] - anchor, n)[-1])
    n = cat.WILLR_PERIOD
    out[f"willr_{n}"] = float(talib.WILLR(h[-n:], l[-n:], c[-n:], n)[-1])
    close = last.close
    for n in cat.ROC_PERIODS:
        before = float(c[-1 - n])
        out[f"roc_{n}"] = (close - before) / before
    out[f"mom_{cat.MOMENTUM_PERIOD}_atr"] = (close - float(c[-1 - cat.MOMENTUM_PERIOD])) * last.per_atr
    n = max(cat.ULTOSC_PERIODS) + 1
    out["ultosc"] = float(talib.ULTOSC(h[-n:], l[-n:], c[-n:], *cat.ULTOSC_PERIODS)[-1])
    n = cat.BOP_PERIOD
    out[f"bop_{n}"] = float(talib.SMA(talib.BOP(o[-n:], h[-n:], l[-n:], c[-n:]), n)[-1])


def _volatility(last: _Last, out: dict[str, float]) -> None:
    o, h, l, c, atr, close, anchor = last.o, last.h, last.l, last.c, last.atr, last.close, last.anchor
    for n in cat.BBANDS_PERIODS:
        upper, middle, lower = talib.BBANDS(last.centred_close[-n:], n, cat.BBANDS_NBDEV, cat.BBANDS_NBDEV, 0)
        low = float(lower[-1])
        band = 0.0 if last.close_constant(n) else float(upper[-1]) - low
        out[f"bb_pctb_{n}"] = win.divide((close - anchor) - low, band, 0.5)
        out[f"bb_width_{n}"] = band / (float(middle[-1]) + anchor)
    atr_slow = win.wilder(last.true_range, cat.ATR_SLOW_PERIOD)
    out[f"atr_pct_{cat.ATR_PERIOD}"] = atr / close
    out[f"atr_pct_{cat.ATR_SLOW_PERIOD}"] = atr_slow / close
    out[f"atr_ratio_{cat.ATR_PERIOD}_{cat.ATR_SLOW_PERIOD}"] = win.divide(atr, atr_slow, 1.0)
    keltner_mid = float(last.ema(cat.KELTNER_PERIOD)[-1])
    out[f"keltner_pos_{cat.KELTNER_PERIOD}"] = (close - keltner_mid) * last.per_atr * (1.0 / cat.KELTNER_ATR_MULT)
    out[f"keltner_width_{cat.KELTNER_PERIOD}"] = (2.0 * cat.KELTNER_ATR_MULT) * atr / keltner_mid
    for n in cat.DONCHIAN_PERIODS:
        out[f"donchian_pos_{n}"] = last.donchian_pos(n)
        out[f"donchian_width_{n}"] = (last.highest(n) - last.lowest(n)) / close
    squared_ret = last.ret_1 * last.ret_1
    rv = {n: math.sqrt(win.mean_of_nonnegative(squared_ret[-n:])) for n in cat.RV_PERIODS}
    for n in cat.RV_PERIODS:
        out[f"rv_{n}"] = rv[n]
    for n in cat.HV_PERIODS:
        out[f"hv_{n}"] = float(talib.STDDEV(last.ret_1[-n:], n)[-1])
    n = cat.RANGE_VOL_PERIOD
    log_hl = np.log(h[-n:] / l[-n:])
    log_co = np.log(c[-n:] / o[-n:])
    squared_hl = log_hl * log_hl
    out[f"parkinson_vol_{n}"] = math.sqrt(win.mean_of_nonnegative(squared_hl) * (1.0 / (4.0 * np.log(2.0))))
    gk_terms = 0.5 * squared_hl - (2.0 * np.log(2.0) - 1.0) * log_co * log_co
    no_range = not np.maximum.reduce(squared_hl) > 0.0
    gk_variance = 0.0 if no_range else max(float(np.add.reduce(gk_terms)) / n, 0.0)
    out[f"garman_klass_vol_{n}"] = math.sqrt(gk_variance)
    _har_terms(last, out)
    out["rv_ratio_10_60"] = win.divide(rv[10], rv[60], 1.0)
    out["range_pct"] = (float(h[-1]) - float(l[-1])) / close
    out["tr_atr"] = win.divide(float(last.true_range[-1]), atr, 1.0)


def _har_terms(last: _Last, out: dict[str, float]) -> None:
    """:func:`features.indicators._har_terms` at the last bar."""
    m = max(cat.HAR_PERIODS)
    o, h, l, c = last.o[-m:], last.h[-m:], last.l[-m:], last.c[-m:]
    prev_c = last.c[-m - 1:-1]
    log_hl, log_co = np.log(h / l), np.log(c / o)
    squared_hl, squared_co = log_hl * log_hl, log_co * log_co
    gk_terms = 0.5 * squared_hl - (2.0 * np.log(2.0) - 1.0) * squared_co
    rs_terms = np.maximum(np.log(h / o) * np.log(h / c) + np.log(l / o) * np.log(l / c), 0.0)
    overnight = np.log(o / prev_c)
    squared_on = overnight * overnight
    squared_ret = last.ret_1[-m:] * last.ret_1[-m:]
    pk_scale = 1.0 / (4.0 * np.log(2.0))
    for n in cat.HAR_PERIODS:
        if n == 1:
            out["rv_1"] = abs(float(last.ret_1[-1]))
            out["parkinson_vol_1"] = math.sqrt(float(squared_hl[-1]) * pk_scale)
            out["garman_klass_vol_1"] = 0.0 if squared_hl[-1] == 0.0 else math.sqrt(max(float(gk_terms[-1]), 0.0))
            out["rogers_satchell_vol_1"] = math.sqrt(float(rs_terms[-1]))
            continue
        out[f"rv_{n}"] = math.sqrt(win.mean_of_nonnegative(squared_ret[-n:]))
        out[f"parkinson_vol_{n}"] = math.sqrt(win.mean_of_nonnegative(squared_hl[-n:]) * pk_scale)
        no_range = not np.maximum.reduce(squared_hl[-n:]) > 0.0
        out[f"garman_klass_vol_{n}"] = 0.0 if no_range else math.sqrt(max(float(np.add.reduce(gk_terms[-n:])) / n, 0.0))
        rs_variance = win.mean_of_nonnegative(rs_terms[-n:])
        out[f"rogers_satchell_vol_{n}"] = math.sqrt(rs_variance)
        k = yang_zhang_k(n)
        out[f"yang_zhang_vol_{n}"] = math.sqrt(win.mean_of_nonnegative(squared_on[-n:]) + k * win.mean_of_nonnegative(
            squared_co[-n:]) + (1.0 - k) * rs_variance)


def _volume(last: _Last, out: dict[str, float]) -> None:
    h, l, c, v, close, anchor = last.h, last.l, last.c, last.v, last.close, last.anchor
    n, z = cat.OBV_PERIOD, cat.OBV_Z_PERIOD
    recent = c[-(n + z):]
    signed_volume = np.sign(recent[1:] - recent[:-1]) * v[-(n + z - 1):]
    obv_flow = win.ratio_of_sums(signed_volume[-n:], v[-n:])
    out[f"obv_flow_{n}"] = obv_flow
    obv_change = talib.SUM(signed_volume, n)[n - 1:]  # the 20-bar OBV change at each of the last 100 bars
    out[f"obv_slope_z_{n}"] = win.zscore(obv_change)

    longest = max(cat.VWAP_PERIODS)
    typical = (h[-longest:] + l[-longest:] + c[-longest:]) * (1.0 / 3.0)
    for n in cat.VWAP_PERIODS:
        vwap = win.vwap(typical[-n:], v[-n:], anchor)
        sigma = _close_stddev(last, n)
        out[f"vwap_dist_sigma_{n}"] = win.divide(close - vwap, sigma)
        if n == cat.VWAP_PERIODS[0]:
            out[f"vwap_dist_pct_{n}"] = close / vwap - 1.0
    n = cat.MFI_PERIOD + 1
    out[f"mfi_{cat.MFI_PERIOD}"] = float(talib.MFI(h[-n:], l[-n:], c[-n:], v[-n:], cat.MFI_PERIOD)[-1])
    n = cat.VOLUME_PERIOD
    out[f"vol_ratio_{n}"] = win.divide(float(v[-1]), float(np.add.reduce(v[-n:])) / n, 1.0)
    longest = max(cat.VOLUME_Z_PERIODS)
    log_volume = np.log1p(v[-(longest + 1):])
    for n in cat.VOLUME_Z_PERIODS:
        out[f"vol_z_{n}"] = win.zscore(log_volume[-n:])
    n = cat.VP_PERIOD
    volume_change = log_volume[-n:] - log_volume[-(n + 1):-1]
    returns = last.ret_1[-n:]
    flat = win.is_constant(returns) or win.is_constant(volume_change)
    out[f"vp_corr_{n}"] = 0.0 if flat else float(talib.CORREL(returns, volume_change, n)[-1])
    out[f"vp_divergence_{n}"] = last.donchian_pos(n) - (obv_flow + 1.0) * 0.5
    n = cat.CMF_PERIOD
    hn, ln, cn, vn = h[-n:], l[-n:], c[-n:], v[-n:]
    money_flow_multiplier = win.divide_arrays((cn - ln) - (hn - cn), hn - ln)
    out[f"cmf_{n}"] = win.ratio_of_sums(money_flow_multiplier * vn, vn)
    log_mean_volume = {n: math.log1p(max(float(np.add.reduce(v[-n:])) / n, 0.0)) for n in cat.LOG_VOLUME_PERIODS}
    for n, value in log_mean_volume.items():
        out[f"log_vol_{n}"] = value
    fast, slow = cat.LOG_VOLUME_TREND
    out[f"log_vol_trend_{fast}_{slow}"] = log_mean_volume[fast] - log_mean_volume[slow]


_WARMUP = {info.name: info.warmup for info in cat.catalog()}
# (TA-Lib function, feature name, bars its last value needs = its lookback + 1)
_CANDLE_FUNCTIONS = tuple((getattr(talib, function), f"cdl_{short}", _WARMUP[f"cdl_{short}"] + 1)
                          for function, short in cat.CANDLE_PATTERNS)


def _structure(last: _Last, out: dict[str, float]) -> None:
    o, h, l, c = last.o, last.h, last.l, last.c
    for function, name, n in _CANDLE_FUNCTIONS:  # each pattern on the bars its lookback needs
        out[name] = float(function(o[-n:], h[-n:], l[-n:], c[-n:])[-1]) * 0.01
    close, per_atr = last.close, last.per_atr
    high, low, open_ = float(h[-1]), float(l[-1]), float(o[-1])
    bar_range = high - low
    out["candle_body"] = win.divide(close - open_, bar_range)
    out["candle_upper_wick"] = win.divide(high - max(open_, close), bar_range)
    out["candle_lower_wick"] = win.divide(min(open_, close) - low, bar_range)
    for n in cat.SR_PERIODS:
        out[f"resistance_dist_{n}"] = (last.highest(n) - close) * per_atr
        out[f"support_dist_{n}"] = (close - last.lowest(n)) * per_atr

    prev_close = float(c[-2])
    p = cat.PIVOT_PERIOD
    for prefix, prev_high, prev_low in (
        ("pivot", float(h[-2]), float(l[-2])),
        (f"pivot{p}", last.highest(p, 1), last.lowest(p, 1)),
    ):
        pivot = (prev_high + prev_low + prev_close) * (1.0 / 3.0)
        out[f"{prefix}_dist"] = (close - pivot) * per_atr
        out[f"{prefix}_r1_dist"] = (close - (2.0 * pivot - prev_low)) * per_atr
        out[f"{prefix}_s1_dist"] = (close - (2.0 * pivot - prev_high)) * per_atr

    # Bars since the close last left the previous 20-bar channel, looked for in the last 100 bars.
    channel, cap = cat.CONSOLIDATION_CHANNEL, cat.CONSOLIDATION_CAP
    previous_high = talib.MAX(h[-(cap + channel):-1], channel)[channel - 1:]
    previous_low = talib.MIN(l[-(cap + channel):-1], channel)[channel - 1:]
    recent = c[-cap:]
    breakout = np.flatnonzero((recent > previous_high) | (recent < previous_low))
    out["consolidation_len"] = float(cap - 1 - breakout[-1]) if breakout.size else float(cap)
    n = cat.RANGE_COMPRESSION_PERIOD
    out[f"range_compression_{n}"] = (last.highest(n) - last.lowest(n)) * per_atr


def _time(last: _Last, out: dict[str, float]) -> None:
    day, minute_of_day = divmod(last.ts_ns // _NS_PER_MINUTE, _MINUTES_PER_DAY)
    hour_angle = minute_of_day * (2.0 * np.pi / _MINUTES_PER_DAY)
    weekday_angle = ((day + _EPOCH_WEEKDAY) % 7) * (2.0 * np.pi / 7.0)
    out["hour_sin"] = math.sin(hour_angle)
    out["hour_cos"] = math.cos(hour_angle)
    out["dow_sin"] = math.sin(weekday_angle)
    out["dow_cos"] = math.cos(weekday_angle)
    from features.calendar import holiday_flags

    holiday, holiday_next = holiday_flags(np.array([day]))
    out["holiday"] = float(holiday[0])
    out["holiday_next_day"] = float(holiday_next[0])


# --- microstructure (same formulas as features.microstructure) ---------------------------


def _microstructure(bars: BarArrays, last: _Last, out: dict[str, float]) -> None:
    x, c, close, anchor = bars.extra, last.c, last.close, last.anchor
    if "buy_volume" in x and "sell_volume" in x:
        n = max(*cat.FLOW_PERIODS, cat.TICK_Z_PERIOD, cat.PRICE_DIST_PERIOD)
        buy, sell = x["buy_volume"][-n:], x["sell_volume"][-n:]
        imbalance, traded = buy - sell, buy + sell
        tick_ratio = win.divide_arrays(imbalance, traded)
        out["tick_ratio"] = float(tick_ratio[-1])
        for n in cat.FLOW_PERIODS:
            out[f"ofi_{n}"] = win.ratio_of_sums(imbalance[-n:], traded[-n:])
        out[f"tick_ratio_z_{cat.TICK_Z_PERIOD}"] = win.zscore(tick_ratio[-cat.TICK_Z_PERIOD:])
        n = cat.PRICE_DIST_PERIOD
        vwap = win.vwap(c[-n:], traded[-n:], anchor)
        out["price_dist"] = win.divide(close - vwap, _close_stddev(last, n))

    if "bid_size" in x and "ask_size" in x:
        n = cat.DEPTH_PERIOD
        bid, ask = x["bid_size"][-n:], x["ask_size"][-n:]
        depth_ratio = win.divide_arrays(bid - ask, bid + ask)
        out["depth_ratio"] = float(depth_ratio[-1])
        out[f"depth_ratio_sma_{n}"] = float(np.add.reduce(depth_ratio)) / n

    if "spread" in x:
        n = max(cat.SPREAD_VOL_PERIOD, cat.SPREAD_Z_PERIOD)
        spread_bps = _BPS * x["spread"][-n:] / c[-n:]
        out["spread_bps"] = float(spread_bps[-1])
        out[f"spread_vol_{cat.SPREAD_VOL_PERIOD}"] = win.stddev(spread_bps[-cat.SPREAD_VOL_PERIOD:])
        out[f"spread_z_{cat.SPREAD_Z_PERIOD}"] = win.zscore(spread_bps[-cat.SPREAD_Z_PERIOD:])

    if "n_trades" in x:
        n = cat.TRADES_PERIOD
        n_trades = x["n_trades"][-n:]
        out[f"trade_intensity_z_{n}"] = win.zscore(np.log1p(n_trades))
        avg_trade_size = win.divide_arrays(last.v[-n:], n_trades)
        mean_size = float(np.add.reduce(avg_trade_size)) / n
        out[f"avg_trade_size_ratio_{n}"] = win.divide(float(avg_trade_size[-1]), mean_size, 1.0) - 1.0

    if "funding_rate" in x:
        n = cat.FUNDING_PERIOD
        funding = x["funding_rate"][-n:]
        out["funding_rate_bps"] = _BPS * float(funding[-1])
        out[f"funding_dev_{n}"] = win.zscore(_BPS * funding)

    if "liquidations" in x:
        n = cat.LIQUIDATION_PERIOD
        liq_z = win.zscore(np.log1p(x["liquidations"][-n:]))
        out[f"liq_z_{n}"] = liq_z
        out["liq_spike"] = 1.0 if liq_z > cat.LIQUIDATION_SPIKE_Z else 0.0
