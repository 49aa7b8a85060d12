# Image for the Airflow services, the MLflow server and the trading runtime's Python side.
FROM python:3.11-slim
WORKDIR /opt/alphaops
RUN apt-get update && apt-get install -y --no-install-recommends build-essential git && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY pipelines pipelines
COPY features features
COPY warehouse warehouse
COPY models models
COPY registry registry
COPY serving serving
# Tip: install the CPU build of torch==2.13.0 first for a much smaller image.
RUN pip install --no-cache-dir -e .
COPY dags dags
