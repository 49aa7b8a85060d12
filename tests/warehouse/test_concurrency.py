"""Many processes share the embedded chDB warehouse: they take turns under its lock file.

Real chDB, real OS processes: four ingest-and-read workers (``pipelines.ingest.ingestion.ingest_file``,
the code path of ``alphaops ingest``) run while ``alphaops run`` trains in a fifth; a wait
that runs out names the holder; within one process, threads and nested opens share a session.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from warehouse import DATABASE, Warehouse, WarehouseError

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2030-01-01"
WORKERS = 4
CHUNKS = 6          # files per symbol and worker
CHUNK_ROWS = 400    # rows per file
STEP = 300          # file k holds rows [k*STEP, k*STEP + CHUNK_ROWS): consecutive files overlap by 100
UNIQUE_ROWS = (CHUNKS - 1) * STEP + CHUNK_ROWS
SHARED = "CONCSHARED"
DAG_SYMBOL = "CONCDAG"

# One ingest-and-read worker: for k = 0..CHUNKS-1 it ingests its own symbol's file k and one
# file of the shared symbol (each worker starts at another file), then counts its own rows,
# which only it writes, so it knows the exact number to expect. Prints a JSON report.
WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path

    from pipelines.config import get_settings
    from pipelines.ingest.ingestion import ingest_file
    from warehouse import DATABASE, open_warehouse

    worker, data_dir, chunks, step, chunk_rows, as_of = (
        int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    settings = get_settings()
    own = f"CONC{worker}"
    report = {"pid": os.getpid(), "started": time.time(), "ingests": [], "opens": [], "errors": []}
    last_shared = 0
    for k in range(chunks):
        shared_k = (k + worker) % chunks
        for symbol, chunk in ((own, k), ("CONCSHARED", shared_k)):
            result = ingest_file(data_dir / f"{symbol}-{chunk}.csv", symbol=symbol, timeframe="1d",
                                 settings=settings, as_of=as_of)
            report["ingests"].append({"symbol": symbol, "chunk": chunk, "rows_new": result.rows_new,
                                      "rows_written": result.rows_written})
        asked = time.monotonic()
        with open_warehouse(settings) as warehouse:
            report["opens"].append(time.monotonic() - asked)
            mine = warehouse.count("bars", "symbol = {s:String}", {"s": own})
            shared = warehouse.count("bars", "symbol = {s:String}", {"s": "CONCSHARED"})
        expected = k * step + chunk_rows
        if mine != expected:
            report["errors"].append(f"after file {k}: {mine} rows of {own}, expected {expected}")
        if shared < last_shared:
            report["errors"].append(f"shared rows went down from {last_shared} to {shared}")
        last_shared = shared
    report["finished"] = time.time()
    print(json.dumps(report))
""")

# Holds the warehouse at argv[1] until its stdin closes; says "held" once it has it.
HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from warehouse import Warehouse

    with Warehouse.open(None, Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()
""")


def daily_bars(n: int, seed: int) -> pd.DataFrame:
    """Valid daily OHLCV bars (every calendar day, so no gaps), a seeded random walk."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    index = pd.date_range("2001-01-01", periods=n, freq="D", name="date")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": rng.uniform(1e3, 2e3, n)}, index=index)


def write_chunks(directory: Path, symbol: str, seed: int) -> None:
    bars = daily_bars(UNIQUE_ROWS, seed)
    for k in range(CHUNKS):
        bars.iloc[k * STEP: k * STEP + CHUNK_ROWS].to_csv(directory / f"{symbol}-{k}.csv", float_format="%.6f")


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAOPS_", "AIRFLOW"))}
    return {**env, "ALPHAOPS_HOME": str(home), "ALPHAOPS_TENANT": "default", **extra}


def run_worker_script(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def test_four_processes_ingest_and_read_while_a_dag_trains(tmp_path):
    """Every row is counted exactly once while five processes share the warehouse."""
    from pipelines.config import get_settings
    from pipelines.ingest.ingestion import ingest
    from pipelines.ingest.samples import SyntheticSource

    home = tmp_path / "home"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for w in range(WORKERS):
        write_chunks(data_dir, f"CONC{w}", seed=w)
    write_chunks(data_dir, SHARED, seed=99)
    settings = get_settings(home=home)
    ingest(SyntheticSource(seed=11, n_bars=6000, imbalance_coef=0.6), symbol=DAG_SYMBOL, timeframe="1m",
           settings=settings, as_of=pd.Timestamp(AS_OF, tz="UTC"))

    started = time.monotonic()
    cli = Path(sys.executable).with_name("alphaops")
    dag = subprocess.Popen(
        [str(cli), "run", "--symbols", DAG_SYMBOL, "--families", "direction_h1", "--trials", "1", "--json"],
        cwd=ROOT, env=child_env(home, ALPHAOPS_NULL_PERMUTATIONS="5"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    dag_started = time.time()
    time.sleep(3)  # the CLI is importing and migrating Airflow's DB; the workers start meanwhile
    script = run_worker_script(tmp_path, "worker.py", WORKER)
    workers = [subprocess.Popen([sys.executable, str(script), str(w), str(data_dir), str(CHUNKS), str(STEP),
                                 str(CHUNK_ROWS), AS_OF], cwd=ROOT, env=child_env(home),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for w in range(WORKERS)]
    # `alphaops data` from yet another process, beside the workers and the DAG.
    started_while_running = dag.poll() is None
    data_cli = subprocess.run([str(cli), "data", "--json"], cwd=ROOT, env=child_env(home),
                              capture_output=True, text=True, timeout=300)
    data_while_running = dag.poll() is None
    outputs = [p.communicate(timeout=900) for p in workers]
    dag_out, dag_err = dag.communicate(timeout=1800)
    dag_finished = time.time()
    elapsed = time.monotonic() - started

    for p, (out, err) in zip(workers, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "DB::Exception" not in err and "EmbeddedServer" not in err, err[-3000:]
    assert dag.returncode == 0, (dag_out[-2000:], dag_err[-3000:])
    for log in (home / "logs").glob("train_models-*.log"):
        text = log.read_text(errors="replace")
        assert "DB::Exception" not in text and "EmbeddedServer" not in text and "is busy" not in text
    assert any(v["symbol"] == DAG_SYMBOL for v in json.loads(dag_out)["versions"])
    assert data_cli.returncode == 0, data_cli.stderr[-2000:]
    # Issued while the DAG trained, it succeeds. (Whether it also ends before the DAG depends on the
    # machine's load: waiters are not served in order, so four busy ingesters may make it wait.)
    assert started_while_running
    if not data_while_running:
        print("alphaops data finished after the DAG on this machine")
    assert DAG_SYMBOL in {r["symbol"] for r in json.loads(data_cli.stdout)}

    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    for report in reports:
        assert report["errors"] == []
        # The workers ran while the DAG ran.
        assert report["started"] < dag_finished and report["finished"] > dag_started

    with Warehouse.open(None, settings.warehouse_path) as warehouse:
        for w, report in enumerate(reports):
            symbol = f"CONC{w}"
            where, params = "symbol = {s:String}", {"s": symbol}
            assert warehouse.count("bars", where, params) == UNIQUE_ROWS
            raw = warehouse.query(f"SELECT count() AS n FROM {DATABASE}.bars WHERE symbol = {{s:String}}", params)
            assert int(raw["n"].iloc[0]) == UNIQUE_ROWS  # no row was ever written twice
            assert sum(i["rows_new"] for i in report["ingests"] if i["symbol"] == symbol) == UNIQUE_ROWS
        # Every worker ingested every shared file: each row is new to exactly one of them,
        # because compare-and-write is one critical section.
        params = {"s": SHARED}
        assert warehouse.count("bars", "symbol = {s:String}", params) == UNIQUE_ROWS
        raw = warehouse.query(f"SELECT count() AS n FROM {DATABASE}.bars WHERE symbol = {{s:String}}", params)
        assert int(raw["n"].iloc[0]) == UNIQUE_ROWS
        assert sum(i["rows_new"] for r in reports for i in r["ingests"] if i["symbol"] == SHARED) == UNIQUE_ROWS
        log = warehouse.query(
            f"""SELECT symbol, status, count() AS n, sum(rows_new) AS new FROM {DATABASE}.ingest_log
                WHERE symbol LIKE 'CONC%' GROUP BY symbol, status ORDER BY symbol, status""")
        assert set(log["status"]) == {"ok"}
        by_symbol = log.set_index("symbol")
        assert int(by_symbol.loc[SHARED, "n"]) == WORKERS * CHUNKS
        assert int(by_symbol.loc[SHARED, "new"]) == UNIQUE_ROWS
        for w in range(WORKERS):
            assert int(by_symbol.loc[f"CONC{w}", "n"]) == CHUNKS
        assert warehouse.count("bars", "symbol = {s:String}", {"s": DAG_SYMBOL}) == 6000

    waits = [t for r in reports for t in r["opens"]]
    print(f"\n{WORKERS} workers x {2 * CHUNKS} ingests + {CHUNKS} reads beside `alphaops run`: {elapsed:.0f} s; "
          f"worker read opens waited median {np.median(waits) * 1e3:.0f} ms, max {max(waits) * 1e3:.0f} ms")


def test_a_wait_that_runs_out_names_the_holder(tmp_path):
    path = tmp_path / "warehouse"
    script = run_worker_script(tmp_path, "hold_warehouse.py", HOLDER)
    holder = subprocess.Popen([sys.executable, str(script), str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        asked = time.monotonic()
        with pytest.raises(WarehouseError) as caught:
            with Warehouse.open(None, path, busy_timeout_seconds=1.0):
                pass
        waited = time.monotonic() - asked
        message = str(caught.value)
        assert 1.0 <= waited < 10.0
        assert f"PID {holder.pid} " in message and "hold_warehouse.py" in message, message
        assert "waiting 1.0 s" in message and "is busy" in message, message
        assert "ALPHAOPS_WAREHOUSE_BUSY_TIMEOUT_SECONDS" in message
        assert "Code: 36" not in message and "EmbeddedServer" not in message
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0, holder.stderr.read()
    with Warehouse.open(None, path, busy_timeout_seconds=0) as warehouse:  # free again: no wait needed
        assert warehouse.count("bars") == 0
    assert Path(f"{path}.lock").read_text() == ""  # the holder record goes with the lock


def test_a_waiter_gets_its_turn_when_the_holder_lets_go(tmp_path):
    path = tmp_path / "warehouse"
    script = run_worker_script(tmp_path, "hold_warehouse.py", HOLDER)
    holder = subprocess.Popen([sys.executable, str(script), str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held", holder.stderr.read()
    threading.Timer(1.5, holder.stdin.close).start()
    asked = time.monotonic()
    with Warehouse.open(None, path, busy_timeout_seconds=60) as warehouse:
        waited = time.monotonic() - asked
        record = json.loads(Path(f"{path}.lock").read_text())
        assert warehouse.count("bars") == 0
    holder.wait(timeout=60)
    assert 1.4 <= waited < 30, waited
    assert record["pid"] == os.getpid()  # this process is the holder now


def test_threads_and_nested_opens_in_one_process_share_the_session(tmp_path):
    path = tmp_path / "warehouse"
    frames = {i: pd.DataFrame({"open": [1.0] * 50, "high": [2.0] * 50, "low": [0.5] * 50, "close": [1.5] * 50,
                               "volume": [10.0] * 50},
                              index=pd.date_range(f"2020-0{i + 1}-01", periods=50, freq="h", tz="UTC", name="ts"))
              for i in range(4)}
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for _ in range(5):
                with Warehouse.open(None, path, busy_timeout_seconds=5) as warehouse:
                    warehouse.write_bars(frames[i], tenant="default", symbol=f"T{i}", timeframe="1h",
                                         source="t", ingest_id="t")
        except BaseException as exc:  # reported below
            errors.append(exc)

    with Warehouse.open(None, path) as outer:
        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with Warehouse.open(None, path) as inner:  # nested: the same session
            assert inner.backend._session is outer.backend._session
        assert errors == []
        assert [outer.count("bars", "symbol = {s:String}", {"s": f"T{i}"}) for i in range(4)] == [50] * 4
        assert json.loads(Path(f"{path}.lock").read_text())["pid"] == os.getpid()
    assert Path(f"{path}.lock").read_text() == ""  # the last one out closed and let go


def _open_in_forked_child(path: str, queue: multiprocessing.Queue) -> None:
    try:
        with Warehouse.open(None, Path(path), busy_timeout_seconds=0.5):
            queue.put("opened")
    except WarehouseError as exc:
        queue.put(str(exc))


def test_a_forked_child_waits_for_its_parent_instead_of_using_its_session(tmp_path):
    path = tmp_path / "warehouse"
    queue = multiprocessing.get_context("fork").Queue()
    with Warehouse.open(None, path):
        child = multiprocessing.get_context("fork").Process(target=_open_in_forked_child, args=(str(path), queue))
        child.start()
        message = queue.get(timeout=60)
        child.join(timeout=60)
    assert f"PID {os.getpid()} " in message and "is busy" in message, message
