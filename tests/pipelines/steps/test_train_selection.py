"""Feature selection in the train step: chosen on the training window, recorded in the version,
and read back by validation (same rows, same fingerprint)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines.config import get_settings

SYMBOL = "SYNSELECT"
AS_OF = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture(scope="module")
def prepared():
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.samples import SyntheticSource
    from pipelines.steps.build import build_features, build_labels

    settings = get_settings()
    ingest(SyntheticSource(seed=11, n_bars=4000, imbalance_coef=0.6), symbol=SYMBOL, timeframe="1m",
           settings=settings, as_of=AS_OF)
    ref = build_features(settings, symbol=SYMBOL, timeframe="1m", as_of=AS_OF)
    build_labels(settings, symbol=SYMBOL, timeframe="1m", spec_names=["direction_h1"], as_of=AS_OF)
    return settings, ref["feature_set_version"]


def _train(settings, fsv: str, as_of: pd.Timestamp) -> dict:
    from pipelines.steps.train import train_spec

    return train_spec(settings, spec_name="direction_h1", symbol=SYMBOL, timeframe="1m", feature_set_version=fsv,
                      as_of=as_of, trials=1, holdout_fraction=0.25, trigger="test")


def test_a_selected_version_records_its_features_and_validates_on_the_same_rows(prepared, tmp_path):
    from pipelines.steps.validate import validate_version
    from registry import Registry

    settings, fsv = prepared
    trained = _train(settings, fsv, AS_OF)
    registry = Registry.from_settings(settings)
    version = registry.client.get_model_version(trained["model_name"], trained["version"])
    kept, total = map(int, version.tags["features_selected"].split("/"))
    assert 8 <= kept < total
    run = registry.client.get_run(trained["run_id"])
    summary = json.loads(run.data.tags["feature_selection"])
    assert summary["kept"] == kept and summary["kept"] + summary["dropped"] == total
    bundle = registry.load_bundle(trained["model_name"], trained["version"], tmp_path / "bundle")
    schema = json.loads((bundle / "schema.json").read_text())
    assert len(schema["features"]) == kept
    table = pd.read_csv(registry.client.download_artifacts(trained["run_id"], "selection/feature_selection.csv"))
    assert set(table.loc[table["kept"], "feature"]) == set(schema["features"])
    assert table["feature"].str.startswith("shadow_").sum() == summary["shadows"]
    # Validation reads the schema's features back: a different matrix would fail its fingerprint check.
    result = validate_version(settings, model_name=trained["model_name"], version=trained["version"], as_of=AS_OF)
    assert result["status"] in ("validated", "rejected")


def test_with_selection_off_every_usable_feature_is_kept(prepared):
    from registry import Registry

    settings, fsv = prepared
    off = settings.model_copy(update={"feature_selection": False})
    trained = _train(off, fsv, AS_OF + pd.Timedelta(minutes=1))
    version = Registry.from_settings(off).client.get_model_version(trained["model_name"], trained["version"])
    assert version.tags["features_selected"] == "all"
