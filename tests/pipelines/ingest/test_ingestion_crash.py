"""Crash-atomic ingest: a batch is visible whole or not at all, even when its process is SIGKILLed.

Real chDB and real processes killed with SIGKILL: a ``alphaops ingest``-like process killed in the
middle of a large multi-partition insert; processes killed right after the commit and halfway
through moving the committed partitions; and a fork server that kills an ingest at 20 random
points while the batches grow and correct earlier rows. After each kill, the next open of the
warehouse must show exactly the state before the batch or after it, with the ``ingest_log`` in
agreement, and leave no staging table behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import Settings, get_settings
from pipelines.ingest.ingestion import checksum, data_summary, ingest_file
from warehouse import DATABASE, STAGE_PREFIX, open_warehouse

ROOT = Path(__file__).resolve().parents[3]
AS_OF = "2031-01-01"


def hourly_bars(n: int, start: str = "2000-01-01", scale: float = 1.0, seed: int = 3) -> pd.DataFrame:
    """Valid hourly OHLCV bars (one monthly partition per 730 bars); ``scale`` multiplies every price."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 1e-3, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 1e-3, n))
    index = pd.date_range(start, periods=n, freq="1h", tz="UTC", name="ts")
    return pd.DataFrame({"open": open_ * scale, "high": high * scale, "low": low * scale, "close": close * scale,
                         "volume": rng.gamma(2.0, 50.0, n)}, index=index)


def digest(frame: pd.DataFrame) -> str:
    """``checksum`` of the OHLCV columns with the index in ns (the warehouse reads back ms)."""
    frame = frame[["open", "high", "low", "close", "volume"]]
    return checksum(frame.set_axis(pd.DatetimeIndex(frame.index).as_unit("ns"), axis=0))


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "ALPHAOPS_HOME": str(settings.home_dir), "PYTHONPATH": str(ROOT)}


def _staged_dirs(settings: Settings) -> list[Path]:
    data = settings.warehouse_path / "data" / DATABASE
    return sorted(data.glob(f"{STAGE_PREFIX}*")) if data.is_dir() else []


def _committed_parts(stage_dir: Path) -> int:
    """Parts an insert has finished in a staging table (``<month>_<min>_<max>_<level>`` folders)."""
    try:
        return sum(1 for p in stage_dir.iterdir() if p.name[:6].isdigit() and p.name.count("_") == 3)
    except OSError:
        return 0


def _log_rows(settings: Settings, symbol: str) -> pd.DataFrame:
    with open_warehouse(settings) as wh:
        return wh.query(f"SELECT ingest_id, status, rows_written, report FROM {DATABASE}.ingest_log "
                        "WHERE symbol = {s:String} ORDER BY logged_at", {"s": symbol})


# Ingests argv[1] as argv[2], 1h bars: the code path of `alphaops ingest`.
INGEST = textwrap.dedent("""
    import sys
    from pipelines.config import get_settings
    from pipelines.ingest.ingestion import ingest_file
    result = ingest_file(sys.argv[1], symbol=sys.argv[2], timeframe="1h", settings=get_settings(), as_of=sys.argv[3])
    print(result.rows_written, flush=True)
""")


def test_a_kill_in_the_middle_of_a_large_insert_leaves_nothing_visible(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home", clickhouse_url=None)
    base = hourly_bars(2_000, start="1990-01-01")
    base_file = tmp_path / "base.parquet"
    base.to_parquet(base_file)
    assert ingest_file(base_file, symbol="KILLED", timeframe="1h", settings=settings, as_of=AS_OF).rows_new == 2_000
    # 25 years of hourly bars: 300 monthly partitions, so three inserts of 100 partitions each.
    big = hourly_bars(219_000, start="2000-01-01")
    big_file = tmp_path / "big.parquet"
    big.to_parquet(big_file)

    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(big_file), "KILLED", AS_OF], env=_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    parts = 0
    while time.monotonic() < deadline and proc.poll() is None:
        stages = _staged_dirs(settings)
        parts = _committed_parts(stages[0]) if stages else 0
        if parts >= 100:  # the first insert of 100 months is done, the second is running
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the ingest ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert parts >= 100, "the kill did not land in the middle of the insert"

    # Without the staging table, 100+ months of the batch would be visible here with no ingest_log row.
    with open_warehouse(settings) as wh:  # this open discards the dead writer's batch
        assert wh.count("bars", "symbol = 'KILLED'") == 2_000
        assert wh.staged_tables() == []
    log = _log_rows(settings, "KILLED")
    assert log["status"].tolist() == ["ok", "aborted"]
    assert "died before committing it" in log["report"].iloc[1] and "ingest the source again" in log["report"].iloc[1]
    summary = {(r["symbol"], r["timeframe"]): r for r in data_summary(settings)}[("KILLED", "1h")]
    assert summary["rows"] == 2_000 and summary["last_ingest"]["status"] == "aborted"
    assert summary["ts_max"].startswith("1990-03-25")
    assert not _staged_dirs(settings)

    # A re-run writes the whole batch; another one is a no-op.
    rerun = subprocess.run([sys.executable, "-c", INGEST, str(big_file), "KILLED", AS_OF], env=_env(settings),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert int(rerun.stdout.split()[-1]) == 219_000
    assert ingest_file(big_file, symbol="KILLED", timeframe="1h", settings=settings, as_of=AS_OF).rows_written == 0
    with open_warehouse(settings) as wh:
        visible = wh.read_bars(tenant=settings.tenant, symbol="KILLED", timeframe="1h")
    assert len(visible) == 221_000
    assert digest(visible.loc[big.index]) == digest(big)


# Ingests argv[1] as symbol argv[2] and SIGKILLs itself at a point of the commit (argv[3]):
# "after_commit" right after the ok row is written, "mid_move" after moving half the partitions.
SELF_KILL = textwrap.dedent("""
    import os, signal, sys
    from pipelines.config import get_settings
    from pipelines.ingest.ingestion import ingest_file
    from warehouse import DATABASE, Warehouse

    real_publish = Warehouse._publish
    def publish_then_die(self, stage, table):
        if sys.argv[3] == "mid_move":
            parts = self.query(f"SELECT DISTINCT partition_id FROM system.parts WHERE database = '{DATABASE}' "
                               f"AND table = '{stage}' AND active ORDER BY partition_id")["partition_id"].tolist()
            half = ", ".join(f"MOVE PARTITION ID '{p}' TO TABLE {DATABASE}.{table}" for p in parts[: len(parts) // 2])
            self.command(f"ALTER TABLE {DATABASE}.{stage} {half}")
            print(len(parts) // 2, len(parts), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    Warehouse._publish = publish_then_die
    ingest_file(sys.argv[1], symbol=sys.argv[2], timeframe="1h", settings=get_settings(), as_of=sys.argv[4])
""")


@pytest.mark.parametrize("point", ["after_commit", "mid_move"])
def test_a_kill_after_the_commit_is_finished_by_the_next_open(tmp_path: Path, point: str) -> None:
    settings = get_settings(home=tmp_path / "home", clickhouse_url=None)
    bars = hourly_bars(30_000)  # 42 monthly partitions
    path = tmp_path / "bars.parquet"
    bars.to_parquet(path)
    proc = subprocess.run([sys.executable, "-c", SELF_KILL, str(path), "HALF", point, AS_OF], env=_env(settings),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    if point == "mid_move":
        moved, total = map(int, proc.stdout.split())
        assert 0 < moved < total
    assert _staged_dirs(settings), "the killed writer left its staging table"
    with open_warehouse(settings) as wh:  # finishes the move before anything reads
        assert wh.staged_tables() == []
        visible = wh.read_bars(tenant=settings.tenant, symbol="HALF", timeframe="1h")
    assert len(visible) == 30_000 and digest(visible) == digest(bars)
    assert _log_rows(settings, "HALF")["status"].tolist() == ["ok"]
    assert ingest_file(path, symbol="HALF", timeframe="1h", settings=settings, as_of=AS_OF).rows_written == 0


# A fork server: imports and validates once, then for each round forks an ingest of the current
# batch, SIGKILLs it after a random delay, and forks a checker that opens the warehouse (which
# recovers) and reports what is visible. It never opens chDB itself, so its children start clean.
FORK_SERVER = textwrap.dedent("""
    import json, os, random, signal, sys, time, traceback
    import numpy as np, pandas as pd
    sys.path.insert(0, sys.argv[4])
    from test_ingestion_crash import digest, hourly_bars
    from pipelines.config import get_settings
    from pipelines.ingest.ingestion import _canonical, _write_batch
    from pipelines.ingest.quality import validate
    from pipelines.ingest.sources import FrameSource
    from warehouse import DATABASE, STAGE_PREFIX, open_warehouse

    rounds, seed = int(sys.argv[1]), int(sys.argv[2])
    settings = get_settings()
    as_of = pd.Timestamp(sys.argv[3], tz="UTC")
    rng = random.Random(seed)
    STEP, SIZE, SYMBOL = 6_000, 12_000, "RANDOMKILL"
    full = hourly_bars(STEP * 80 + SIZE, start="1950-01-01")  # enough batches for every round

    def batch(k):  # rows [k*STEP, k*STEP + SIZE), prices scaled: it corrects the overlap with batch k-1
        frame = full.iloc[k * STEP: k * STEP + SIZE].copy()
        frame[["open", "high", "low", "close"]] *= 1.0 + 0.01 * (k + 1)
        return frame

    def state(k):  # what must be visible once batches 0..k are committed
        if k < 0:
            return 0, ""
        frame = pd.concat([batch(j) for j in range(k + 1)])
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        return len(frame), digest(frame)

    def in_child(fn):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            code = 0
            try:
                os.write(write, json.dumps(fn()).encode())
            except BaseException:
                traceback.print_exc()
                code = 3
            os._exit(code)
        os.close(write)
        return pid, read

    def collect(pid, read):
        chunks = []
        while True:
            data = os.read(read, 65536)
            if not data:
                break
            chunks.append(data)
        os.close(read)
        _, status = os.waitpid(pid, 0)
        return status, json.loads(b"".join(chunks) or b"null")

    def check(ingest_id):
        def run():
            stage_dir = settings.warehouse_path / "data" / DATABASE
            left = sorted(p.name for p in stage_dir.glob(STAGE_PREFIX + "*")) if stage_dir.is_dir() else []
            with open_warehouse(settings) as wh:
                bars = wh.read_bars(tenant=settings.tenant, symbol=SYMBOL, timeframe="1h")
                log = wh.query(f"SELECT status FROM {DATABASE}.ingest_log WHERE ingest_id = {{i:String}}",
                               {"i": ingest_id})["status"].tolist()
                staged = wh.staged_tables()
            return {"rows": len(bars), "checksum": digest(bars) if len(bars) else "", "log": log,
                    "left_before_open": left, "staged_after_open": staged}
        status, out = collect(*in_child(run))
        assert status == 0, f"checker failed with status {status}"
        return out

    validated = {}
    def ingest_child(k, ingest_id):
        if k not in validated:
            frame = batch(k)
            report = validate(frame, kind="bars", timeframe="1h", as_of=as_of, max_gap_bars=5, label="fork")
            assert report.ok, report.render()
            validated[k] = (frame, _canonical(frame, "bars"), report)
        frame, canonical, report = validated[k]
        ready_read, ready_write = os.pipe()
        def run():
            os.close(ready_read)
            with open_warehouse(settings) as wh:  # this open recovers what the last kill left
                os.write(ready_write, b"o")  # opened: the compare-and-write starts now
                _write_batch(wh, FrameSource(frame, name="fork"), canonical, report, symbol=SYMBOL,
                             timeframe="1h", settings=settings, ingest_id=ingest_id)
            return "done"
        pid, read = in_child(run)
        os.close(ready_write)
        return pid, read, ready_read

    committed = -1
    whole = opened = 0.0
    kills = r = 0
    while kills < rounds and r <= 3 * rounds:  # until `rounds` kills landed (some children finish first)
        k = committed + 1
        ingest_id = f"ing-fork-{seed}-{r}"
        pid, read, ready = ingest_child(k, ingest_id)
        started = time.monotonic()
        delay = None
        # Odd rounds: a random point of the whole process (start-up, the open and its recovery
        # included); even rounds: a random point of the compare-and-write once the warehouse is open.
        if r > 0 and r % 2 == 1:
            delay = rng.uniform(0.0, 1.1 * whole)
        elif r > 0:
            os.read(ready, 1)
            started = time.monotonic()
            delay = rng.uniform(0.0, 1.1 * (whole - opened))
        if r > 0:
            time.sleep(delay)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:  # round 0 runs to the end and times an ingest
            os.read(ready, 1)
            opened = time.monotonic() - started
        os.close(ready)
        status, _ = collect(pid, read)
        if r == 0:
            assert status == 0, f"the uninterrupted ingest failed with status {status}"
            whole = time.monotonic() - started
        kills += int(os.WIFSIGNALED(status))
        seen = check(ingest_id)
        before, after = state(committed), state(k)
        got = (seen["rows"], seen["checksum"])
        outcome = "new" if got == after else "old" if got == before else "neither"
        if outcome == "new":
            committed = k
        print(json.dumps({"round": r, "batch": k, "delay": delay, "killed": os.WIFSIGNALED(status),
                          "outcome": outcome, "rows": seen["rows"], "expected": [before[0], after[0]],
                          "log": seen["log"], "left_before_open": seen["left_before_open"],
                          "staged_after_open": seen["staged_after_open"]}), flush=True)
        r += 1
""")


def test_kills_at_random_points_show_the_old_or_the_new_batch_never_a_part(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home", clickhouse_url=None)
    rounds = 20  # kills
    proc = subprocess.run(
        [sys.executable, "-c", FORK_SERVER, str(rounds), "17", AS_OF, str(Path(__file__).parent)],
        env=_env(settings), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for r in results:
        assert r["outcome"] in ("old", "new"), r  # never a part of a batch, never a mix of two
        assert r["staged_after_open"] == [], r
        if r["outcome"] == "new":
            assert r["log"].count("ok") == 1, r  # visible iff its ok row is there
        else:
            assert "ok" not in r["log"], r
            assert r["log"] in ([], ["aborted"]), r
    killed = [r for r in results[1:] if r["killed"]]
    assert len(killed) == rounds
    mid_write = [r for r in killed if r["left_before_open"]]
    assert len(mid_write) >= 3, "too few kills landed while a batch was staged"
    assert any(r["outcome"] == "old" for r in mid_write) and any(r["outcome"] == "new" for r in results)
