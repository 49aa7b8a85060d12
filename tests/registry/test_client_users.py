"""Users inside a tenant, on a real MLflow (SQLite) store: each user reads the tenant's shared
models and their own, writes only their own, and never sees another user's private model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from registry import CHAMPION, Registry, RegistryError, model_name

SPEC, SYMBOL = "direction_h1", "USR"


def _bundle(directory: Path, seed: int) -> Path:
    from models.bundle import classifier_schema, write_bundle
    from models.families.direction import DirectionClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    model = DirectionClassifier(n_estimators=5, random_state=seed).fit(X, y)
    schema = classifier_schema(model={"name": "", "version": ""}, feature_set_version="t",
                               features=["a", "b", "c"], class_names=["down", "up"])
    return write_bundle(directory, model.to_onnx(), schema)


def _register(registry: Registry, tmp_path: Path, experiment_id: str, seed: int) -> str:
    import mlflow

    name = model_name(registry.scope, SPEC, SYMBOL)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifacts(str(_bundle(tmp_path / f"bundle-{registry.scope}-{seed}", seed)), "bundle")
    version = registry.register(name, run.info.run_id, tags={"family": "direction", "spec": SPEC,
                                                             "symbol": SYMBOL, "timeframe": "1m"})
    registry.tag(name, version, validation_status="validated")
    return name


@pytest.fixture(scope="module")
def scopes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Registry]:
    """The tenant ``forex`` with one shared champion and one private model for each of ann and ben."""
    import mlflow

    tmp_path = tmp_path_factory.mktemp("users")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    experiment_id = mlflow.create_experiment("users", artifact_location=(tmp_path / "art").as_uri())
    clients = {"shared": Registry(store, tenant="forex"), "ann": Registry(store, tenant="forex", user="ann"),
               "ben": Registry(store, tenant="forex", user="ben"), "other": Registry(store, tenant="other")}
    for seed, who in enumerate(("shared", "ann", "ben"), start=1):
        name = _register(clients[who], tmp_path, experiment_id, seed)
        clients[who].set_challenger(name, "1", reason="first")
        clients[who].promote(name, reason="first")
    return clients


SHARED, ANN, BEN = "forex.direction_h1.USR", "forex~ann.direction_h1.USR", "forex~ben.direction_h1.USR"


def test_each_user_lists_the_shared_model_and_their_own(scopes):
    assert scopes["ann"].visible_model_names() == [SHARED, ANN]
    assert scopes["ben"].visible_model_names() == [SHARED, BEN]
    # Without a user: the tenant's shared models only, as before users existed.
    assert scopes["shared"].visible_model_names() == scopes["shared"].model_names() == [SHARED]
    # A user's pipeline (rank, canary, monitor) works on the user's own models only.
    assert scopes["ann"].model_names() == [ANN]
    assert scopes["other"].visible_model_names() == []


def test_private_models_carry_tenant_and_user_tags(scopes):
    client = scopes["shared"].client
    assert client.get_registered_model(ANN).tags["user"] == "ann"
    assert client.get_model_version(ANN, "1").tags["tenant"] == "forex"
    assert "user" not in client.get_registered_model(SHARED).tags


def test_a_user_cannot_read_or_export_another_users_model(scopes, tmp_path):
    ben = scopes["ben"]
    for read in (lambda: ben.load_bundle(ANN, CHAMPION, tmp_path / "stolen"), lambda: ben.versions(ANN),
                 lambda: ben.resolve_version(ANN, CHAMPION), lambda: ben.alias_version(ANN, CHAMPION)):
        with pytest.raises(RegistryError, match=r"'forex~ann.direction_h1.USR' is private to user 'ann' of "
                                                r"tenant 'forex'; user 'ben' of tenant 'forex' sees only"):
            read()
    assert not (tmp_path / "stolen").exists()
    with pytest.raises(RegistryError, match="private to user 'ann'"):
        scopes["shared"].load_bundle(ANN, CHAMPION, tmp_path / "by-tenant")
    with pytest.raises(RegistryError, match="does not belong to tenant 'other'"):
        scopes["other"].load_bundle(SHARED, CHAMPION, tmp_path / "by-other-tenant")


def test_both_users_export_the_shared_champion(scopes, tmp_path):
    for who in ("ann", "ben"):
        path = scopes[who].load_bundle(SHARED, CHAMPION, tmp_path / who)
        doc = json.loads((path / "schema.json").read_text())
        assert doc["model"]["name"] == SHARED and doc["model"]["version"] == "1"


def test_a_user_reads_but_does_not_change_shared_models(scopes):
    with pytest.raises(RegistryError, match="belongs to tenant 'forex' \\(shared\\); user 'ann' of tenant "
                                            "'forex' may read it but not change it"):
        scopes["ann"].promote(SHARED, reason="not allowed")
    with pytest.raises(RegistryError, match="may read it but not change it"):
        scopes["ann"].tag(SHARED, "1", lifecycle="archived")
    assert scopes["shared"].client.get_model_version(SHARED, "1").tags["lifecycle"] == CHAMPION


def test_short_names_resolve_to_the_users_own_model_else_the_shared_one(scopes, tmp_path):
    import mlflow

    assert scopes["ann"].qualify(f"{SPEC}.{SYMBOL}") == ANN
    assert scopes["shared"].qualify(f"{SPEC}.{SYMBOL}") == SHARED
    carol = Registry(scopes["ann"].client._tracking_client.tracking_uri, tenant="forex", user="carol")
    assert carol.qualify(f"{SPEC}.{SYMBOL}") == SHARED  # carol has no model of that name yet
    assert carol.qualify(ANN) == ANN  # a full name is kept as given; the verbs then refuse it
    experiment_id = mlflow.get_experiment_by_name("users").experiment_id
    _register(carol, tmp_path, experiment_id, 9)
    assert carol.qualify(f"{SPEC}.{SYMBOL}") == "forex~carol.direction_h1.USR"


def test_scope_names_cannot_hold_the_separator(tmp_path):
    with pytest.raises(RegistryError, match="may not contain '~' or '.'"):
        Registry(f"sqlite:///{tmp_path / 'm.db'}", tenant="forex", user="a~b")
