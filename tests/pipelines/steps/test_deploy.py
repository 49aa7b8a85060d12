"""Deploy compares a new version with the champion on rows that neither was trained on."""

from __future__ import annotations

import pandas as pd

from pipelines.config import get_settings

AS_OF = pd.Timestamp("2040-01-01", tz="UTC")
SYMBOL = "DEPLOYHO"


def test_shared_holdout_starts_after_both_real_training_windows(alphaops_home):
    """A version trained with --holdout 0.1 under the default setting of 0.2: its rows up to ~90%
    were training rows, so they must not decide against the champion (trained with 0.3)."""
    from pipelines.steps.build import build_features, build_labels
    from pipelines.steps.deploy import compare_on_shared_holdout
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.sources import FrameSource
    from pipelines.ingest.synthetic import autoregressive_market
    from pipelines.steps.train import train_spec
    from registry import Registry

    settings = get_settings()
    assert settings.holdout_fraction == 0.2
    ingest(FrameSource(autoregressive_market(301, 3000, phi=0.3), name="generated"), symbol=SYMBOL, timeframe="1m",
           settings=settings, as_of=AS_OF)
    ref = build_features(settings, symbol=SYMBOL, timeframe="1m", as_of=AS_OF)
    build_labels(settings, symbol=SYMBOL, timeframe="1m", spec_names=["direction_h1"], as_of=AS_OF)
    trained = {fraction: train_spec(settings, spec_name="direction_h1", symbol=SYMBOL, timeframe="1m",
                                    feature_set_version=ref["feature_set_version"], as_of=AS_OF, trials=1,
                                    holdout_fraction=fraction) for fraction in (0.3, 0.1)}
    registry = Registry.from_settings(settings)
    champion, new = trained[0.3], trained[0.1]
    new_holdout_start = pd.Timestamp(registry.client.get_model_version(new["model_name"], new["version"])
                                     .tags["holdout_start"])
    verdict = compare_on_shared_holdout(settings, registry, new["model_name"], new["version"], champion["version"],
                                        AS_OF)
    rows_after_new_training = 3000 - 3000 * 0.9  # about 300 rows follow the new version's training window
    assert 30 <= verdict["shared_rows"] <= rows_after_new_training, verdict
    assert "shared rows" in verdict["reason"] and new_holdout_start.year == 2024
