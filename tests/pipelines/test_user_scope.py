"""Users inside a tenant, end to end on the embedded state (chDB, MLflow, the real CLI).

The tenant ``default`` trains and promotes a shared model; user ann ingests her own bars and
trains the same spec on them, starting from the shared champion's best parameters; user ben
has no private model. Ann and ben both see and export the shared champion; ben cannot see or
export ann's model, and the CLI says why in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import get_settings

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("alphaops")
SYMBOL, SPEC = "USRFX", "direction_h1"
AS_OF = pd.Timestamp("2026-01-01", tz="UTC")
SHARED, ANN = f"default.{SPEC}.{SYMBOL}", f"default~ann.{SPEC}.{SYMBOL}"


def _prepare(settings, seed: int) -> str:
    """Ingest a synthetic series into ``settings``' scope and build its features and labels."""
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.samples import SyntheticSource
    from pipelines.steps.build import build_features, build_labels

    ingest(SyntheticSource(seed=seed, n_bars=2000, imbalance_coef=0.6), symbol=SYMBOL, timeframe="1m",
           settings=settings, as_of=AS_OF)
    ref = build_features(settings, symbol=SYMBOL, timeframe="1m", as_of=AS_OF)
    build_labels(settings, symbol=SYMBOL, timeframe="1m", spec_names=[SPEC], as_of=AS_OF)
    return ref["feature_set_version"]


def _train(settings, fsv: str, trials: int) -> dict:
    from pipelines.steps.train import train_spec

    return train_spec(settings, spec_name=SPEC, symbol=SYMBOL, timeframe="1m", feature_set_version=fsv,
                      as_of=AS_OF, trials=trials, holdout_fraction=0.25, trigger="test")


@pytest.fixture(scope="module")
def trained(alphaops_home):
    from registry import Registry

    shared_settings, ann_settings = get_settings(), get_settings(user="ann")
    shared = _train(shared_settings, _prepare(shared_settings, seed=5), trials=1)
    tenant = Registry.from_settings(shared_settings)
    tenant.tag(shared["model_name"], shared["version"], validation_status="validated")
    tenant.set_challenger(shared["model_name"], shared["version"], reason="test: shared champion")
    tenant.promote(shared["model_name"], reason="test: shared champion")
    ann = _train(ann_settings, _prepare(ann_settings, seed=6), trials=1)
    return {"shared": shared, "ann": ann, "client": tenant.client}


def test_user_rows_live_in_the_users_scope(trained):
    from pipelines.ingest.ingestion import data_summary
    from pipelines.steps.adapters import resolve_datasets
    from warehouse import open_warehouse

    ann, ben = get_settings(user="ann"), get_settings(user="ben")
    assert (ann.scope, ben.scope, get_settings().scope) == ("default~ann", "default~ben", "default")
    with open_warehouse(ann) as warehouse:
        shared_bars = warehouse.read_bars(tenant="default", symbol=SYMBOL, timeframe="1m")
        ann_bars = warehouse.read_bars(tenant=ann.scope, symbol=SYMBOL, timeframe="1m")
        counts = {(table, scope): warehouse.count(table, "tenant = {tenant:String} AND symbol = {symbol:String}",
                                                  {"tenant": scope, "symbol": SYMBOL})
                  for table in ("ml_features", "ml_labels") for scope in (ann.scope, ben.scope)}
    assert len(shared_bars) == len(ann_bars) == 2000
    assert not shared_bars["close"].reset_index(drop=True).equals(ann_bars["close"].reset_index(drop=True))
    assert counts[("ml_features", ann.scope)] > 0 and counts[("ml_labels", ann.scope)] > 0
    assert counts[("ml_features", ben.scope)] == counts[("ml_labels", ben.scope)] == 0
    assert resolve_datasets(ann, [SYMBOL], AS_OF) == [{"symbol": SYMBOL, "timeframe": "1m"}]
    with pytest.raises(ValueError, match=f"symbol '{SYMBOL}' has no data of user 'ben' of tenant 'default'; "
                                         "ingest it with `alphaops --user ben ingest`"):
        resolve_datasets(ben, [SYMBOL], AS_OF)
    assert SYMBOL not in {row["symbol"] for row in data_summary(ben)}
    from pipelines.app.cli.common import CliError, check_symbols

    check_symbols(ann, [SYMBOL])  # ann has rows of the symbol: no error
    with pytest.raises(CliError, match=f"symbol {SYMBOL} has no data of user 'ben' of tenant 'default'; "
                                       f"ingest it with `alphaops --user ben ingest FILE --symbol {SYMBOL}`"):
        check_symbols(ben, [SYMBOL])


def test_a_users_model_is_trained_on_their_data_from_the_shared_champion(trained):
    shared, ann, client = trained["shared"], trained["ann"], trained["client"]
    assert ann["model_name"] == ANN and shared["model_name"] == SHARED
    ann_run, shared_run = client.get_run(ann["run_id"]), client.get_run(shared["run_id"])
    tags = ann_run.data.tags
    assert (tags["tenant"], tags["user"]) == ("default", "ann")
    assert tags["warm_start"] == f"{SHARED}@champion" and tags["warm_start_version"] == shared["version"]
    assert tags["warm_start_run_id"] == shared["run_id"]
    shared_best = json.loads(shared_run.data.tags["best_params"])
    assert json.loads(tags["warm_start_params"]) == shared_best
    # The first trial of ann's study is the shared champion's parameters.
    trials = client.search_runs([ann_run.info.experiment_id],
                                filter_string=f"tags.mlflow.parentRunId = '{ann['run_id']}'")
    first = next(t for t in trials if t.info.run_name == "trial-000")
    searched = {k for k in first.data.params}
    assert searched and {k: first.data.params[k] for k in searched} == {k: str(shared_best[k]) for k in searched}
    # Ann's model learned from ann's rows: another data fingerprint, in ann's own experiment.
    assert tags["data_fingerprint"] != shared_run.data.tags["data_fingerprint"]
    assert client.get_experiment(ann_run.info.experiment_id).name == "default~ann/direction"
    assert "warm_start" not in shared_run.data.tags


def test_without_a_shared_champion_a_user_starts_from_scratch(trained):
    from pipelines.steps.train import shared_champion_start, warm_start_tags
    from registry import Registry

    ben = Registry.from_settings(get_settings(user="ben"))
    assert shared_champion_start(ben, SPEC, SYMBOL)["params"] == json.loads(
        trained["client"].get_run(trained["shared"]["run_id"]).data.tags["best_params"])
    assert shared_champion_start(ben, SPEC, "NOSUCH") is None
    assert warm_start_tags(None, f"default.{SPEC}.NOSUCH") == {
        "warm_start": f"none: default.{SPEC}.NOSUCH has no champion; the study starts from scratch"}


def _cli(*args: str, user: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ALPHAOPS_USER"}
    scope = ["--user", user] if user else []
    return subprocess.run([str(CLI), *scope, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_users_see_shared_and_own_models_never_anothers(trained, tmp_path):
    from pipelines.app.report import list_versions
    from registry import Registry

    listed = {user: {v["name"] for v in list_versions(get_settings(user=user)) if v["name"] in (SHARED, ANN)}
              for user in ("ann", "ben", "")}
    assert listed == {"ann": {SHARED, ANN}, "ben": {SHARED}, "": {SHARED}}
    for user in ("ann", "ben"):
        path = Registry.from_settings(get_settings(user=user)).load_bundle(SHARED, "champion", tmp_path / user)
        model = json.loads((path / "schema.json").read_text())["model"]
        assert (model["name"], model["tenant"], model["user"]) == (SHARED, "default", "")
    ann = Registry.from_settings(get_settings(user="ann"))
    path = ann.load_bundle(ann.qualify(f"{SPEC}.{SYMBOL}"), "1", tmp_path / "ann-own")  # short name: her own
    model = json.loads((path / "schema.json").read_text())["model"]
    assert (model["name"], model["tenant"], model["user"]) == (ANN, "default", "ann")


def test_cli_refuses_another_users_model_in_one_line(trained, tmp_path):
    refused = _cli("export", f"{ANN}@1", str(tmp_path / "ben-steals"), user="ben")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert lines == [f"error: model '{ANN}' is private to user 'ann' of tenant 'default'; user 'ben' of tenant "
                     "'default' sees only the tenant's shared models and its own"], refused.stderr
    assert not (tmp_path / "ben-steals").exists()


def test_predictions_are_keyed_by_the_scope_of_the_model_that_answered():
    from pipelines.live.prediction_sink import prediction_rows

    records = [{"model": name, "version": "1", "ts": 1_767_225_600.0, "output": {"label": 1}}
               for name in (SHARED, ANN)]
    frame = prediction_rows(records, tenant="default", timeframe="1m")
    assert dict(zip(frame["model"], frame["tenant"])) == {SHARED: "default", ANN: "default~ann"}


def test_user_names_are_validated():
    with pytest.raises(ValueError, match="ALPHAOPS_USER='Ann Smith'"):
        get_settings(user="Ann Smith")
    with pytest.raises(ValueError, match="ALPHAOPS_USER='a~b'"):  # '~' separates tenant and user
        get_settings(user="a~b")
