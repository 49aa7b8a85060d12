"""Tenants are isolated: warehouse rows, DAG inputs and the registry carry the tenant."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.config import get_settings
from pipelines.ingest.ingestion import data_summary, ingest
from pipelines.ingest.samples import SyntheticSource
from pipelines.steps.adapters import resolve_datasets

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")


def test_one_tenants_data_is_invisible_to_another(alphaops_home):
    alpha, beta = get_settings(tenant="alpha"), get_settings(tenant="beta")
    ingest(SyntheticSource(seed=5, n_bars=200), symbol="TENANTX", timeframe="1m", settings=alpha, as_of=AS_OF)

    assert resolve_datasets(alpha, ["TENANTX"], AS_OF) == [{"symbol": "TENANTX", "timeframe": "1m"}]
    with pytest.raises(ValueError, match="TENANTX' has no data"):
        resolve_datasets(beta, ["TENANTX"], AS_OF)
    assert "TENANTX" in {row["symbol"] for row in data_summary(alpha)}
    assert "TENANTX" not in {row["symbol"] for row in data_summary(beta)}


def test_tenant_names_are_validated():
    with pytest.raises(ValueError, match="ALPHAOPS_TENANT='Bad Tenant!'"):  # the error names the variable
        get_settings(tenant="Bad Tenant!")
