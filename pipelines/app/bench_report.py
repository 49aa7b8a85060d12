"""The model benchmark's report: the per-(spec, dataset) summary over seeds, ``docs/benchmarks.md``
with its notes, the gains chart, and the runs of the full bench not run yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


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


def _family_markets_clause(meta: dict[str, Any]) -> str:
    """'; the synthetic markets made for a family run that family only (SYNLIQ: liquidity, ...)', or ''."""
    markets = meta.get("family_markets") or {}
    if not markets:
        return ""
    listed = "; ".join(f"{market}: {', '.join(families)}" for market, families in markets.items())
    return f"; the synthetic markets made for a family run that family only\n({listed})"


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
(dataset, seed) in its own `ALPHAOPS_HOME`{_family_markets_clause(meta)}. Optuna runs {meta['trials']} trial(s) per spec on purged walk-forward
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


def keep_scale_section(out: Path, markdown: str) -> str:
    """``markdown`` followed by the scale section ``out`` already holds (``alphaops bench scale``)."""
    from pipelines.app.bench_scale import BEGIN, END

    existing = out.read_text() if out.exists() else ""
    if BEGIN not in existing or END not in existing:
        return markdown
    section = BEGIN + existing.split(BEGIN, 1)[1].split(END, 1)[0] + END
    return markdown.rstrip() + "\n\n" + section + "\n"
