"""``alphaops bench scale``: wall time and peak RSS of each step as the data grows.

Every (point, step) runs in a process of its own, started here and reaped with ``os.wait4``,
whose ``ru_maxrss`` is that process's own peak: what one Airflow task of the step would need.
Points are one symbol of 1-minute bars (100k, 1M, 2.6M bars) and 1, 10 and 50 daily symbols
of the synthetic AR(1) market (written to Parquet and ingested as a user would). The table,
its JSON and a chart go to ``docs/benchmarks.md`` (a marked section beside the model table),
``docs/benchmarks_scale.json`` and ``docs/benchmarks_scale.png``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

STEPS = ("ingest", "features", "labels", "train")
BEGIN, END = "<!-- bench scale: begin -->", "<!-- bench scale: end -->"
DAILY_BARS = 5_000  # 20 years of trading days per daily symbol


@dataclass(frozen=True)
class ScalePoint:
    label: str
    timeframe: str
    n_symbols: int
    bars_per_symbol: int

    @property
    def bars(self) -> int:
        return self.n_symbols * self.bars_per_symbol

    @property
    def symbols(self) -> list[str]:
        return [f"SC{self.timeframe.upper()}{i:02d}" for i in range(self.n_symbols)]


def default_points(quick: bool = False) -> list[ScalePoint]:
    if quick:  # CI: the same code path on small data
        return [ScalePoint("5k minutes", "1m", 1, 5_000), ScalePoint("15k minutes", "1m", 1, 15_000),
                ScalePoint("2 daily symbols", "1d", 2, 1_500)]
    return [ScalePoint("100k minutes", "1m", 1, 100_000), ScalePoint("1M minutes", "1m", 1, 1_000_000),
            ScalePoint("2.6M minutes", "1m", 1, 2_600_000), ScalePoint("1 daily symbol", "1d", 1, DAILY_BARS),
            ScalePoint("10 daily symbols", "1d", 10, DAILY_BARS), ScalePoint("50 daily symbols", "1d", 50, DAILY_BARS)]


def write_point_files(point: ScalePoint, folder: Path) -> list[Path]:
    """One Parquet file per symbol of ``point`` (AR(1) with φ = 0.05: little to find, as in markets)."""
    from pipelines.ingest.synthetic import autoregressive_market

    folder.mkdir(parents=True, exist_ok=True)
    freq = "1min" if point.timeframe == "1m" else "1D"
    sigma = 5e-4 if point.timeframe == "1m" else 1e-2
    paths = []
    for i, symbol in enumerate(point.symbols):
        path = folder / f"{symbol}.parquet"
        if not path.exists():
            bars = autoregressive_market(1_000 + i, point.bars_per_symbol, phi=0.05, freq=freq, sigma=sigma,
                                         start="2000-01-03" if point.timeframe == "1d" else "2019-01-01")
            bars.rename_axis("timestamp").reset_index().to_parquet(path)
        paths.append(path)
    return paths


def run_step(step: str, symbols: list[str], timeframe: str, files: list[str], trials: int) -> dict[str, Any]:
    """One step over every symbol, in this process (the child side of :func:`measure`)."""
    import pandas as pd

    from pipelines.config import get_settings

    settings = get_settings()
    as_of = pd.Timestamp.now(tz="UTC")
    rows = 0
    if step == "ingest":
        from pipelines.ingest.ingestion import ingest_file

        for symbol, file in zip(symbols, files):
            rows += ingest_file(file, symbol=symbol, timeframe=timeframe, settings=settings, as_of=as_of).rows_in
    elif step == "features":
        from pipelines.steps.build import build_features

        for symbol in symbols:
            rows += build_features(settings, symbol=symbol, timeframe=timeframe, as_of=as_of)["rows"]
    elif step == "labels":
        from pipelines.steps.build import build_labels

        for symbol in symbols:
            rows += build_labels(settings, symbol=symbol, timeframe=timeframe, spec_names=["direction_h1"],
                                 as_of=as_of)["rows"]
    elif step == "train":  # one direction_h1 train-and-validate, on the first symbol
        import features
        from pipelines.steps.train import train_spec
        from pipelines.steps.validate import validate_version

        rows = bars_of(settings, symbols[0], timeframe)
        trained = train_spec(settings, spec_name="direction_h1", symbol=symbols[0], timeframe=timeframe,
                             feature_set_version=features.FEATURE_SET_VERSION, as_of=as_of, trials=trials)
        validate_version(settings, model_name=trained["model_name"], version=trained["version"], as_of=as_of)
    else:
        raise ValueError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
    return {"rows": rows}


def bars_of(settings: Any, symbol: str, timeframe: str) -> int:
    from warehouse import open_warehouse

    with open_warehouse(settings) as warehouse:
        return warehouse.count_bars(tenant=settings.scope, symbol=symbol, timeframe=timeframe)


def measure(step: str, point: ScalePoint, files: list[Path], home: Path, log: Path, trials: int) -> dict[str, Any]:
    """Run ``step`` of ``point`` in a child process; its wall time and its own peak RSS."""
    import subprocess

    result = home / f"{step}.json"
    args = [sys.executable, "-m", "pipelines.app.bench_scale", step, json.dumps(point.symbols), point.timeframe,
            json.dumps([str(f) for f in files]), str(trials), str(result)]
    env = {**os.environ, "ALPHAOPS_HOME": str(home)}
    start = time.perf_counter()
    with log.open("a") as sink:
        child = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"bench scale: {step} on {point.label} failed (exit {child.returncode}); see {log}")
    rows = json.loads(result.read_text())["rows"]
    return {"point": point.label, "timeframe": point.timeframe, "symbols": point.n_symbols, "bars": point.bars,
            "step": step, "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "rows": rows,
            "bars_per_second": point.bars / seconds if seconds > 0 else float("nan")}


def growth(rows: list[dict[str, Any]], step: str, key: str) -> dict[str, float]:
    """Exponent b of ``key ≈ a·bars^b`` and the slope per million bars, over the minute points."""
    points = sorted((r["bars"], r[key]) for r in rows if r["step"] == step and r["timeframe"] == "1m")
    if len(points) < 2:
        return {"exponent": float("nan"), "per_million": float("nan")}
    bars, values = np.array(points, dtype=float).T
    exponent = float(np.polyfit(np.log(bars), np.log(values), 1)[0])
    per_million = float(np.polyfit(bars / 1e6, values, 1)[0])
    return {"exponent": exponent, "per_million": per_million}


def scale_markdown(rows: list[dict[str, Any]], meta: dict[str, Any], chart: str | None) -> str:
    steps = [s for s in STEPS if any(r["step"] == s for r in rows)]
    lines = ["| point | bars | step | wall (s) | peak RSS (MB) | bars/s |", "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['point']} | {r['bars']:,} | {r['step']} | {r['seconds']:.1f} | {r['peak_rss_mb']:,.0f} "
                     f"| {r['bars_per_second']:,.0f} |")
    fits = ["| step | time exponent | s per million bars | memory exponent | MB per million bars |",
            "|---|---:|---:|---:|---:|"]
    for step in steps:
        t, m = growth(rows, step, "seconds"), growth(rows, step, "peak_rss_mb")
        fits.append(f"| {step} | {t['exponent']:.2f} | {t['per_million']:.1f} | {m['exponent']:.2f} "
                    f"| {m['per_million']:,.0f} |")
    image = f"\n![growth]({chart})\n" if chart else ""
    return f"""{BEGIN}
## Scale benchmark

Produced by `alphaops bench scale{' --quick' if meta['quick'] else ''}` on {meta['date']} on {meta['machine']}
(wall time {meta['wall_seconds'] / 60:.1f} min). Each (point, step) ran in a process of its own; **peak RSS**
is that process's own maximum resident set (`ru_maxrss` from `wait4`), imports included. Data: the
synthetic AR(1) market (φ = 0.05), one symbol of 1-minute bars or several daily symbols of {DAILY_BARS:,} bars,
ingested from Parquet. `train` is one `direction_h1` train-and-validate ({meta['trials']} Optuna trials,
null tests, walk-forward folds) on the first symbol. Memory budget settings: features in pieces of
{meta['feature_chunk_rows']:,} bars, at most {meta['max_train_bytes'] / 1e9:.1f} GB of training matrix.

{chr(10).join(lines)}

Growth over the 1-minute points (fits of `value ≈ a·bars^b` and of a line in bars; an exponent below 1
means the fixed cost of the process still dominates):

{chr(10).join(fits)}
{image}{END}
"""


def replace_section(existing: str, section: str) -> str:
    """``existing`` with its scale section replaced by ``section`` (appended if it has none)."""
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        return head + section.strip() + rest.split(END, 1)[1]
    return existing.rstrip() + ("\n\n" if existing.strip() else "") + section


def scale_chart(rows: list[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minute = [r for r in rows if r["timeframe"] == "1m"]
    if not minute:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for step in STEPS:
        mine = sorted((r for r in minute if r["step"] == step), key=lambda r: r["bars"])
        bars = [r["bars"] for r in mine]
        axes[0].plot(bars, [r["seconds"] for r in mine], marker="o", label=step)
        axes[1].plot(bars, [r["peak_rss_mb"] for r in mine], marker="o", label=step)
    for ax, title in zip(axes, ("wall time (s)", "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("1-minute bars of one symbol")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scale_bench(*, out: Path, quick: bool = False, trials: int = 2, root: Path | None = None,
                steps: list[str] | None = None, points: list[ScalePoint] | None = None,
                console: Any = None) -> dict[str, Any]:
    """Measure every point (in order, smallest first) and publish the table, JSON and chart.

    ``steps`` measures only those (they run in the order of :data:`STEPS`; each needs the ones
    before it, so a subset must be a prefix, e.g. ingest and features)."""
    steps = list(steps or STEPS)
    if steps != list(STEPS[:len(steps)]):
        raise ValueError(f"steps must be a prefix of {', '.join(STEPS)} (each needs the ones before it), got {steps}")
    from pipelines.app.bench import machine_description
    from pipelines.config import get_settings

    settings = get_settings()
    root = root or Path(tempfile.mkdtemp(prefix="alphaops-bench-scale-"))
    started, wall = datetime.now(timezone.utc), time.perf_counter()
    rows: list[dict[str, Any]] = []
    for point in points or default_points(quick):
        home = root / point.label.replace(" ", "_")
        home.mkdir(parents=True, exist_ok=True)
        files = write_point_files(point, root / "data" / point.label.replace(" ", "_"))
        for step in steps:
            row = measure(step, point, files, home, root / "bench_scale.log", trials)
            rows.append(row)
            if console is not None:
                console.print(f"{point.label:>18} {step:<9} {row['seconds']:8.1f} s {row['peak_rss_mb']:8,.0f} MB")
    meta = {"date": started.date().isoformat(), "machine": machine_description(), "quick": quick, "trials": trials,
            "wall_seconds": time.perf_counter() - wall, "feature_chunk_rows": settings.feature_chunk_rows,
            "max_train_bytes": settings.max_train_bytes}
    out.parent.mkdir(parents=True, exist_ok=True)
    chart = scale_chart(rows, out.with_name(out.stem + "_scale.png"))
    section = scale_markdown(rows, meta, chart.name if chart else None)
    out.write_text(replace_section(out.read_text() if out.exists() else "", section))
    json_path = out.with_name(out.stem + "_scale.json")
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return {"markdown": out, "json": json_path, "chart": chart, "rows": rows, "meta": meta}


if __name__ == "__main__":  # the child of measure(): STEP SYMBOLS TIMEFRAME FILES TRIALS RESULT
    _step, _symbols, _timeframe, _files, _trials, _result = sys.argv[1:7]
    _out = run_step(_step, json.loads(_symbols), _timeframe, json.loads(_files), int(_trials))
    Path(_result).write_text(json.dumps(_out))
