"""The memory guard: an over-budget step fails before it reads, naming the step, the estimate and the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import get_settings
from pipelines.ingest.ingestion import ingest
from pipelines.memory import BYTES_PER_BAR, MB, MemoryBudgetExceeded, estimate_peak_bytes, memory_budget_bytes, require_memory
from pipelines.ingest.samples import SyntheticSource
from warehouse import open_warehouse

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
CLI = Path(sys.executable).with_name("alphaops")


def test_estimates_grow_with_rows_and_features_are_bounded_by_the_piece():
    small = estimate_peak_bytes("train", rows=100_000, n_features=140, chunk_rows=200_000)
    large = estimate_peak_bytes("train", rows=1_000_000, n_features=140, chunk_rows=200_000)
    assert large > small and (large - small) >= 900_000 * 140 * 4  # at least the float32 matrix
    one_piece = estimate_peak_bytes("features", rows=200_000, n_features=140, chunk_rows=200_000)
    ten_pieces = estimate_peak_bytes("features", rows=2_000_000, n_features=140, chunk_rows=200_000)
    # only the per-bar part grows: the cells of one piece are the same
    assert ten_pieces - one_piece == 1_800_000 * BYTES_PER_BAR["features"]


def test_the_budget_is_the_setting_or_half_the_machine():
    import psutil

    assert memory_budget_bytes(get_settings(memory_budget_mb=512)) == 512 * MB
    assert memory_budget_bytes(get_settings()) == psutil.virtual_memory().total // 2


def test_require_memory_names_the_step_the_estimate_and_the_setting():
    settings = get_settings(memory_budget_mb=700)
    assert require_memory(settings, "labels", rows=1_000, n_features=0).fits
    with pytest.raises(MemoryBudgetExceeded) as err:
        require_memory(settings, "train", rows=2_600_000, n_features=142)
    text = str(err.value)
    assert text.startswith("train: estimated peak memory") and "2,600,000 bars x 142 features" in text
    assert "over the budget of 700 MB" in text and "ALPHAOPS_MEMORY_BUDGET_MB" in text


def test_an_over_budget_features_step_fails_before_writing_anything(alphaops_home):
    from pipelines.steps.build import build_features

    settings = get_settings()
    ingest(SyntheticSource(seed=5, n_bars=3_000), symbol="MEMGUARD", timeframe="1m", settings=settings, as_of=AS_OF)
    with pytest.raises(MemoryBudgetExceeded, match=r"^features: estimated peak memory .* 3,000 bars"):
        build_features(get_settings(memory_budget_mb=64), symbol="MEMGUARD", timeframe="1m", as_of=AS_OF)
    with open_warehouse(settings) as warehouse:
        assert warehouse.count("ml_features", "symbol = {s:String}", {"s": "MEMGUARD"}) == 0
    assert build_features(settings, symbol="MEMGUARD", timeframe="1m", as_of=AS_OF)["rows"] == 3_000


def test_alphaops_run_over_budget_prints_the_guard_message_not_an_oom(alphaops_home, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ALPHAOPS_HOME": str(home), "ALPHAOPS_MEMORY_BUDGET_MB": "64"}
    result = subprocess.run([str(CLI), "run", "--symbols", "SYN1", "--families", "direction_h1", "--trials", "1"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode != 0 and result.returncode != -9
    assert "features: estimated peak memory" in result.stdout + result.stderr
    assert "ALPHAOPS_MEMORY_BUDGET_MB" in result.stdout + result.stderr


def test_an_over_budget_ingest_fails_before_reading_the_file(alphaops_home, tmp_path):
    from pipelines.ingest.ingestion import file_rows, ingest_file

    bars = SyntheticSource(seed=6, n_bars=2_000).read()
    csv, parquet = tmp_path / "bars.csv", tmp_path / "bars.parquet"
    bars.rename_axis("timestamp").reset_index().to_csv(csv, index=False)
    bars.rename_axis("timestamp").reset_index().to_parquet(parquet)
    assert file_rows(parquet) == 2_000 and file_rows(csv) == 2_001  # the header line counts: it errs high
    for path in (csv, parquet):
        with pytest.raises(MemoryBudgetExceeded, match=r"^ingest: estimated peak memory .* bars"):
            ingest_file(path, symbol="MEMINGEST", timeframe="1m", settings=get_settings(memory_budget_mb=64),
                        as_of=AS_OF)
    with open_warehouse(get_settings()) as warehouse:
        assert warehouse.count("bars", "symbol = {s:String}", {"s": "MEMINGEST"}) == 0
