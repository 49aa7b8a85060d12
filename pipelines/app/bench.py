"""Benchmarks behind ``alphaops bench``: serving figures are ratios against a baseline in the same process;
``bench models`` trains and validates every family on real and synthetic markets beside its classical rivals."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.values import json_safe

log = logging.getLogger(__name__)


def _direction_bundle(directory: Path, n_features: int, n_trees: int, seed: int) -> tuple[Any, Path]:
    """A LightGBM direction model (``n_trees`` trees) on random features, exported as a bundle."""
    from models.bundle import classifier_schema, write_bundle
    from models.families.direction import DirectionClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20_000, n_features)).astype(np.float32)
    y = (X[:, :5].sum(axis=1) + rng.normal(scale=2.0, size=len(X)) > 0).astype(int)
    model = DirectionClassifier(n_estimators=n_trees, num_leaves=31, min_child_samples=20,
                                random_state=seed).fit(X, y)
    schema = classifier_schema(
        model={"name": "bench.direction", "version": "1", "family": "direction"},
        feature_set_version="bench", features=[f"f{i}" for i in range(n_features)],
        class_names=["down", "up"])
    return model, write_bundle(directory / "bundle", model.to_onnx(), schema)


def _pyfunc_latency(model: Any, X: np.ndarray, directory: Path, n_calls: int) -> dict[str, float]:
    """One-row latency of MLflow pyfunc ``predict`` on the same LightGBM model (native flavor)."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{directory / 'mlflow.db'}")
    experiment = mlflow.create_experiment("bench", artifact_location=(directory / "art").as_uri())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.lightgbm.log_model(model.model_, name="model", pip_requirements=["lightgbm"])
        pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    columns = [f"f{i}" for i in range(X.shape[1])]
    frames = [pd.DataFrame(X[i:i + 1], columns=columns) for i in range(64)]
    for frame in frames:
        pyfunc.predict(frame)
    timings = np.empty(n_calls)
    for i in range(n_calls):
        start = time.perf_counter_ns()
        pyfunc.predict(frames[i % 64])
        timings[i] = (time.perf_counter_ns() - start) / 1e3
    return {"pyfunc_p50_us": float(np.median(timings)), "pyfunc_p99_us": float(np.quantile(timings, 0.99))}


def serving_bench(*, n_features: int = 64, n_trees: int = 300, n_calls: int = 20_000, seed: int = 0
                  ) -> dict[str, Any]:
    """Predictor vs raw onnxruntime vs MLflow pyfunc, on one LightGBM direction model."""
    from serving._bench_core import run_benchmark

    with tempfile.TemporaryDirectory() as tmp:
        model, bundle = _direction_bundle(Path(tmp), n_features, n_trees, seed)
        figures = run_benchmark(bundle, n_calls=n_calls)
        X = np.random.default_rng(seed + 1).normal(size=(64, n_features)).astype(np.float32)
        figures.update(_pyfunc_latency(model, X, Path(tmp), n_calls=min(n_calls, 2_000)))
    figures["n_trees"] = n_trees
    figures["pyfunc_over_predict_p50"] = figures["pyfunc_p50_us"] / figures["predict_p50_us"]
    return figures


# -- the model benchmark: every family on the real samples and the synthetic market ------------------------

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


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (spec, dataset): primary metric mean ± std over seeds, the best rival, gain, share validated, cost."""
    from collections import Counter

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["spec"], row["dataset"]), []).append(row)
    lines = []
    for (spec, dataset), runs in sorted(groups.items(), key=lambda kv: (kv[1][0]["family"], kv[0][0], kv[0][1])):
        scored = [r for r in runs if r["status"] in ("validated", "rejected")]
        first = runs[0]
        line: dict[str, Any] = {"spec": spec, "family": first["family"], "dataset": dataset,
                                "metric": first["metric"], "greater_is_better": first["greater_is_better"],
                                "runs": len(runs), "scored": len(scored),
                                "feature_sets": sorted({r["feature_set_version"] for r in scored
                                                        if r.get("feature_set_version")})}
        if not scored:
            reasons = Counter(r.get("reason") or r["status"] for r in runs)
            lines.append({**line, "status": "skipped", "reason": reasons.most_common(1)[0][0]})
            continue
        score, score_sd = _mean_std([r["score"] for r in scored])
        rival, rival_sd = _mean_std([r["rival_score"] for r in scored])
        g, g_sd = _mean_std([r["gain"] for r in scored])
        wf = _mean_std([r["wf_mean"] for r in scored])[0]
        wf_sd = _mean_std([r["wf_std"] for r in scored])[0]  # the folds' spread, averaged over seeds
        failed = Counter(g for r in scored for g in r.get("failed_gates", []))
        lines.append({**line, "status": "scored", "score": score, "score_std": score_sd,
                      "rival": Counter(r["rival"] for r in scored).most_common(1)[0][0],
                      "rival_score": rival, "rival_std": rival_sd, "gain": g, "gain_std": g_sd,
                      "wf_mean": wf, "wf_std": wf_sd,
                      "validated_share": sum(r["status"] == "validated" for r in scored) / len(scored),
                      "failed_gates": dict(failed.most_common()),
                      "seconds": float(np.mean([r["seconds"] for r in scored]))})
    return lines


def _fmt(value: float, sd: float | None = None, digits: int = 4) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None and np.isfinite(sd) else "")


def _versions_sentence(meta: dict[str, Any]) -> str:
    """Which code and feature-set versions the runs used (a resumed bench can span several)."""
    codes = meta.get("code_versions") or {meta["code_version"]: meta["n_runs"]}
    sets = meta.get("feature_sets") or {meta["feature_set_version"]: meta["n_scored"]}

    def listing(counts: dict[str, int]) -> str:
        if len(counts) == 1:
            return f"`{next(iter(counts))}`"
        return ", ".join(f"`{name}` ({n} runs)" for name, n in sorted(counts.items()))

    return f"code {listing(codes)}, feature set {listing(sets)} (the last column says which, per line)"


def missing_runs(rows: list[dict[str, Any]], plan: dict[str, list[str]], seeds: list[int]
                 ) -> dict[str, dict[str, list[int]]]:
    """The runs of ``plan`` that have no row yet (an error row counts as missing): spec -> dataset -> seeds."""
    have = {(r["dataset"], r["seed"], r["spec"]) for r in rows if r["status"] != "error"}
    missing: dict[str, dict[str, list[int]]] = {}
    for spec in dict.fromkeys(name for names in plan.values() for name in names):
        for dataset, names in plan.items():
            absent = [seed for seed in seeds if spec in names and (dataset, seed, spec) not in have]
            if absent:
                missing.setdefault(spec, {})[dataset] = absent
    return missing


def count_runs(missing: dict[str, dict[str, list[int]]]) -> int:
    """How many runs a :func:`missing_runs` answer holds."""
    return sum(len(seeds) for by_dataset in missing.values() for seeds in by_dataset.values())


def missing_sentence(missing: dict[str, dict[str, list[int]]], plan: dict[str, list[str]], seeds: list[int]) -> str:
    """``missing_runs`` in words: '`a`: every dataset; `b`: WTI (seed 44), SYN1'."""
    def where(spec: str, by_dataset: dict[str, list[int]]) -> str:
        planned = [dataset for dataset, names in plan.items() if spec in names]
        if len(planned) > 1 and list(by_dataset) == planned and all(v == list(seeds) for v in by_dataset.values()):
            return "every dataset"
        return ", ".join(dataset if absent == list(seeds) else
                         f"{dataset} (seed{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))})"
                         for dataset, absent in by_dataset.items())

    return "; ".join(f"`{spec}`: {where(spec, by_dataset)}" for spec, by_dataset in missing.items())


def benchmark_markdown(lines: list[dict[str, Any]], meta: dict[str, Any], chart: str | None) -> str:
    """docs/benchmarks.md: the table, how it was made, and what it does not cover."""
    head = ("| family | spec | dataset | metric | AlphaOps (mean ± std) | walk-forward folds | best rival | rival score "
            "| gain | validated | cost (s) | feature set |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    body, skipped = [], []
    for line in lines:
        if line["status"] == "skipped":
            skipped.append(f"| {line['spec']} | {line['dataset']} | {line['reason']} |")
            continue
        arrow = "↑" if line["greater_is_better"] else "↓"
        body.append(
            f"| {line['family']} | `{line['spec']}` | {line['dataset']} | {line['metric']} {arrow} | "
            f"{_fmt(line['score'], line['score_std'])} | {_fmt(line['wf_mean'], line['wf_std'])} | {line['rival']} | "
            f"{_fmt(line['rival_score'])} | {100 * line['gain']:+.1f}% ± {100 * line['gain_std']:.1f} | "
            f"{line['scored'] and round(100 * line['validated_share'])}% of {line['scored']} | {line['seconds']:.0f} | "
            f"{', '.join(line.get('feature_sets') or ['–'])} |")
    seeds = ", ".join(str(s) for s in meta["seeds"])
    text = f"""# Model benchmark

Produced by `alphaops bench models{' --quick' if meta.get('quick') else ''}` on {meta['date']} on {meta['machine']}.
Wall time: {meta['wall_seconds'] / 60:.1f} min for {meta['n_runs']} runs ({meta['n_scored']} trained and validated,
{meta['n_runs'] - meta['n_scored']} skipped); {_versions_sentence(meta)}.

Every spec is trained and validated by the real steps (`pipelines.steps.build`, `pipelines.steps.train.train_spec`,
`pipelines.steps.validate.validate_version`) on each dataset where its inputs exist, once per seed ({seeds}), each
(dataset, seed) in its own `ALPHAOPS_HOME`; the synthetic markets made for a family run that family only
({'; '.join(f'{market}: {", ".join(families)}' for market, families in FAMILY_MARKETS.items())}). Optuna runs {meta['trials']} trial(s) per spec on purged walk-forward
CV of the training window; the score is the version's own ONNX bundle on the purged holdout (the last
{100 * meta['holdout_fraction']:.0f}% of rows). **best rival** is the best of the spec's naive rules of the field
(`models.naive`: GARCH(1,1), EGARCH(1,1), HAR-RV and last-h RV for volatility; the last return's sign for
direction; ...) and its trivial baselines (training mean, majority class, coin flip), all fitted on the training
rows and scored on the same holdout rows. **gain** is relative to that rival, positive when AlphaOps is better
((rival − model) / rival for losses, ↓; (model − rival) / rival for scores, ↑), mean ± std over seeds.
**walk-forward folds**: the holdout cut into {meta['walk_forward_folds']} blocks, each scored by the spec refit on
every row before it (mean over seeds of the folds' mean ± their std). **validated**: the share of runs that passed
every per-version gate of `validate` (the run-level false-discovery control of `make run` is not applied here).
**cost**: wall seconds of train + validate per run on this machine (2 cores shared with other jobs).

{head}
{chr(10).join(body)}
"""
    if chart:
        text += f"\n![gain over the best rival per spec and dataset]({chart})\n"
    if skipped:
        text += ("\n## Not benchmarked (inputs missing, or every run failed)\n\n| spec | dataset | why |\n|---|---|---|\n"
                 + "\n".join(skipped) + "\n")
    if meta.get("notes"):
        text += "\n## Notes\n\n" + "\n".join(f"- {note}" for note in meta["notes"]) + "\n"
    return text


def gains_chart(lines: list[dict[str, Any]], path: Path) -> Path | None:
    """A horizontal bar chart of the gain over the best rival (mean ± std over seeds) per spec and dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [line for line in lines if line["status"] == "scored" and np.isfinite(line["gain"])]
    if not shown:
        return None
    labels = [f"{line['spec']} · {line['dataset']}" for line in shown]
    values = np.array([100 * line["gain"] for line in shown])
    errors = np.array([100 * line["gain_std"] if np.isfinite(line["gain_std"]) else 0.0 for line in shown])
    colors = ["tab:green" if line["validated_share"] >= 0.5 else "tab:grey" for line in shown]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(shown) + 1.5))
    ax.barh(labels, values, xerr=errors, color=colors)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("gain over the best naive rule or baseline, % (green: validated in at least half the seeds)")
    ax.set_title("AlphaOps vs its classical rivals, purged holdout")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine_description() -> str:
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"this project's machine ({cpu}, {cores} cores, {platform.system()}, Python {platform.python_version()})"


def keep_scale_section(out: Path, markdown: str) -> str:
    """``markdown`` followed by the scale section ``out`` already holds (``alphaops bench scale``)."""
    from pipelines.app.bench_scale import BEGIN, END

    existing = out.read_text() if out.exists() else ""
    if BEGIN not in existing or END not in existing:
        return markdown
    section = BEGIN + existing.split(BEGIN, 1)[1].split(END, 1)[0] + END
    return markdown.rstrip() + "\n\n" + section + "\n"


def model_bench(*, out: Path, datasets: list[str] | None = None, families: list[str] | None = None,
                seeds: int = 3, trials: int | None = None, quick: bool = False, root: Path | None = None,
                resume: bool = False, keep: bool = False, console: Any = None) -> dict[str, Any]:
    """``alphaops bench models``: run the benchmark, write ``out`` (markdown), its JSON and the gains chart.

    ``quick`` covers :data:`QUICK_DATASETS` x :data:`QUICK_SPECS`, one seed and one trial, with short
    null tests (for CI). ``resume`` keeps the rows of ``out``'s JSON and runs only what is missing
    (the wall time then adds up every run's). Homes go under ``root`` (default: a temporary
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
    kept = [r for r in done if r["status"] != "error"]  # run_model_bench runs error rows again
    sessions = previous.get("sessions", [])
    workdir = root or Path(tempfile.mkdtemp(prefix="alphaops-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started, wall_start = datetime.now(timezone.utc), time.perf_counter()

    def save(rows: list[dict[str, Any]]) -> None:
        # A session that ran nothing (everything asked for was done: a re-render) is not counted.
        ran = len(rows) > len(kept)
        payload = {"runs": rows, "sessions": sessions + ([{"started": started.isoformat(), "datasets": datasets,
                                                           "specs": spec_names, "seeds": seed_list,
                                                           "wall_seconds": time.perf_counter() - wall_start}]
                                                         if ran else [])}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(json_safe(payload), indent=1))

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    plan = bench_plan(datasets, spec_names)
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
            "code_versions": dict(Counter(r.get("code_version") or "unknown" for r in rows)),
            "feature_sets": dict(Counter(r["feature_set_version"] for r in scored if r.get("feature_set_version"))),
            "seeds": sorted({r["seed"] for r in rows}), "trials": settings.trials,
            "holdout_fraction": settings.holdout_fraction, "walk_forward_folds": settings.walk_forward_folds,
            "wall_seconds": wall, "n_runs": len(rows), "n_scored": len(scored), "code_version": code_version(),
            "feature_set_version": features.FEATURE_SET_VERSION,
            "notes": ([f"{len(payload['sessions'])} sessions (resumed); the wall time adds them up."]
                      if len(payload["sessions"]) > 1 else [])
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

