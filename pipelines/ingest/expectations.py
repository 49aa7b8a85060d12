"""The Great Expectations suites of the quality gate (:mod:`pipelines.ingest.quality`).

GX is imported lazily (its import alone takes ~4.5 s). The ephemeral context and each suite
are built once per process and shared under one lock.
"""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd

NUMERIC_TYPES = ["float64", "float32", "int64", "int32", "int16", "int8", "uint64", "uint32",
                 "uint16", "uint8", "float", "int", "Float64", "Int64"]


NONNEGATIVE_EXTRA = ["buy_volume", "sell_volume", "bid_size", "ask_size", "spread", "n_trades",
                     "liquidations"]



_lock = threading.RLock()


_state: dict[str, Any] = {}


def gx_context() -> tuple[Any, Any]:
    """(context, batch definition), created once per process."""
    with _lock:
        if "context" not in _state:
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            )
            context = gx.get_context(mode="ephemeral", project_config=config)
            asset = context.data_sources.add_pandas("alphaops").add_dataframe_asset("batch")
            _state["context"] = context
            _state["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole")
            _state["suites"] = {}
        return _state["context"], _state["batch_definition"]


def cached_suite(key: tuple[Any, ...], build: Any) -> Any:
    """The suite for ``key`` (kind, stage, columns), built on first use."""
    import great_expectations as gx

    context, _ = gx_context()
    with _lock:
        suites = _state["suites"]
        if key not in suites:
            name = f"alphaops-{len(suites)}-" + "-".join(map(str, key[:2]))
            suites[key] = context.suites.add(gx.ExpectationSuite(name=name, expectations=build(gx.expectations)))
        return suites[key]


def run_suite(frame: pd.DataFrame, suite: Any, params: dict[str, Any]) -> list[tuple[str, bool, list[int], str, str]]:
    """Validate; per expectation: (rule, success, unexpected row positions, severity, error)."""
    _, batch_definition = gx_context()
    with _lock:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, expectation_parameters=params, result_format={"result_format": "COMPLETE"})
    out = []
    for res in result.results:
        config = res.expectation_config
        rule = (config.meta or {}).get("rule", config.type)
        severity = str(getattr(config.severity, "value", config.severity))
        error = ""
        if res.exception_info and res.exception_info.get("raised_exception"):
            error = str(res.exception_info.get("exception_message"))
        column = config.kwargs.get("column") or config.kwargs.get("column_A") or ""
        if config.type == "expect_column_to_exist" and not res.success:
            error = error or f"missing column {column!r}"
        rows = [int(i) for i in (res.result or {}).get("unexpected_index_list") or [] if not isinstance(i, dict)]
        out.append((rule, bool(res.success), rows, severity, error or ""))
    return out


def schema_suite(kind: str, numeric: tuple[str, ...], required: tuple[str, ...]) -> Any:
    def build(E: Any) -> list[Any]:
        exps = [E.ExpectTableRowCountToBeBetween(min_value=1, meta={"rule": "not_empty"})]
        exps += [E.ExpectColumnToExist(column=c, meta={"rule": "schema.missing_column"}) for c in ("ts", *required)]
        exps += [E.ExpectColumnValuesToBeInTypeList(column=c, type_list=NUMERIC_TYPES, meta={"rule": "schema.dtype"})
                 for c in numeric]
        return exps

    return cached_suite((kind, "schema", numeric, required), build)


def value_suite(kind: str, columns: tuple[str, ...], keyed: bool) -> Any:
    from great_expectations.expectations.metadata_types import FailureSeverity

    def build(E: Any) -> list[Any]:
        present = set(columns)
        exps = [E.ExpectColumnValuesToNotBeNull(column=c, meta={"rule": "no_nan"}) for c in ("ts", *columns)]
        exps.append(E.ExpectColumnValuesToBeIncreasing(column="ts", meta={"rule": "ts_monotonic"}))
        exps.append(E.ExpectColumnValuesToBeBetween(column="ts", max_value={"$PARAMETER": "as_of"},
                                                    meta={"rule": "ts_not_future"}))
        if kind == "ticks":
            exps.append(E.ExpectCompoundColumnsToBeUnique(column_list=["ts", "trade_id"],
                                                          meta={"rule": "trade_unique"}))
        elif keyed:
            exps.append(E.ExpectCompoundColumnsToBeUnique(column_list=["symbol", "ts"], meta={"rule": "ts_unique"}))
        else:
            exps.append(E.ExpectColumnValuesToBeUnique(column="ts", meta={"rule": "ts_unique"}))

        def positive(cols: list[str], rule: str) -> None:
            exps.extend(E.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True, meta={"rule": rule})
                        for c in cols if c in present)

        def nonnegative(cols: list[str], rule: str) -> None:
            exps.extend(E.ExpectColumnValuesToBeBetween(column=c, min_value=0, meta={"rule": rule})
                        for c in cols if c in present)

        def a_ge_b(a: str, b: str, rule: str) -> None:
            exps.append(E.ExpectColumnPairValuesAToBeGreaterThanB(  # NaN rows belong to no_nan
                column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing", meta={"rule": rule}))

        if kind == "bars":
            a_ge_b("high", "open", "high_ge_open_close")
            a_ge_b("high", "close", "high_ge_open_close")
            a_ge_b("open", "low", "low_le_open_close")
            a_ge_b("close", "low", "low_le_open_close")
            positive(["open", "high", "low", "close"], "price_positive")
            nonnegative(["volume"], "volume_nonnegative")
            nonnegative(NONNEGATIVE_EXTRA, "size_nonnegative")
            exps.append(E.ExpectColumnValuesToBeBetween(
                column="gap_bars", max_value={"$PARAMETER": "max_gap_bars"}, meta={"rule": "gap"},
                severity=FailureSeverity.WARNING))
        elif kind == "ticks":
            positive(["price"], "price_positive")
            positive(["qty"], "qty_positive")
            exps.append(E.ExpectColumnValuesToBeInSet(column="side", value_set=[-1, 1], meta={"rule": "side_valid"}))
        else:
            positive(["bid_price", "ask_price"], "price_positive")
            a_ge_b("ask_price", "bid_price", "book_not_crossed")
            nonnegative(["bid_size", "ask_size", "bid_depth", "ask_depth"], "size_nonnegative")
        return exps

    return cached_suite((kind, "values", columns, keyed), build)

