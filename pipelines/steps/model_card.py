"""The model card of a validated-or-rejected version (``model_card.md``) and its holdout plots.

``pipelines.steps.validate`` writes both to the version's MLflow run: the holdout metrics, the
baselines and naive rules of the field, the walk-forward folds, the null test and every gate.
"""

from __future__ import annotations

import numpy as np

from models.specs import ModelSpec
from pipelines.evaluation.datasets import Dataset


def folds_text(spec: ModelSpec, metrics: dict[str, float]) -> str:
    n = int(metrics.get("wf_n_folds", 0))
    if not n:
        return "Not scored: the holdout is too short to cut into folds."
    rows = "\n".join(f"| {k} | {metrics.get(f'wf_{spec.metric}_fold{k}', float('nan')):.6g} | "
                     f"{metrics.get(f'wf_sharpe_fold{k}', float('nan')):.4g} |" for k in range(1, n + 1))
    text = (f"| fold | {spec.metric} | Sharpe after costs |\n|---|---|---|\n{rows}\n\n"
            f"Mean ± std: {spec.metric} {metrics.get(f'wf_{spec.metric}_mean', float('nan')):.4g} ± "
            f"{metrics.get(f'wf_{spec.metric}_std', float('nan')):.4g}")
    if "wf_sharpe_mean" in metrics:
        text += f"; Sharpe {metrics['wf_sharpe_mean']:.4g} ± {metrics.get('wf_sharpe_std', float('nan')):.4g}"
    if "pbo" in metrics:
        text += (f".\n\nProbability of backtest overfitting (CSCV over {int(metrics['pbo_n_candidates'])} Optuna "
                 f"trials and their luck twins): {metrics['pbo']:.3f} (at most {spec.gates.max_pbo:g}); over the "
                 f"trials alone {metrics.get('pbo_trials', float('nan')):.3f} (not gated)")
    return text + "."


def null_test_text(metrics: dict[str, float], gates: dict[str, bool]) -> str:
    from pipelines.steps.validate import failed_gates  # validate imports this module

    screen = (f"Screen: the fixed model's holdout output against block-permuted holdout labels, "
              f"{int(metrics['null_screen_n'])} draws: p = {metrics['null_screen_p_value']:.4f} (this is the "
              "version's p-value in the run's false-discovery control)." if "null_screen_p_value" in metrics else "")
    if "null_p_value" not in metrics:
        return (f"{screen} The null-test gate was not evaluated: the version already failed "
                f"{', '.join(failed_gates(gates))}, so it is rejected whatever it says.").strip()
    if "null_retrain_p_value" not in metrics:
        return (screen + " The retrain test was not run (the screen failed, the model never sees labels, or "
                "ALPHAOPS_NULL_PERMUTATIONS is 0).")
    sequential = (" (sequential: retraining stopped once enough permuted-label models scored at least as "
                  "well)") if metrics.get("null_stopped_early") else ""
    return (screen + f" Retrain: labels permuted in blocks, the spec retrained {int(metrics['null_n'])} times: "
            f"null mean {metrics['null_mean']:.4f}, 95th percentile {metrics['null_q95']:.4f}, "
            f"p = {metrics['null_retrain_p_value']:.4f}{sequential}. The gate's p-value is the larger: "
            f"{metrics['null_p_value']:.4f}.")


def log_holdout_plots(spec: ModelSpec, data: Dataset, output: np.ndarray) -> None:
    """Confusion matrix and calibration (classifiers) or residuals (regressors) on the holdout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay

    y = data.y[data.holdout_idx]
    if spec.task == "classifier":
        fig, ax = plt.subplots(figsize=(5, 4))
        ConfusionMatrixDisplay.from_predictions(y, np.argmax(output, axis=1), labels=np.arange(output.shape[1]),
                                                display_labels=list(spec.class_names), ax=ax, colorbar=False)
        ax.set_title(f"{spec.name}: holdout confusion matrix")
        mlflow.log_figure(fig, "plots/confusion_matrix.png")
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(5, 4))
        for k, name in enumerate(spec.class_names if output.shape[1] > 2 else spec.class_names[1:]):
            k = k if output.shape[1] > 2 else 1
            observed, predicted = calibration_curve(y == k, output[:, k], n_bins=10, strategy="quantile")
            ax.plot(predicted, observed, marker="o", label=name)
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"{spec.name}: holdout calibration")
        ax.legend()
        mlflow.log_figure(fig, "plots/calibration.png")
        plt.close(fig)
    elif spec.task == "regressor":
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(output, y - output, s=4, alpha=0.4)
        ax.axhline(0.0, color="grey", linestyle=":")
        ax.set_xlabel("prediction")
        ax.set_ylabel("residual")
        ax.set_title(f"{spec.name}: holdout residuals")
        mlflow.log_figure(fig, "plots/residuals.png")
        plt.close(fig)


def model_card(name: str, version: str, spec: ModelSpec, data: Dataset, metrics: dict[str, float],
               gates: dict[str, bool], tags: dict[str, str]) -> str:
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(metrics.items())
                     if not k.startswith(("baseline_", "naive_")))
    naive = "\n".join(f"| {k.removeprefix('naive_')} | {v:.6g} |" for k, v in sorted(metrics.items())
                      if k.startswith("naive_")) or "| (none for this family) | |"

    base = "\n".join(f"| {k.removeprefix('baseline_')} | {v:.6g} |" for k, v in sorted(metrics.items())
                     if k.startswith("baseline_"))
    gate_rows = "\n".join(f"| {g.removeprefix('gate_')} | {'pass' if ok else 'FAIL'} |" for g, ok in gates.items())
    if "gate_null_test" not in gates:
        gate_rows += "\n| null_test | not run |"
    trading = ("\n`trading_*`: the signal traded on the holdout after costs: long when up is likelier than down, "
               "short in the opposite case, flat when a neutral class is likeliest; each bar's signal held "
               f"{spec.horizon} bar(s) with weight 1/{spec.horizon} (overlapping positions); costs on every change "
               "of position. `buy_hold_*` below is the market held long under the same costs.\n"
               if "trading_sharpe" in metrics else "")
    return f"""# Model card: {name} v{version}

- Family / spec: `{spec.family}` / `{spec.name}` — {spec.description}
- Label: `{spec.label}` (horizon {spec.horizon} bars; CV purge = horizon)
- Data window: {data.index[0]} → {data.index[-1]}; train ends {data.train_end}, holdout starts {data.holdout_start}
- Rows: train {len(data.train_idx)}, holdout {len(data.holdout_idx)}; features: {len(data.feature_names)}
  (feature set `{tags.get('feature_set_version')}`)
- Lineage: run `{tags.get('mlflow.runName', '')}`, data fingerprint `{tags.get('data_fingerprint')}`,
  code `{tags.get('code_version')}`, as of {tags.get('as_of')}

## Holdout metrics (out of sample)

| metric | value |
|---|---|
{rows}
{trading}
## Baselines on the same holdout

| baseline | value |
|---|---|
{base}

## Naive rules of the field, fitted on the training rows (the model must beat the best)

| rule | {spec.metric} |
|---|---|
{naive}

Model: {spec.metric} = {metrics[spec.metric]:.6g}.

## Walk-forward folds (refit on an expanding window, purged by the horizon)

{folds_text(spec, metrics)}

## Null test

{null_test_text(metrics, gates)}

## Gates

| gate | result |
|---|---|
{gate_rows}

Features: {', '.join(data.feature_names)}
"""
