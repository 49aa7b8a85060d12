"""Microstructure features, computed only for the optional input columns that are present.

Groups (each needs all of its columns): tick-side flow (``buy_volume``, ``sell_volume``),
book depth (``bid_size``, ``ask_size``), ``spread``, trade count (``n_trades``),
``funding_rate`` and ``liquidations``. See :func:`features.catalog` for the feature list.
"""

from __future__ import annotations

import numpy as np
from features import talib_raw as talib  # TA-Lib C functions without the package's pandas wrapper

from features import definitions as cat
from features.indicators import BarArrays, Put, rolling_vwap
from features.smoothing import Centering, level_stddev, ratio_of_sums, rolling_stddev, safe_divide, zscore

_BPS = 1e4


def microstructure_features(bars: BarArrays, put: Put, centering: Centering | None = None) -> None:
    """Compute the microstructure features whose columns are in ``bars.extra``.

    ``centering``: :class:`features.smoothing.Centering` of the close, if already built."""
    x, c = bars.extra, bars.close

    if "buy_volume" in x and "sell_volume" in x:
        buy, sell = x["buy_volume"], x["sell_volume"]
        imbalance, traded = buy - sell, buy + sell
        tick_ratio = safe_divide(imbalance, traded)
        put("tick_ratio", tick_ratio)
        for n in cat.FLOW_PERIODS:
            put(f"ofi_{n}", ratio_of_sums(imbalance, traded, n))
        put(f"tick_ratio_z_{cat.TICK_Z_PERIOD}", zscore(tick_ratio, cat.TICK_Z_PERIOD))
        n = cat.PRICE_DIST_PERIOD
        centering = Centering(c) if centering is None else centering
        vwap = rolling_vwap(c, traded, n, centering)
        put("price_dist", safe_divide(c - vwap, level_stddev(c, n, centering=centering)))

    if "bid_size" in x and "ask_size" in x:
        bid, ask = x["bid_size"], x["ask_size"]
        depth_ratio = safe_divide(bid - ask, bid + ask)
        put("depth_ratio", depth_ratio)
        put(f"depth_ratio_sma_{cat.DEPTH_PERIOD}", talib.SMA(depth_ratio, cat.DEPTH_PERIOD))

    if "spread" in x:
        spread_bps = _BPS * x["spread"] / c
        put("spread_bps", spread_bps)
        put(f"spread_vol_{cat.SPREAD_VOL_PERIOD}", rolling_stddev(spread_bps, cat.SPREAD_VOL_PERIOD))
        put(f"spread_z_{cat.SPREAD_Z_PERIOD}", zscore(spread_bps, cat.SPREAD_Z_PERIOD))

    if "n_trades" in x:
        n_trades = x["n_trades"]
        n = cat.TRADES_PERIOD
        put(f"trade_intensity_z_{n}", zscore(np.log1p(n_trades), n))
        avg_trade_size = safe_divide(bars.volume, n_trades)
        put(f"avg_trade_size_ratio_{n}", safe_divide(avg_trade_size, talib.SMA(avg_trade_size, n), fill=1.0) - 1.0)

    if "funding_rate" in x:
        funding = x["funding_rate"]
        put("funding_rate_bps", _BPS * funding)
        put(f"funding_dev_{cat.FUNDING_PERIOD}", zscore(_BPS * funding, cat.FUNDING_PERIOD))

    if "liquidations" in x:
        liq_z = zscore(np.log1p(x["liquidations"]), cat.LIQUIDATION_PERIOD)
        put(f"liq_z_{cat.LIQUIDATION_PERIOD}", liq_z)
        spike = (liq_z > cat.LIQUIDATION_SPIKE_Z).astype(np.float64)
        spike[np.isnan(liq_z)] = np.nan
        put("liq_spike", spike)
