# Image for the Airflow services, the MLflow server and the trading runtime's Python side.
FROM python:3.11-slim
WORKDIR /opt/alphaops
RUN apt-get update && apt-get install -y --no-install-recommends build-essential git && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY pipelines pipelines
COPY features features
COPY models models
COPY registry registry
COPY serving serving
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e .
COPY dags dags
