"""Microstructure features, computed only for the optional input columns that are present.

Groups (each needs all of its columns): tick-side flow (``buy_volume``, ``sell_volume``),
book depth (``bid_size``, ``ask_size``), ``spread``, trade count (``n_trades``),
``funding_rate`` and ``liquidations``. See :func:`features.catalog` for the feature list.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from features import talib_raw as talib  # TA-Lib C functions without the package's pandas wrapper

from features import definitions as cat
from features.indicators import BarArrays, Put, Task, rolling_vwap
from features.smoothing import Centering, level_stddev, ratio_of_sums, rolling_stddev, safe_divide, zscore

_BPS = 1e4


def microstructure_tasks(bars: BarArrays, centering: Centering | None = None) -> list[Task]:
    """The microstructure features whose columns are in ``bars.extra``, as independent
    tasks (one per column group; see :func:`features.indicators.ohlcv_tasks`).

    ``centering``: :class:`features.smoothing.Centering` of the close, if already built."""
    x = bars.extra
    tasks: list[Task] = []
    if "buy_volume" in x and "sell_volume" in x:
        shared = Centering(bars.close) if centering is None else centering
        tasks.append(Task(lambda put: _tick_flow(bars, put, shared), 110))
    for columns, group, cost in _GROUPS:
        if all(column in x for column in columns):
            tasks.append(Task(lambda put, group=group: group(bars, put), cost))
    return tasks


def _tick_flow(bars: BarArrays, put: Put, centering: Centering) -> None:
    buy, sell, c = bars.extra["buy_volume"], bars.extra["sell_volume"], bars.close
    imbalance, traded = buy - sell, buy + sell
    tick_ratio = safe_divide(imbalance, traded)
    put("tick_ratio", tick_ratio)
    for n in cat.FLOW_PERIODS:
        put(f"ofi_{n}", ratio_of_sums(imbalance, traded, n))
    put(f"tick_ratio_z_{cat.TICK_Z_PERIOD}", zscore(tick_ratio, cat.TICK_Z_PERIOD))
    n = cat.PRICE_DIST_PERIOD
    vwap = rolling_vwap(c, traded, n, centering)
    put("price_dist", safe_divide(c - vwap, level_stddev(c, n, centering=centering)))


def _depth(bars: BarArrays, put: Put) -> None:
    bid, ask = bars.extra["bid_size"], bars.extra["ask_size"]
    depth_ratio = safe_divide(bid - ask, bid + ask)
    put("depth_ratio", depth_ratio)
    put(f"depth_ratio_sma_{cat.DEPTH_PERIOD}", talib.SMA(depth_ratio, cat.DEPTH_PERIOD))


def _spread(bars: BarArrays, put: Put) -> None:
    spread_bps = _BPS * bars.extra["spread"] / bars.close
    put("spread_bps", spread_bps)
    put(f"spread_vol_{cat.SPREAD_VOL_PERIOD}", rolling_stddev(spread_bps, cat.SPREAD_VOL_PERIOD))
    put(f"spread_z_{cat.SPREAD_Z_PERIOD}", zscore(spread_bps, cat.SPREAD_Z_PERIOD))


def _trades(bars: BarArrays, put: Put) -> None:
    n_trades = bars.extra["n_trades"]
    n = cat.TRADES_PERIOD
    put(f"trade_intensity_z_{n}", zscore(np.log1p(n_trades), n))
    avg_trade_size = safe_divide(bars.volume, n_trades)
    put(f"avg_trade_size_ratio_{n}", safe_divide(avg_trade_size, talib.SMA(avg_trade_size, n), fill=1.0) - 1.0)


def _funding(bars: BarArrays, put: Put) -> None:
    funding_bps = _BPS * bars.extra["funding_rate"]
    put("funding_rate_bps", funding_bps)
    put(f"funding_dev_{cat.FUNDING_PERIOD}", zscore(funding_bps, cat.FUNDING_PERIOD))


def _liquidations(bars: BarArrays, put: Put) -> None:
    liq_z = zscore(np.log1p(bars.extra["liquidations"]), cat.LIQUIDATION_PERIOD)
    put(f"liq_z_{cat.LIQUIDATION_PERIOD}", liq_z)
    spike = (liq_z > cat.LIQUIDATION_SPIKE_Z).astype(np.float64)
    spike[np.isnan(liq_z)] = np.nan
    put("liq_spike", spike)


# The column groups after tick flow (which also needs the close's Centering), with their
# costs (see features.indicators.Task). The funding rate's z-score is dear: TA-Lib's STDDEV
# is O(period) per bar on its flat stretches (see docs/features.md).
_GROUPS: tuple[tuple[tuple[str, ...], Callable[[BarArrays, Put], None], float], ...] = (
    (("bid_size", "ask_size"), _depth, 10),
    (("spread",), _spread, 30),
    (("n_trades",), _trades, 30),
    (("funding_rate",), _funding, 120),
    (("liquidations",), _liquidations, 30),
)
