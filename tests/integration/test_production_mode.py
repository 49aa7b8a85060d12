"""Production mode through the same code path: MLflow on PostgreSQL with S3 artifacts, Airflow on PostgreSQL.

Uses the PostgreSQL server on 127.0.0.1:5432 (a fresh database per run, dropped afterwards) and
moto's S3 server as the stand-in for MinIO (no MinIO can be installed on the CI machines).
Skips with the reason when PostgreSQL is not reachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _pg_admin():
    import psycopg2

    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable on {PG['host']}:{PG['port']}: {exc}".splitlines()[0])
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def fresh_databases():
    """Two fresh databases (MLflow, Airflow) for this run, dropped at the end."""
    conn = _pg_admin()
    names = {kind: f"alphaops_{kind}_{uuid.uuid4().hex[:10]}" for kind in ("mlflow", "airflow")}
    with conn.cursor() as cur:
        for name in names.values():
            cur.execute(f'CREATE DATABASE "{name}"')
    yield {kind: f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
           for kind, name in names.items()}
    with conn.cursor() as cur:
        for name in names.values():
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on a free loopback port (stand-in for MinIO), with the artifact bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="alphaops-artifacts")
    yield url
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_registry_on_postgres_with_s3_artifacts_serves_a_bundle(fresh_databases, s3_endpoint, tmp_path):
    import mlflow

    import serving
    from models.bundle import classifier_schema, write_bundle
    from models.families.direction import DirectionClassifier
    from pipelines.config import get_settings
    from pipelines.tracking import use_experiment
    from registry import CHAMPION, Registry

    settings = get_settings(mlflow_tracking_uri=fresh_databases["mlflow"],
                            mlflow_artifact_root="s3://alphaops-artifacts", s3_endpoint_url=s3_endpoint,
                            home=tmp_path / "home")
    os.environ["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint
    experiment_id = use_experiment(settings, "default/direction")
    assert mlflow.get_experiment(experiment_id).artifact_location.startswith("s3://alphaops-artifacts/")

    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    model = DirectionClassifier(n_estimators=20).fit(X, y)
    schema = classifier_schema(model={"name": "", "version": ""}, feature_set_version="t",
                               features=list("abcde"), class_names=["down", "up"])
    bundle = write_bundle(tmp_path / "bundle", model.to_onnx(), schema)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifacts(str(bundle), "bundle")

    registry = Registry.from_settings(settings)
    name = "default.direction_h1.PROD"
    version = registry.register(name, run.info.run_id, tags={"family": "direction", "spec": "direction_h1",
                                                             "symbol": "PROD", "timeframe": "1m"})
    registry.tag(name, version, validation_status="validated")
    registry.set_challenger(name, version, reason="first deploy")
    registry.promote(name, reason="first deploy")
    assert registry.alias_version(name, CHAMPION) == version

    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint)
            .list_objects_v2(Bucket="alphaops-artifacts")["Contents"]]
    assert any(k.endswith("bundle/model.onnx") for k in keys), keys

    served = serving.Predictor.load(registry.load_bundle(name, CHAMPION, tmp_path / "served"))
    np.testing.assert_allclose(served.predict(X).probabilities, model.predict_proba(X), atol=1e-5)


def test_airflow_metadata_on_postgres_parses_the_dags(fresh_databases, tmp_path):
    from pipelines.orchestration.airflow_runner import DAGS_FOLDER

    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": fresh_databases["airflow"],
           "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    reserialize = subprocess.run([airflow, "dags", "reserialize"], env=env, capture_output=True, text=True,
                                 timeout=600)
    assert reserialize.returncode == 0, reserialize.stderr[-2000:]
    listed = subprocess.run([airflow, "dags", "list", "-o", "plain"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "train_models" in listed.stdout and "canary" in listed.stdout
