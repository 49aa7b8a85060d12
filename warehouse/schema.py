"""The warehouse's tables: the database name, the columns of bars, ticks and book, and one DDL
for both engines (chDB and a ClickHouse server).

Keyed tables are ReplacingMergeTree on (tenant, symbol, timeframe, ts), partitioned by month,
so writing the same rows again is a no-op and a late correction replaces the old row (reads
use ``FINAL``). The bar columns are the feature library's (``features.definitions``): OHLCV,
then the optional microstructure columns, stored as NULL where a source lacks them.
"""

from __future__ import annotations

from features.definitions import MICROSTRUCTURE_COLUMNS, OHLCV_COLUMNS

DATABASE = "alphaops"
MARKET_TABLES = ("bars", "ticks", "book")  # what sources ingest, in batches
NEWS_TABLE = "news"  # headlines, ingested in staged batches too (pipelines.ingest.news)

OHLCV: list[str] = list(OHLCV_COLUMNS)
BAR_EXTRA: list[str] = list(MICROSTRUCTURE_COLUMNS)  # optional per source: NULL where absent
TICK_COLUMNS = ["price", "qty", "side", "trade_id"]
BOOK_COLUMNS = ["bid_price", "bid_size", "ask_price", "ask_size", "bid_depth", "ask_depth"]

_KEY = "tenant LowCardinality(String), symbol LowCardinality(String), timeframe LowCardinality(String)"
_MERGE = "ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts) ORDER BY (tenant, symbol, timeframe, ts)"
_BAR_VALUES = ", ".join([*(f"{c} Float64" for c in OHLCV), *(f"{c} Nullable(Float64)" for c in BAR_EXTRA)])
_BOOK_VALUES = ", ".join(f"{c} Float64" for c in BOOK_COLUMNS)

DDL: dict[str, str] = {
    "bars": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.bars (
        {_KEY}, ts DateTime64(3, 'UTC'), {_BAR_VALUES},
        source LowCardinality(String), ingest_id String, version UInt64
    ) {_MERGE}""",
    "ticks": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ticks (
        {_KEY}, ts DateTime64(6, 'UTC'), trade_id String,
        price Float64, qty Float64, side Int8,
        source LowCardinality(String), ingest_id String, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, timeframe, ts, trade_id)""",
    "book": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.book (
        {_KEY}, ts DateTime64(6, 'UTC'), {_BOOK_VALUES},
        source LowCardinality(String), ingest_id String, version UInt64
    ) {_MERGE}""",
    "ml_features": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ml_features (
        {_KEY}, ts DateTime64(3, 'UTC'), feature_set_version LowCardinality(String),
        values Array(Float32), version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, timeframe, feature_set_version, ts)""",
    "feature_sets": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.feature_sets (
        {_KEY}, feature_set_version String, names Array(String), version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (tenant, symbol, timeframe, feature_set_version)""",
    "ml_labels": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ml_labels (
        {_KEY}, ts DateTime64(3, 'UTC'), label LowCardinality(String),
        value Float64, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, timeframe, label, ts)""",
    "ml_predictions": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ml_predictions (
        tenant LowCardinality(String), model LowCardinality(String), model_version String,
        symbol LowCardinality(String), ts DateTime64(6, 'UTC'), routed_to LowCardinality(String),
        features Array(Float64), output Float64, confidence Float64, latency_us Float64,
        error String, fallback UInt8, outcome Nullable(Float64), version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, model, symbol, ts, model_version)""",
    "trade_results": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.trade_results (
        tenant LowCardinality(String), symbol LowCardinality(String), trade_id String,
        entry_ts DateTime64(3, 'UTC'), exit_ts DateTime64(3, 'UTC'),
        side Int8, entry_price Float64, exit_price Float64, pnl Float64, r_multiple Float64,
        signal_source LowCardinality(String), context String, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(entry_ts)
      ORDER BY (tenant, symbol, trade_id)""",
    "ingest_log": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ingest_log (
        ingest_id String, tenant LowCardinality(String), symbol LowCardinality(String),
        timeframe LowCardinality(String), kind LowCardinality(String), source String,
        status LowCardinality(String), rows_in UInt64, rows_written UInt64, rows_rejected UInt64,
        rows_new UInt64, rows_changed UInt64, checksum String,
        ts_min Nullable(DateTime64(3, 'UTC')), ts_max Nullable(DateTime64(3, 'UTC')),
        report String, logged_at DateTime64(3, 'UTC')
    ) ENGINE = MergeTree ORDER BY (tenant, logged_at, ingest_id)""",
    "market_events": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.market_events (
        tenant LowCardinality(String), symbol LowCardinality(String), ts DateTime64(3, 'UTC'),
        type LowCardinality(String), n_bars UInt32, source LowCardinality(String), version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, ts, type)""",
    "monitor_history": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.monitor_history (
        tenant LowCardinality(String), model LowCardinality(String), model_version String,
        checked_at DateTime64(3, 'UTC'), drift_share Float64, drifted UInt8,
        live_accuracy Nullable(Float64), backtest_accuracy Nullable(Float64),
        latency_p50_us Nullable(Float64), latency_p95_us Nullable(Float64),
        latency_p99_us Nullable(Float64), error_rate Float64, fallback_rate Float64,
        n_predictions UInt64, retrain UInt8, reasons Array(String), report_uri String
    ) ENGINE = MergeTree ORDER BY (tenant, model, checked_at)""",
    # The pattern library (warehouse.patterns): one embedded window per (library, symbol, timeframe,
    # source, ts), its later outcome class and forward return. ``library`` names the embedding model
    # (``<model name>@v<version>``): embeddings of different encoders are never compared.
    "ml_pattern_windows": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.ml_pattern_windows (
        tenant LowCardinality(String), library LowCardinality(String), symbol LowCardinality(String),
        timeframe LowCardinality(String), ts DateTime64(3, 'UTC'), source LowCardinality(String),
        embedding Array(Float32), outcome Int8, forward_return Float64, horizon UInt16, version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (tenant, library, symbol, timeframe, source, ts)""",
    # Headlines (warehouse.news): µs timestamps, one row per (tenant, symbol, ts, headline_id);
    # ``label`` is a user's sentiment label (models.text_sentiment.LABELS) or '' for none.
    "news": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.news (
        tenant LowCardinality(String), symbol LowCardinality(String), ts DateTime64(6, 'UTC'),
        headline_id String, headline String, source LowCardinality(String),
        label LowCardinality(String) DEFAULT '',
        feed String, ingest_id String, version UInt64
    ) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(ts)
      ORDER BY (tenant, symbol, ts, headline_id)""",
    "hypothesis_ledger": f"""CREATE TABLE IF NOT EXISTS {DATABASE}.hypothesis_ledger (
        tenant LowCardinality(String), run_id String, model String, model_version String,
        spec LowCardinality(String), symbol LowCardinality(String), status LowCardinality(String),
        p_value Float64, n_permutations UInt32, n_trials UInt32, q_value Nullable(Float64),
        deflated_sharpe Nullable(Float64), n_trials_run UInt32, decision LowCardinality(String),
        recorded_at DateTime64(3, 'UTC'), version UInt64
    ) ENGINE = ReplacingMergeTree(version) ORDER BY (tenant, run_id, model, model_version)""",
}

# Columns added to tables after their first release: warehouses created before them get the
# column (with its default for the rows already held) the next time the schema is ensured.
MIGRATIONS: tuple[str, ...] = (
    f"ALTER TABLE {DATABASE}.news ADD COLUMN IF NOT EXISTS label LowCardinality(String) DEFAULT '' AFTER source",
)
