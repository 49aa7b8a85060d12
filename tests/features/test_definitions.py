"""The feature-set catalog, its version and the package's import footprint."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd

import features


def test_catalog_lists_more_than_100_ohlcv_features_with_unique_names():
    ohlcv = features.feature_names()
    everything = features.feature_names(microstructure=True)
    assert len(ohlcv) >= 100
    assert len(set(everything)) == len(everything)
    assert everything[: len(ohlcv)] == ohlcv
    assert [info.name for info in features.catalog()] == everything


def test_catalog_covers_every_required_family():
    names = set(features.feature_names(microstructure=True))
    required = {
        "sma_dist_200", "ema_dist_10", "ema_slope_50", "macd_line", "macd_signal", "macd_hist",
        "adx_14", "plus_di_14", "minus_di_14", "ichimoku_tenkan_dist", "ichimoku_kijun_dist",
        "ichimoku_senkou_a_dist", "ichimoku_senkou_b_dist", "rsi_14", "stoch_k", "stoch_d", "cci_20",
        "willr_14", "roc_10", "roc_20", "mom_10_atr", "bb_pctb_20", "bb_width_20", "atr_pct_14",
        "keltner_pos_20", "donchian_pos_20", "rv_20", "hv_20", "obv_slope_z_20", "vwap_dist_sigma_20",
        "mfi_14", "vol_ratio_20", "vol_z_20", "vp_divergence_20", "cdl_engulfing", "resistance_dist_50",
        "support_dist_50", "pivot_dist", "pivot60_dist", "consolidation_len", "hour_sin", "dow_cos",
        "ret_1", "ret_5", "tick_ratio", "depth_ratio", "price_dist", "ofi_20", "spread_bps",
        "spread_vol_20", "trade_intensity_z_60", "funding_dev_100", "liq_spike",
    }  # fmt: skip
    assert required <= names
    assert len([name for name in names if name.startswith("cdl_")]) >= 5


def test_every_entry_is_documented_and_grouped():
    groups = {"returns", "trend", "momentum", "volatility", "volume", "structure", "time", "microstructure"}
    for info in features.catalog():
        assert info.group in groups, info
        assert info.warmup >= 0 and info.description, info
        assert set(info.requires) <= set(features.OHLCV_COLUMNS) | set(features.MICROSTRUCTURE_COLUMNS)
    frame = features.catalog(as_frame=True)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["name", "group", "warmup", "description", "requires"]
    assert len(frame) == len(features.feature_names(microstructure=True))


def test_microstructure_features_require_their_columns():
    micro = [info for info in features.catalog() if info.group == "microstructure"]
    assert micro and all(set(info.requires) - set(features.OHLCV_COLUMNS) for info in micro)
    assert {info.name for info in micro} == set(features.feature_names(True)) - set(features.feature_names())


def test_feature_set_version_is_a_versioned_identifier():
    assert re.fullmatch(r"fs-\d+\.\d+", features.FEATURE_SET_VERSION)


def test_importing_features_loads_no_heavy_dependency():
    heavy = ["sklearn", "mlflow", "torch", "airflow", "lightgbm", "onnxruntime", "evidently", "great_expectations"]
    code = f"import sys, features; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
