"""Feature-set definitions: parameters, and the catalog of every feature's name, group,
warm-up and meaning.

The catalog is the single source of truth for names, order and warm-ups. The engine
(:mod:`features.indicators`, :mod:`features.microstructure`) fills exactly these columns,
and a test checks that each feature's value at bar t depends only on bars
``t - warmup .. t`` (its warm-up is its memory).

Warm-up = number of leading bars that are NaN = bars of history a value needs besides the
current bar. Formulas below use the smoothing lengths of :mod:`features.smoothing`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
import talib.abstract

from features.smoothing import ema_length, wilder_length

FEATURE_SET_VERSION = "fs-1.2"
"""Bump when any feature's definition, name or order changes (models record it in schema.json)."""

# The columns of a bar: OHLCV, then the optional microstructure columns. The warehouse's
# bars table and the data sources take theirs from here.
OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
MICROSTRUCTURE_COLUMNS: tuple[str, ...] = (
    "buy_volume",
    "sell_volume",
    "bid_size",
    "ask_size",
    "spread",
    "n_trades",
    "funding_rate",
    "liquidations",
)

# --- parameters shared by the catalog and the engine ------------------------------------
RETURN_LAGS = (1, 2, 3, 5, 10, 20, 60)
MA_PERIODS = (10, 20, 50, 100, 200)
EMA_SLOPE_LAG = 5
MA_CROSSES = (("sma", 10, 50), ("ema", 20, 50), ("ema", 50, 200))
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
ATR_PERIOD = 14
ADX_PERIOD = 14
AROON_PERIOD = 25
ICHIMOKU_TENKAN, ICHIMOKU_KIJUN, ICHIMOKU_SENKOU_B = 9, 26, 52  # senkou spans lead by kijun
LINREG_PERIODS = (20, 50)
RSI_PERIODS = (7, 14, 21)
STOCH_K, STOCH_SMOOTH_K, STOCH_D = 14, 3, 3
CCI_PERIODS = (14, 20)
WILLR_PERIOD = 14
ROC_PERIODS = (10, 20)
MOMENTUM_PERIOD = 10
ULTOSC_PERIODS = (7, 14, 28)
BOP_PERIOD = 14
BBANDS_PERIODS = (20, 50)
BBANDS_NBDEV = 2.0
ATR_SLOW_PERIOD = 50
KELTNER_PERIOD, KELTNER_ATR_MULT = 20, 2.0
DONCHIAN_PERIODS = (20, 55)
RV_PERIODS = (10, 20, 60)
HV_PERIODS = (20, 100)
RANGE_VOL_PERIOD = 20
HAR_PERIODS = (1, 5, 22)  # daily, weekly and monthly terms of HAR volatility models (Corsi 2009)
OBV_PERIOD = 20
OBV_Z_PERIOD = 100
VWAP_PERIODS = (20, 60)
MFI_PERIOD = 14
VOLUME_PERIOD = 20
VOLUME_Z_PERIODS = (20, 100)
LOG_VOLUME_PERIODS = (1, 10, 60, 240)  # ln(1 + mean volume) over these bars: the liquidity family's trend terms
LOG_VOLUME_TREND = (10, 240)
VP_PERIOD = 20
CMF_PERIOD = 20
CANDLE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("CDLDOJI", "doji"),
    ("CDLHAMMER", "hammer"),
    ("CDLHANGINGMAN", "hanging_man"),
    ("CDLINVERTEDHAMMER", "inverted_hammer"),
    ("CDLSHOOTINGSTAR", "shooting_star"),
    ("CDLENGULFING", "engulfing"),
    ("CDLHARAMI", "harami"),
    ("CDLPIERCING", "piercing"),
    ("CDLDARKCLOUDCOVER", "dark_cloud_cover"),
    ("CDLMORNINGSTAR", "morning_star"),
    ("CDLEVENINGSTAR", "evening_star"),
    ("CDL3WHITESOLDIERS", "three_white_soldiers"),
    ("CDL3BLACKCROWS", "three_black_crows"),
    ("CDLMARUBOZU", "marubozu"),
    ("CDLSPINNINGTOP", "spinning_top"),
    ("CDLDRAGONFLYDOJI", "dragonfly_doji"),
    ("CDLGRAVESTONEDOJI", "gravestone_doji"),
)
SR_PERIODS = (20, 50, 100)
PIVOT_PERIOD = 60
CONSOLIDATION_CHANNEL = 20
CONSOLIDATION_CAP = 100
RANGE_COMPRESSION_PERIOD = 20
# microstructure
FLOW_PERIODS = (20, 60)
TICK_Z_PERIOD = 60
PRICE_DIST_PERIOD = 60
DEPTH_PERIOD = 20
SPREAD_VOL_PERIOD = 20
SPREAD_Z_PERIOD = 60
TRADES_PERIOD = 60
FUNDING_PERIOD = 100
LIQUIDATION_PERIOD = 100
LIQUIDATION_SPIKE_Z = 3.0

# Warm-ups of shared intermediates.
WARMUP_ATR = 1 + wilder_length(ATR_PERIOD) - 1  # TRANGE needs the previous close
WARMUP_DI = 1 + wilder_length(ADX_PERIOD) - 1


@dataclass(frozen=True)
class FeatureInfo:
    """One feature of the set.

    ``warmup``: leading bars that are NaN; the value at bar t depends only on bars
    ``t - warmup .. t``. ``requires``: input columns the feature needs.
    """

    name: str
    group: str
    warmup: int
    description: str
    requires: tuple[str, ...] = OHLCV_COLUMNS


def _talib_lookback(function: str, **params: int) -> int:
    fn = talib.abstract.Function(function)
    if params:
        fn.set_parameters(params)
    return int(fn.lookback)


def _ohlcv_features() -> list[FeatureInfo]:
    out: list[FeatureInfo] = []

    def add(name: str, group: str, warmup: int, description: str) -> None:
        out.append(FeatureInfo(name, group, warmup, description))

    # returns
    for lag in RETURN_LAGS:
        add(f"ret_{lag}", "returns", lag, f"log return over {lag} bars: ln(close_t / close_t-{lag})")

    # trend
    for n in MA_PERIODS:
        add(f"sma_dist_{n}", "trend", n - 1, f"close / SMA({n}) - 1")
    for n in MA_PERIODS:
        add(f"ema_dist_{n}", "trend", ema_length(n) - 1,
            f"close / EMA({n}) - 1, EMA truncated to {ema_length(n)} bars")
    for n in MA_PERIODS:
        add(f"ema_slope_{n}", "trend", ema_length(n) - 1 + EMA_SLOPE_LAG,
            f"EMA({n}) relative change over {EMA_SLOPE_LAG} bars")
    for kind, fast, slow in MA_CROSSES:
        warm = slow - 1 if kind == "sma" else ema_length(slow) - 1
        add(f"{kind}_cross_{fast}_{slow}", "trend", warm, f"{kind.upper()}({fast}) / {kind.upper()}({slow}) - 1")
    macd_warm = ema_length(MACD_SLOW) - 1
    signal_warm = macd_warm + ema_length(MACD_SIGNAL) - 1
    add("macd_line", "trend", max(macd_warm, WARMUP_ATR), "MACD(12,26) line / ATR(14)")
    add("macd_signal", "trend", max(signal_warm, WARMUP_ATR), "MACD signal EMA(9) / ATR(14)")
    add("macd_hist", "trend", max(signal_warm, WARMUP_ATR), "MACD histogram (line - signal) / ATR(14)")
    adx_warm = WARMUP_DI + wilder_length(ADX_PERIOD) - 1
    add(f"adx_{ADX_PERIOD}", "trend", adx_warm, "ADX(14), Wilder smoothing truncated")
    add(f"plus_di_{ADX_PERIOD}", "trend", WARMUP_DI, "+DI(14)")
    add(f"minus_di_{ADX_PERIOD}", "trend", WARMUP_DI, "-DI(14)")
    add(f"di_spread_{ADX_PERIOD}", "trend", WARMUP_DI, "+DI(14) - -DI(14)")
    aroon_warm = _talib_lookback("AROON", timeperiod=AROON_PERIOD)
    add(f"aroon_up_{AROON_PERIOD}", "trend", aroon_warm, "Aroon up(25) (TA-Lib)")
    add(f"aroon_down_{AROON_PERIOD}", "trend", aroon_warm, "Aroon down(25) (TA-Lib)")
    add(f"aroon_osc_{AROON_PERIOD}", "trend", aroon_warm, "Aroon oscillator(25) (TA-Lib)")
    tenkan_warm, kijun_warm = ICHIMOKU_TENKAN - 1, ICHIMOKU_KIJUN - 1
    senkou_a_warm = kijun_warm + ICHIMOKU_KIJUN
    senkou_b_warm = ICHIMOKU_SENKOU_B - 1 + ICHIMOKU_KIJUN
    add("ichimoku_tenkan_dist", "trend", tenkan_warm, "close / tenkan-sen(9) - 1")
    add("ichimoku_kijun_dist", "trend", kijun_warm, "close / kijun-sen(26) - 1")
    add("ichimoku_senkou_a_dist", "trend", senkou_a_warm,
        "close / senkou span A - 1 (the cloud at t: computed 26 bars earlier)")
    add("ichimoku_senkou_b_dist", "trend", senkou_b_warm, "close / senkou span B(52) - 1 (cloud at t)")
    add("ichimoku_cloud_thickness", "trend", senkou_b_warm, "(senkou A - senkou B) / close")
    for n in LINREG_PERIODS:
        add(f"linreg_slope_{n}", "trend", max(n - 1, WARMUP_ATR), f"linear-regression slope({n}) of close / ATR(14)")

    # momentum
    for n in RSI_PERIODS:
        add(f"rsi_{n}", "momentum", 1 + wilder_length(n) - 1, f"RSI({n}), Wilder smoothing truncated")
    stoch_warm = _talib_lookback("STOCH", fastk_period=STOCH_K, slowk_period=STOCH_SMOOTH_K, slowd_period=STOCH_D)
    add("stoch_k", "momentum", stoch_warm, "slow stochastic %K(14,3) (TA-Lib, SMA smoothing)")
    add("stoch_d", "momentum", stoch_warm, "slow stochastic %D(3) (TA-Lib, SMA smoothing)")
    for n in CCI_PERIODS:
        add(f"cci_{n}", "momentum", _talib_lookback("CCI", timeperiod=n), f"CCI({n}) (TA-Lib)")
    add(f"willr_{WILLR_PERIOD}", "momentum", _talib_lookback("WILLR", timeperiod=WILLR_PERIOD), "Williams %R(14)")
    for n in ROC_PERIODS:
        add(f"roc_{n}", "momentum", n, f"rate of change over {n} bars, close_t / close_t-{n} - 1")
    add(f"mom_{MOMENTUM_PERIOD}_atr", "momentum", max(MOMENTUM_PERIOD, WARMUP_ATR), "momentum(10) / ATR(14)")
    add("ultosc", "momentum", _talib_lookback("ULTOSC"), "ultimate oscillator(7,14,28) (TA-Lib)")
    add(f"bop_{BOP_PERIOD}", "momentum", BOP_PERIOD - 1, "balance of power, SMA(14)")

    # volatility
    for n in BBANDS_PERIODS:
        add(f"bb_pctb_{n}", "volatility", n - 1, f"Bollinger %B({n}, 2σ)")
        add(f"bb_width_{n}", "volatility", n - 1, f"Bollinger bandwidth({n}, 2σ) / middle band")
    atr_slow_warm = 1 + wilder_length(ATR_SLOW_PERIOD) - 1
    add(f"atr_pct_{ATR_PERIOD}", "volatility", WARMUP_ATR, "ATR(14) / close")
    add(f"atr_pct_{ATR_SLOW_PERIOD}", "volatility", atr_slow_warm, "ATR(50) / close")
    add(f"atr_ratio_{ATR_PERIOD}_{ATR_SLOW_PERIOD}", "volatility", atr_slow_warm, "ATR(14) / ATR(50)")
    keltner_warm = max(ema_length(KELTNER_PERIOD) - 1, WARMUP_ATR)
    add(f"keltner_pos_{KELTNER_PERIOD}", "volatility", keltner_warm,
        "(close - EMA(20)) / (2 ATR(14)): position in the Keltner channel, ±1 at the bands")
    add(f"keltner_width_{KELTNER_PERIOD}", "volatility", keltner_warm, "Keltner channel width 4 ATR(14) / EMA(20)")
    for n in DONCHIAN_PERIODS:
        add(f"donchian_pos_{n}", "volatility", n - 1, f"(close - low_{n}) / (high_{n} - low_{n})")
        add(f"donchian_width_{n}", "volatility", n - 1, f"(high_{n} - low_{n}) / close")
    for n in RV_PERIODS:
        add(f"rv_{n}", "volatility", n, f"realized volatility: sqrt(mean squared log return over {n} bars)")
    for n in HV_PERIODS:
        add(f"hv_{n}", "volatility", n, f"historical volatility: std of log returns over {n} bars (per bar)")
    add(f"parkinson_vol_{RANGE_VOL_PERIOD}", "volatility", RANGE_VOL_PERIOD - 1, "Parkinson high-low volatility(20)")
    add(f"garman_klass_vol_{RANGE_VOL_PERIOD}", "volatility", RANGE_VOL_PERIOD - 1, "Garman-Klass OHLC volatility(20)")
    # HAR terms: close-to-close and range-based volatility over 1, 5 and 22 bars (per bar, zero-mean)
    for n in HAR_PERIODS:
        add(f"rv_{n}", "volatility", n, f"realized volatility: sqrt(mean squared log return over {n} bar(s))")
        add(f"parkinson_vol_{n}", "volatility", n - 1,
            f"Parkinson volatility over {n} bar(s): sqrt(mean ln(H/L)^2 / (4 ln 2))")
        add(f"garman_klass_vol_{n}", "volatility", n - 1, f"Garman-Klass volatility over {n} bar(s): "
            "sqrt(mean 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2), floored at 0")
        add(f"rogers_satchell_vol_{n}", "volatility", n - 1, f"Rogers-Satchell volatility over {n} bar(s): "
            "sqrt(mean ln(H/O) ln(H/C) + ln(L/O) ln(L/C)), each bar's term floored at 0")
        if n > 1:
            add(f"yang_zhang_vol_{n}", "volatility", n, f"Yang-Zhang volatility over {n} bars: sqrt(mean ln(O/C_prev)^2 "
                "+ k mean ln(C/O)^2 + (1 - k) RS^2), k = 0.34 / (1.34 + (n + 1) / (n - 1)); raw second moments")
    add("rv_ratio_10_60", "volatility", 60, "rv_10 / rv_60")
    add("range_pct", "volatility", 0, "(high - low) / close of the bar")
    add("tr_atr", "volatility", WARMUP_ATR, "true range / ATR(14)")

    # volume
    add(f"obv_flow_{OBV_PERIOD}", "volume", OBV_PERIOD,
        "OBV change over 20 bars / volume over 20 bars (in [-1, 1])")
    add(f"obv_slope_z_{OBV_PERIOD}", "volume", OBV_PERIOD + OBV_Z_PERIOD - 1,
        "z-score over 100 bars of the 20-bar OBV slope")
    for n in VWAP_PERIODS:
        add(f"vwap_dist_sigma_{n}", "volume", n - 1, f"(close - rolling VWAP({n})) / std(close, {n})")
    add(f"vwap_dist_pct_{VWAP_PERIODS[0]}", "volume", VWAP_PERIODS[0] - 1, "close / rolling VWAP(20) - 1")
    add(f"mfi_{MFI_PERIOD}", "volume", _talib_lookback("MFI", timeperiod=MFI_PERIOD), "money flow index(14) (TA-Lib)")
    add(f"vol_ratio_{VOLUME_PERIOD}", "volume", VOLUME_PERIOD - 1, "volume / SMA(volume, 20)")
    for n in VOLUME_Z_PERIODS:
        add(f"vol_z_{n}", "volume", n - 1, f"z-score of ln(1 + volume) over {n} bars")
    add(f"vp_corr_{VP_PERIOD}", "volume", VP_PERIOD,
        "correlation(20) of log return and log volume change")
    add(f"vp_divergence_{VP_PERIOD}", "volume", VP_PERIOD,
        "price position in 20-bar range minus OBV-flow position: >0 price leads volume")
    add(f"cmf_{CMF_PERIOD}", "volume", CMF_PERIOD - 1, "Chaikin money flow(20)")
    for n in LOG_VOLUME_PERIODS:
        add(f"log_vol_{n}", "volume", n - 1, f"ln(1 + mean volume of the last {n} bar(s))")
    fast, slow = LOG_VOLUME_TREND
    add(f"log_vol_trend_{fast}_{slow}", "volume", slow - 1, f"log_vol_{fast} - log_vol_{slow}: the recent volume trend")

    # structure
    for function, short in CANDLE_PATTERNS:
        add(f"cdl_{short}", "structure", _talib_lookback(function),
            f"TA-Lib {function} / 100: +1 bullish, -1 bearish, 0 none (±0.8: unconfirmed)")
    add("candle_body", "structure", 0, "(close - open) / (high - low)")
    add("candle_upper_wick", "structure", 0, "(high - max(open, close)) / (high - low)")
    add("candle_lower_wick", "structure", 0, "(min(open, close) - low) / (high - low)")
    for n in SR_PERIODS:
        add(f"resistance_dist_{n}", "structure", max(n - 1, WARMUP_ATR), f"(max(high, {n}) - close) / ATR(14)")
        add(f"support_dist_{n}", "structure", max(n - 1, WARMUP_ATR), f"(close - min(low, {n})) / ATR(14)")
    pivots = (("pivot", 1, "previous bar"), (f"pivot{PIVOT_PERIOD}", PIVOT_PERIOD, "previous 60 bars"))
    for prefix, warm, what in pivots:
        warm = max(warm, WARMUP_ATR)
        add(f"{prefix}_dist", "structure", warm, f"(close - pivot P) / ATR(14); P = (H + L + C) / 3 of the {what}")
        add(f"{prefix}_r1_dist", "structure", warm, f"(close - R1) / ATR(14); R1 = 2P - L of the {what}")
        add(f"{prefix}_s1_dist", "structure", warm, f"(close - S1) / ATR(14); S1 = 2P - H of the {what}")
    add("consolidation_len", "structure", CONSOLIDATION_CHANNEL + CONSOLIDATION_CAP - 1,
        "bars since close last broke out of the previous 20-bar high/low, capped at 100")
    add(f"range_compression_{RANGE_COMPRESSION_PERIOD}", "structure", max(RANGE_COMPRESSION_PERIOD - 1, WARMUP_ATR),
        "(high_20 - low_20) / ATR(14)")

    # time (UTC)
    add("hour_sin", "time", 0, "sin(2π hour-of-day / 24), hour with minutes as fraction, UTC")
    add("hour_cos", "time", 0, "cos(2π hour-of-day / 24), UTC")
    add("dow_sin", "time", 0, "sin(2π day-of-week / 7), Monday = 0, UTC")
    add("dow_cos", "time", 0, "cos(2π day-of-week / 7), UTC")
    add("holiday", "time", 0, "1 if the bar's UTC date is an NYSE holiday (holidays.financial_holidays), else 0")
    add("holiday_next_day", "time", 0, "1 if the next UTC calendar day is an NYSE holiday, else 0 (the calendar "
        "is published in advance)")
    return out


def _microstructure_features() -> list[FeatureInfo]:
    out: list[FeatureInfo] = []

    def add(name: str, requires: tuple[str, ...], warmup: int, description: str) -> None:
        out.append(FeatureInfo(name, "microstructure", warmup, description, requires))

    flow = ("buy_volume", "sell_volume")
    add("tick_ratio", flow, 0, "(buy - sell) / (buy + sell) tick-side volume of the bar")
    for n in FLOW_PERIODS:
        add(f"ofi_{n}", flow, n - 1, f"order-flow imbalance over {n} bars: Σ(buy - sell) / Σ(buy + sell)")
    add(f"tick_ratio_z_{TICK_Z_PERIOD}", flow, TICK_Z_PERIOD - 1, "z-score of tick_ratio over 60 bars")
    add("price_dist", flow + ("close",), PRICE_DIST_PERIOD - 1,
        "(close - VWAP of buy+sell volume over 60 bars) / std(close, 60): the σ-reversion gate's price_dist")
    depth = ("bid_size", "ask_size")
    add("depth_ratio", depth, 0, "(bid - ask) / (bid + ask) top-of-book depth")
    add(f"depth_ratio_sma_{DEPTH_PERIOD}", depth, DEPTH_PERIOD - 1, "SMA(20) of depth_ratio")
    spread = ("spread", "close")
    add("spread_bps", spread, 0, "spread / close in basis points")
    add(f"spread_vol_{SPREAD_VOL_PERIOD}", spread, SPREAD_VOL_PERIOD - 1, "std of spread_bps over 20 bars")
    add(f"spread_z_{SPREAD_Z_PERIOD}", spread, SPREAD_Z_PERIOD - 1, "z-score of spread_bps over 60 bars")
    trades = ("n_trades", "volume")
    add(f"trade_intensity_z_{TRADES_PERIOD}", trades, TRADES_PERIOD - 1, "z-score of ln(1 + n_trades) over 60 bars")
    add(f"avg_trade_size_ratio_{TRADES_PERIOD}", trades, TRADES_PERIOD - 1,
        "(volume / n_trades) / its SMA(60) - 1")
    add("funding_rate_bps", ("funding_rate",), 0, "funding rate in basis points")
    add(f"funding_dev_{FUNDING_PERIOD}", ("funding_rate",), FUNDING_PERIOD - 1, "z-score of funding rate over 100 bars")
    liq = ("liquidations",)
    add(f"liq_z_{LIQUIDATION_PERIOD}", liq, LIQUIDATION_PERIOD - 1, "z-score of ln(1 + liquidations) over 100 bars")
    add("liq_spike", liq, LIQUIDATION_PERIOD - 1, "1 if liq_z_100 > 3 (liquidation spike), else 0")
    return out


_OHLCV_FEATURES: tuple[FeatureInfo, ...] = tuple(_ohlcv_features())
_MICROSTRUCTURE_FEATURES: tuple[FeatureInfo, ...] = tuple(_microstructure_features())
_ALL_FEATURES = _OHLCV_FEATURES + _MICROSTRUCTURE_FEATURES

WARMUP: int = max(info.warmup for info in _ALL_FEATURES)
"""Largest warm-up of any feature: a value at bar t depends on at most bars t-WARMUP..t."""
LOOKBACK: int = WARMUP + 1
"""Bars that :func:`features.compute_latest` needs (and uses) to reproduce ``compute``."""


def catalog(as_frame: bool = False) -> list[FeatureInfo] | pd.DataFrame:
    """Every feature :func:`features.compute` can produce, in output order.

    ``as_frame=True`` returns a DataFrame with columns name, group, warmup, description, requires.
    """
    if as_frame:
        return pd.DataFrame([asdict(info) for info in _ALL_FEATURES])
    return list(_ALL_FEATURES)


def feature_names(microstructure: bool = False) -> list[str]:
    """Names of the OHLCV features, plus every microstructure feature if ``microstructure``."""
    infos = _ALL_FEATURES if microstructure else _OHLCV_FEATURES
    return [info.name for info in infos]


def max_warmup(names: list[str] | None = None) -> int:
    """Largest warm-up among ``names`` (all features if None)."""
    if names is None:
        return WARMUP
    by_name = {info.name: info.warmup for info in _ALL_FEATURES}
    return max(by_name[name] for name in names)
