"""``alphaops bench models``: every family trained and validated by the real steps on real and synthetic
markets, beside its classical rivals, over seeds; resumable, with one home per (dataset, seed)."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.app.bench import machine_description
from pipelines.app.bench_report import (benchmark_markdown, count_runs, gains_chart, keep_scale_section, missing_runs,
                                        missing_sentence, summarize)
from pipelines.values import json_safe

log = logging.getLogger(__name__)


BENCH_DATASETS = ("SPX", "NASDAQ", "VIX", "WTI", "CRUDE", "SYN1")
"""arch's real daily samples (and monthly Brent), plus the synthetic one-minute market."""
FAMILY_MARKETS = {"SYNLIQ": ("liquidity", "returns"), "SYNNEWS": ("sentiment",)}
"""Synthetic markets made for some families (SYNLIQ: seasonal intraday volume; SYNNEWS: headlines that
move the price after them): benched, by default and when named, for those families only."""
QUICK_DATASETS = ("SPX",)
QUICK_SPECS = ("volatility_h5", "direction_h1")
BENCH_AS_OF = "2040-01-01"
"""A fixed "now" for every run (the quality gate refuses bars after it); no sample reaches it."""


def _bench_settings(home: Path, seed: int, trials: int | None, overrides: dict[str, Any]) -> Any:
    from pipelines.config import get_settings

    values: dict[str, Any] = {"home": home, "seed": seed, **overrides}
    if trials:
        values["trials"] = trials
    return get_settings(**values)


def _inputs_missing(spec: Any, symbol: str, n_bars: int, n_events: int) -> str | None:
    """Why the spec cannot be benchmarked on this dataset (None when its inputs exist)."""
    from features import WARMUP

    if n_bars <= WARMUP + 2 * max(spec.horizon, 1):
        return f"{n_bars} bars: fewer than the feature warm-up ({WARMUP}) and the label horizon"
    if spec.task == "anomaly" and n_events == 0:
        return "no recorded market events to score the anomaly score against (real data has none)"
    return None


def _rival(metrics: dict[str, float], metric: str, greater_is_better: bool) -> tuple[str, float]:
    """The best naive rule or baseline on the version's holdout: (name, score)."""
    rivals = {}
    for key, value in metrics.items():
        for prefix in ("holdout_naive_", "holdout_baseline_"):
            if key.startswith(prefix) and key.endswith(f"_{metric}") and np.isfinite(value):
                rivals[key.removeprefix(prefix).removesuffix(f"_{metric}")] = float(value)
    if not rivals:
        return "", float("nan")
    name = (max if greater_is_better else min)(rivals, key=rivals.__getitem__)
    return name, rivals[name]


def gain(score: float, rival: float, greater_is_better: bool) -> float:
    """Relative gain over the rival, positive when the model is better: (model - rival) / |rival|
    for scores, (rival - model) / |rival| for losses."""
    if not (np.isfinite(score) and np.isfinite(rival)) or rival == 0:
        return float("nan")
    return float((score - rival) / abs(rival) if greater_is_better else (rival - score) / abs(rival))


def _score_text(row: dict[str, Any]) -> str:
    """' 0.5037' for a scored row, '' for a skipped one."""
    score = row.get("score")
    return "" if score is None or not np.isfinite(score) else f" {score:.4g}"


def bench_one(settings: Any, spec: Any, symbol: str, timeframe: str, as_of: Any, feature_set_version: str
              ) -> dict[str, Any]:
    """Train and validate one spec on one dataset with the real steps; the result row of the benchmark."""
    from models.cv import InsufficientDataError
    from pipelines.steps.train import train_spec
    from pipelines.steps.validate import validate_version
    from registry import Registry

    row: dict[str, Any] = {"spec": spec.name, "family": spec.family, "dataset": symbol, "timeframe": timeframe,
                           "seed": settings.seed, "metric": spec.metric, "greater_is_better": spec.greater_is_better}
    start = time.perf_counter()
    try:
        trained = train_spec(settings, spec_name=spec.name, symbol=symbol, timeframe=timeframe,
                             feature_set_version=feature_set_version, as_of=as_of, trigger="bench")
        train_seconds = time.perf_counter() - start
        result = validate_version(settings, model_name=trained["model_name"], version=trained["version"],
                                  as_of=as_of)
    except InsufficientDataError as exc:
        return {**row, "status": "skipped", "reason": str(exc), "seconds": time.perf_counter() - start}
    except ValueError as exc:  # e.g. no rows with both features and label
        return {**row, "status": "skipped", "reason": str(exc).splitlines()[0], "seconds": time.perf_counter() - start}
    except Exception as exc:  # noqa: BLE001 - one failing spec must not end a bench of hours; the row says why
        log.exception("bench: %s on %s (seed %s) failed", spec.name, symbol, settings.seed)
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    metrics = dict(Registry.from_settings(settings).client.get_run(trained["run_id"]).data.metrics)
    rival_name, rival_score = _rival(metrics, spec.metric, spec.greater_is_better)
    score = float(result["score"]) if result["score"] is not None else float("nan")
    return {**row, "status": result["status"], "failed_gates": result["failed_gates"], "score": score,
            "rival": rival_name, "rival_score": rival_score,
            "gain": gain(score, rival_score, spec.greater_is_better),
            "wf_mean": metrics.get(f"holdout_wf_{spec.metric}_mean", float("nan")),
            "wf_std": metrics.get(f"holdout_wf_{spec.metric}_std", float("nan")),
            "n_test": metrics.get("holdout_n_test", float("nan")),
            "rivals": {k.removeprefix("holdout_"): v for k, v in metrics.items()
                       if k.startswith(("holdout_naive_", "holdout_baseline_")) and k.endswith(f"_{spec.metric}")},
            "train_seconds": train_seconds, "seconds": seconds}


def bench_plan(datasets: list[str], spec_names: list[str]) -> dict[str, list[str]]:
    """The specs to run per dataset: every spec on a general dataset, its families' specs on a
    :data:`FAMILY_MARKETS` one. A spec that supplies its own rows (``ModelSpec.rows``: generated
    samples, the same whatever the dataset) runs on the first general dataset only."""
    from models.catalog import spec_by_name

    general = [d for d in datasets if d not in FAMILY_MARKETS]
    specs = {name: spec_by_name(name) for name in spec_names}
    plan = {}
    for dataset in datasets:
        names = []
        for name, spec in specs.items():
            if dataset in FAMILY_MARKETS:
                keep = spec.family in FAMILY_MARKETS[dataset] and spec.rows is None
            else:
                keep = spec.rows is None or dataset == general[0]
            if keep:
                names.append(name)
        plan[dataset] = names
    return plan


def stale_runs(rows: list[dict[str, Any]], plan: dict[str, list[str]], seeds: list[int],
               feature_set_version: str) -> list[dict[str, Any]]:
    """The scored rows of ``plan`` x ``seeds`` trained on another feature set than ``feature_set_version``
    (a dataset's extra inputs, e.g. ``+news-1``, are not a difference)."""
    planned = {(dataset, seed, spec) for dataset, names in plan.items() for spec in names for seed in seeds}
    return [r for r in rows if (r["dataset"], r["seed"], r["spec"]) in planned
            and r["status"] in ("validated", "rejected")
            and str(r.get("feature_set_version") or "").split("+", 1)[0] != feature_set_version]


def run_model_bench(*, plan: dict[str, list[str]], seeds: list[int], root: Path,
                    trials: int | None = None, overrides: dict[str, Any] | None = None,
                    done: list[dict[str, Any]] | None = None, on_row: Any = None, progress: Any = None
                    ) -> list[dict[str, Any]]:
    """Each dataset's specs of ``plan`` (:func:`bench_plan`) where their inputs exist, once per seed; each
    (dataset, seed) in its own home.

    ``done``: rows of an earlier, interrupted run; their (dataset, seed, spec) are not run again.
    ``on_row(row)`` is called after each row (to save partial results); ``progress`` is a
    ``rich.progress.Progress`` (one task over every (dataset, seed, spec)).
    """
    import pandas as pd

    from models.catalog import spec_by_name, timeframe_problem
    from pipelines.steps.build import build_features, build_labels
    from pipelines.steps.extract import extract_samples
    from pipelines.ingest.samples import sample_timeframe
    from pipelines.tracking import code_version
    from warehouse import open_warehouse

    as_of = pd.Timestamp(BENCH_AS_OF, tz="UTC")
    code = code_version()
    kept = [r for r in done or [] if r["status"] != "error"]  # a resumed bench runs failed rows again
    finished = {(r["dataset"], r["seed"], r["spec"]) for r in kept}
    rows: list[dict[str, Any]] = list(kept)
    task = progress.add_task("bench", total=len(seeds) * sum(map(len, plan.values()))) if progress else None

    def advance(description: str) -> None:
        if progress is not None:
            progress.update(task, advance=1, description=description)

    for symbol, names in plan.items():
        timeframe = sample_timeframe(symbol)
        # Specs whose horizons are in hours, resolved for this dataset's bars (monthly bars cannot be).
        unresolved = {name: problem for name in names if (problem := timeframe_problem(name, timeframe))}
        symbol_specs = [spec_by_name(name, None if name in unresolved else timeframe) for name in names]
        for seed in seeds:
            todo = [s for s in symbol_specs if (symbol, seed, s.name) not in finished]
            if not todo:
                for _ in symbol_specs:
                    advance(f"{symbol} seed {seed}: done earlier")
                continue
            settings = _bench_settings(root / f"{symbol}-seed{seed}", seed, trials, overrides or {})
            if progress is not None:
                progress.update(task, description=f"{symbol} seed {seed}: extract, features, labels")
            start = time.perf_counter()
            extract_samples(settings, [symbol], as_of)
            with open_warehouse(settings) as warehouse:
                n_bars = len(warehouse.read_bars(tenant=settings.scope, symbol=symbol, timeframe=timeframe, end=as_of))
                n_events = len(warehouse.read_market_events(tenant=settings.scope, symbol=symbol))
            why_not = {s.name: unresolved.get(s.name) or _inputs_missing(s, symbol, n_bars, n_events) for s in todo}
            runnable = [s for s in todo if why_not[s.name] is None]
            ref = build_features(settings, symbol=symbol, timeframe=timeframe, as_of=as_of) if runnable else None
            if runnable:
                build_labels(settings, symbol=symbol, timeframe=timeframe, spec_names=[s.name for s in runnable],
                             as_of=as_of)
            prepare_seconds = time.perf_counter() - start
            for spec in todo:
                missing = why_not[spec.name]
                if progress is not None:
                    progress.update(task, description=f"{symbol} seed {seed}: {spec.name}")
                if missing or ref is None:
                    row = {"spec": spec.name, "family": spec.family, "dataset": symbol, "timeframe": timeframe,
                           "seed": seed, "metric": spec.metric, "greater_is_better": spec.greater_is_better,
                           "status": "skipped", "reason": missing, "seconds": 0.0}
                else:
                    row = bench_one(settings, spec, symbol, timeframe, as_of, ref["feature_set_version"])
                row["prepare_seconds"] = prepare_seconds
                row["feature_set_version"] = ref["feature_set_version"] if ref is not None else None
                row["code_version"] = code
                rows.append(row)
                if on_row is not None:
                    on_row(rows)
                advance(f"{symbol} seed {seed}: {spec.name} {row['status']}")
    return rows


def model_bench(*, out: Path, datasets: list[str] | None = None, families: list[str] | None = None,
                seeds: int = 3, trials: int | None = None, quick: bool = False, root: Path | None = None,
                resume: bool = False, rerun_stale: bool = False, keep: bool = False,
                console: Any = None) -> dict[str, Any]:
    """``alphaops bench models``: run the benchmark, write ``out`` (markdown), its JSON and the gains chart.

    ``quick`` covers :data:`QUICK_DATASETS` x :data:`QUICK_SPECS`, one seed and one trial, with short
    null tests (for CI). ``resume`` keeps the rows of ``out``'s JSON and runs only what is missing
    (the wall time then adds up every run's); with ``rerun_stale`` it also runs again the kept rows of the
    requested datasets and specs that were trained on an older feature set (:func:`stale_runs`), which
    stay in the JSON until their new row replaces them. Homes go under ``root`` (default: a temporary
    folder, removed unless ``keep``).
    """
    import json
    import shutil
    from collections import Counter
    from datetime import datetime, timezone

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import features
    from models.catalog import spec_by_name, specs_for
    from pipelines.tracking import code_version

    datasets = list(datasets or (QUICK_DATASETS if quick else BENCH_DATASETS + tuple(FAMILY_MARKETS)))
    # Universe specs (correlation_regime) model a universe, not one bench dataset: not benched here.
    spec_names = list(QUICK_SPECS) if quick and not families else [
        s.name for s in specs_for(families or ["all"]) if not s.universe]
    seed_list = [42 + k for k in range(1 if quick and seeds == 3 else seeds)]
    overrides: dict[str, Any] = {"null_screen_permutations": 199, "null_permutations": 20} if quick else {}
    trials = trials or (1 if quick else None)
    json_path = out.with_suffix(".json")
    previous = json.loads(json_path.read_text()) if resume and json_path.exists() else {}
    done = previous.get("runs", [])
    for row in done:  # rows of a bench older than per-row versions carry its single recorded versions
        row.setdefault("feature_set_version", previous.get("meta", {}).get("feature_set_version")
                       if row["status"] in ("validated", "rejected") else None)
        row.setdefault("code_version", previous.get("meta", {}).get("code_version"))
    plan = bench_plan(datasets, spec_names)
    stale = stale_runs(done, plan, seed_list, features.FEATURE_SET_VERSION) if rerun_stale else []
    stale_ids = {id(r) for r in stale}
    done = [r for r in done if id(r) not in stale_ids]
    kept = [r for r in done if r["status"] != "error"]  # run_model_bench runs error rows again
    sessions = previous.get("sessions", [])
    workdir = root or Path(tempfile.mkdtemp(prefix="alphaops-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started, wall_start = datetime.now(timezone.utc), time.perf_counter()

    def save(rows: list[dict[str, Any]]) -> None:
        # A session that ran nothing (everything asked for was done: a re-render) is not counted.
        ran = len(rows) > len(kept)
        # A stale row stays until its new run replaces it, so an interrupted rerun loses nothing.
        replaced = {(r["dataset"], r["seed"], r["spec"]) for r in rows}
        waiting = [r for r in stale if (r["dataset"], r["seed"], r["spec"]) not in replaced]
        session = {"started": started.isoformat(), "datasets": datasets, "specs": spec_names, "seeds": seed_list,
                   "wall_seconds": time.perf_counter() - wall_start,
                   **({"rerun_stale": len(stale) - len(waiting)} if stale else {})}
        payload = {"runs": rows + waiting, "sessions": sessions + ([session] if ran else [])}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(json_safe(payload), indent=1))

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    to_run = count_runs(missing_runs(done, plan, seed_list))
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            def save_and_report(rows: list[dict[str, Any]]) -> None:
                save(rows)
                if not progress.console.is_terminal:  # a log file gets one line per run instead of a bar
                    row = rows[-1]
                    progress.console.print(
                        f"[{len(rows) - len(kept)}/{to_run}] {row['dataset']} seed {row['seed']} {row['spec']}: "
                        f"{row['status']}{_score_text(row)} ({row['seconds']:.0f} s)", highlight=False)

            rows = run_model_bench(plan=plan, seeds=seed_list, root=workdir, trials=trials, overrides=overrides,
                                   done=done, on_row=save_and_report, progress=progress)
    finally:
        if root is None and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    save(rows)
    payload = json.loads(json_path.read_text())
    lines = summarize(rows)
    settings = _bench_settings(workdir, seed_list[0], trials, overrides)
    wall = sum(s["wall_seconds"] for s in payload["sessions"])
    scored = [r for r in rows if r["status"] in ("validated", "rejected")]
    full_specs = list(QUICK_SPECS) if quick else [s.name for s in specs_for(["all"]) if not s.universe]
    full_plan = bench_plan(list(QUICK_DATASETS) if quick else list(BENCH_DATASETS + tuple(FAMILY_MARKETS)), full_specs)
    full_seeds = [42 + k for k in range(max(seeds, 1))]
    absent = missing_runs(rows, full_plan, full_seeds)
    coverage = ([f"Not run yet: {count_runs(absent)} of {len(full_seeds) * sum(map(len, full_plan.values()))} runs of the "
                 f"full bench (`alphaops bench models --resume` runs them): "
                 f"{missing_sentence(absent, full_plan, full_seeds)}."] if absent and not quick else [])
    meta = {"date": started.date().isoformat(), "machine": machine_description(), "quick": quick,
            "family_markets": {} if quick else FAMILY_MARKETS,
            "code_versions": dict(Counter(r.get("code_version") or "unknown" for r in rows)),
            "feature_sets": dict(Counter(r["feature_set_version"] for r in scored if r.get("feature_set_version"))),
            "seeds": sorted({r["seed"] for r in rows}), "trials": settings.trials,
            "holdout_fraction": settings.holdout_fraction, "walk_forward_folds": settings.walk_forward_folds,
            "wall_seconds": wall, "n_runs": len(rows), "n_scored": len(scored), "code_version": code_version(),
            "feature_set_version": features.FEATURE_SET_VERSION,
            "notes": ([f"{len(payload['sessions'])} sessions (resumed); the wall time adds them up."]
                      if len(payload["sessions"]) > 1 else [])
                     + ([f"{rerun} runs trained on an older feature set were run again on "
                         f"`{features.FEATURE_SET_VERSION}` (`--rerun-stale`); the wall time counts both."]
                        if (rerun := sum(s.get("rerun_stale", 0) for s in payload["sessions"])) else [])
                     + coverage
                     + [f"`{name}` trains and is scored on rows it generates itself (`ModelSpec.rows`), the same "
                        f"whatever the dataset: it is benched once, in {dataset}'s homes."
                        for dataset, names in full_plan.items() for name in names
                        if spec_by_name(name).rows is not None]
                     + (["--quick: 1 trial, 199 screen permutations and at most 20 null retrains (p >= 1/21)."] if quick else [])}
    chart = gains_chart(lines, out.with_name(out.stem + "_gains.png"))
    out.write_text(keep_scale_section(out, benchmark_markdown(lines, meta, chart.name if chart else None)))
    payload.update({"meta": meta, "table": lines})
    json_path.write_text(json.dumps(json_safe(payload), indent=1))
    return {"markdown": out, "json": json_path, "chart": chart, "lines": lines, "meta": meta}
