"""``alphaops bench ...``: benchmarks, printed as ratios against a baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.table import Table
import typer

from pipelines.app.cli.common import bench_app, console, out, print_json, split_names


@bench_app.command("features")
def bench_features(n_bars: int = typer.Option(1_000_000, help="Synthetic 1-minute bars."),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Full feature set vs plain TA-Lib on the same arrays, and one compute_latest call."""
    from features.bench import run_feature_bench

    with console.status(f"computing features on {n_bars:,} bars…"):
        figures = run_feature_bench(n_bars=n_bars)
    _print_figures("Feature benchmark (one process)", figures, as_json)


@bench_app.command("serving")
def bench_serving(n_calls: int = typer.Option(20_000, help="One-row calls per method."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Predictor.predict vs raw onnxruntime session.run vs MLflow pyfunc, same LightGBM model."""
    from pipelines.app.bench import serving_bench

    with console.status("benchmarking a 300-tree, 64-feature LightGBM direction model…"):
        figures = serving_bench(n_calls=n_calls)
    _print_figures("Serving benchmark (one process, one thread)", figures, as_json)


@bench_app.command("patterns")
def bench_patterns(n_windows: int = typer.Option(1_000_000, help="Stored windows to search."),
                   dim: int = typer.Option(64, help="Embedding dimension (64, 128 or 256)."),
                   k: int = typer.Option(10, help="Neighbours per query."),
                   queries: int = typer.Option(200, help="Queries of the numpy searches."),
                   libraries: list[str] = typer.Option(None, "--libraries",
                                                       help="market and/or random (default both)."),
                   n_lists: int = typer.Option(None, help="IVF lists (default: a power of two near sqrt(windows))."),
                   nprobe: int = typer.Option(None, help="IVF lists probed (default: calibrated at build time)."),
                   target_recall: float = typer.Option(0.95, help="Recall@k that the calibrated nprobe reaches."),
                   warehouse: bool = typer.Option(True, help="Also insert the market library into the warehouse "
                                                             "and time its exact cosineDistance search."),
                   warehouse_queries: int = typer.Option(30, help="Queries of each warehouse search."),
                   hnsw: bool = typer.Option(False, help="Also build and search a vector_similarity (HNSW) copy "
                                                         "(slow to build at 1M windows)."),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Embedding + top-k among stored windows: exact numpy (the baseline), IVF numpy (speed-up, recall@k),
    and the warehouse (exact, optionally HNSW)."""
    from pipelines.app.bench_patterns import LIBRARIES, pattern_bench

    chosen = tuple(split_names(libraries) or LIBRARIES)
    with console.status(f"building and searching libraries of {n_windows:,} windows…"):
        try:
            figures = pattern_bench(n_windows=n_windows, dim=dim, k=k, n_queries=queries, libraries=chosen,
                                    n_lists=n_lists, nprobe=nprobe, target_recall=target_recall, warehouse=warehouse,
                                    n_warehouse_queries=warehouse_queries, hnsw=hnsw)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    _print_figures("Pattern search benchmark (one process; embedding with one thread)", figures, as_json)


@bench_app.command("models")
def bench_models(
    quick: bool = typer.Option(False, "--quick", help="SPX x (volatility_h5, direction_h1), 1 seed, 1 trial (CI)."),
    datasets: list[str] = typer.Option(None, "--datasets", help="Sample symbols (default SPX,NASDAQ,VIX,WTI,CRUDE,SYN1, and SYNLIQ, SYNNEWS for their families)."),
    families: list[str] = typer.Option(None, "--families", help="Families or spec names (default all)."),
    seeds: int = typer.Option(3, min=1, help="Seeds per (spec, dataset)."),
    trials: int = typer.Option(None, min=1, help="Optuna trials per spec (default: the setting)."),
    out_path: Path = typer.Option(Path("docs/benchmarks.md"), "--out", help="Markdown; the JSON and PNG go beside it."),
    resume: bool = typer.Option(False, "--resume", help="Keep the runs in the JSON beside --out; run what is missing."),
    rerun_stale: bool = typer.Option(False, "--rerun-stale", help="With --resume: also run again the runs of "
                                     "these datasets and families trained on an older feature set."),
    root: Path = typer.Option(None, "--root", help="Folder for the per-(dataset, seed) homes (default: temporary)."),
) -> None:
    """Train and validate every family on the real samples and the synthetic market; publish the table."""
    from pipelines.app.bench_models import model_bench

    if rerun_stale and not resume:
        raise typer.BadParameter("--rerun-stale reruns rows of an earlier bench: it needs --resume")
    start = time.perf_counter()
    result = model_bench(out=out_path, datasets=split_names(datasets), families=split_names(families), seeds=seeds,
                         trials=trials, quick=quick, root=root, resume=resume, rerun_stale=rerun_stale, console=console)
    out.print(f"wrote {result['markdown']}, {result['json']}" + (f", {result['chart']}" if result["chart"] else "")
              + f" ({result['meta']['n_runs']} runs, wall time {time.perf_counter() - start:.0f} s)")


@bench_app.command("scale")
def bench_scale(
    quick: bool = typer.Option(False, "--quick", help="Small points (20k and 60k minutes, 2 daily symbols), for CI."),
    trials: int = typer.Option(2, min=1, help="Optuna trials of the direction_h1 train-and-validate."),
    out_path: Path = typer.Option(Path("docs/benchmarks.md"), "--out",
                                  help="Markdown (its scale section); the JSON and PNG go beside it."),
    root: Path = typer.Option(None, "--root", help="Folder for the data and per-point homes (default: temporary)."),
    steps: list[str] = typer.Option(None, "--steps", help="A prefix of ingest,features,labels,train (default all)."),
) -> None:
    """Wall time and peak RSS of ingest, features, labels and train as bars and symbols grow."""
    from pipelines.app.bench_scale import scale_bench

    try:
        result = scale_bench(out=out_path, quick=quick, trials=trials, root=root, steps=split_names(steps),
                             console=console)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--steps") from None
    out.print(f"wrote {result['markdown']} (scale section), {result['json']}"
              + (f", {result['chart']}" if result["chart"] else "")
              + f" ({len(result['rows'])} measurements, wall time {result['meta']['wall_seconds']:.0f} s)")


def _print_figures(title: str, figures: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(figures)
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    out.print(table)
