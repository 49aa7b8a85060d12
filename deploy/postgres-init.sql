-- A second database on the same Postgres for the MLflow tracking server.
CREATE DATABASE mlflow;
