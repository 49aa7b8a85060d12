"""The monitor's thresholds, in one frozen dataclass shared by drift, retraining and alerts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds of the monitor (defaults measured on the synthetic market; see docs/monitoring.md)."""

    drift_share_threshold: float = 0.3      # retrain when more than this share of features drifted
    feature_drift_method: str = "wasserstein"  # Evidently stattest per feature (and for the output)
    feature_drift_threshold: float = 0.2    # normed Wasserstein distance that counts as drift
    baseline_factor: float = 0.9            # live accuracy < factor x holdout majority baseline
    backtest_margin: float = 0.05           # live accuracy more than this below holdout accuracy
    min_predictions: int = 200              # fewer valid rows: no drift check
    min_outcomes: int = 100                 # fewer known outcomes: no accuracy trigger
    reference_rows: int = 5000              # training rows sampled as the drift reference
    drift_preset: bool = False              # True: DataDriftPreset (adds its legacy summary table to the
                                            # HTML; same per-feature tests, ~1.8x the CPU and HTML size)
    max_model_age_hours: float = 168.0      # scheduled checks retrain older models
    retrain_cooldown_hours: float = 12.0    # no new automatic request this soon after the last (0: off)
    report_interval_hours: float = 24.0     # HTML report of a quiet check at most this often per model
                                            # (always on drift or a retrain trigger; 0: every check)
    max_latency_p99_us: float = 5000.0      # alert above (pipelines.live.alerts)
    max_error_rate: float = 0.01            # alert above (pipelines.live.alerts)
    seed: int = 42

