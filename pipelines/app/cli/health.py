"""``alphaops doctor`` and ``alphaops monitor``: the state's health, and the champions' live checks."""

from __future__ import annotations

from typing import Any

from rich.table import Table
import typer

from pipelines.app.cli.common import app, console, load_settings, out, print_json, split_names, utc_now


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json"),
           no_reap: bool = typer.Option(False, "--no-reap", help="Report only; do not end orphans.")) -> None:
    """The state's health: orphans ended (with their reason), the warehouse lock and its holder,
    disk use, and stale cached bundles."""
    from pipelines.app.doctor import health_report

    report = health_report(load_settings(), reap=not no_reap)
    if as_json:
        print_json(report)
        return
    out.print(f"[bold]state[/] {report['home']}")
    lock = report["warehouse_lock"]
    if not lock["embedded"]:
        out.print("warehouse: ClickHouse server (no embedded lock)")
    elif lock["held"]:
        out.print(f"warehouse: held by PID {lock['pid']} ({lock['command']}) for {lock['held_seconds']} s")
    else:
        out.print("warehouse: free")
    table = Table(title="Disk use")
    table.add_column("part")
    table.add_column("MB", justify="right")
    for part, size in report["disk_bytes"].items():
        table.add_row(part, f"{size / 1e6:.1f}")
    out.print(table)
    for item in report["orphans_ended"]:
        out.print(f"ended orphan {item['kind']} {item['id']}: {item['reason']}")
    if not report["orphans_ended"]:
        out.print("orphans: none")
    for item in report["stale_bundles"]:
        out.print(f"stale bundle {item['path']}: {item['reason']} (safe to delete)")
    if not report["stale_bundles"]:
        out.print("stale bundles: none")


@app.command()
def monitor(
    retrain: list[str] = typer.Option(None, "--retrain", help="Request retraining of MODEL regardless "
                                      "(spec.symbol or full name; repeat or comma-separate)."),
    window_hours: float = typer.Option(24.0, "--window-hours", min=0.01, help="Predictions of the last N hours."),
    as_of: str = typer.Option(None, "--as-of", help="End of the window (ISO time, UTC); default now."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Check every champion: Evidently drift, live vs backtest accuracy, latency; flag retraining."""
    import pandas as pd

    from pipelines.live.alerts import hook_for
    from pipelines.live.monitor import monitor_models

    settings = load_settings()
    when = utc_now() if as_of is None else pd.Timestamp(as_of)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    with console.status("monitoring the champions (Evidently drift, live metrics)…"):
        results = monitor_models(settings, as_of=when, window=pd.Timedelta(hours=window_hours),
                                 manual=split_names(retrain) or [], alert_hook=hook_for(settings.alert_webhook_url))
    if as_json:
        print_json(results)
        _send_retrain_request(settings, results)
        return
    table = Table(title=f"Champions monitored as of {when.isoformat(timespec='seconds')} "
                        f"(window {window_hours:g} h)")
    for col in ("model", "v", "preds", "drift", "pred drift", "live acc / MAE", "backtest acc / MAE", "outcomes", "p99 µs",
                "errors", "retrain", "reasons"):
        table.add_column(col, justify="left" if col in ("model", "retrain", "reasons") else "right")

    def fmt(value: Any, spec: str = ".3f") -> str:
        return "—" if value is None else format(value, spec)

    for r in results:
        drift = f"{r['drift_share']:.0%} ({r.get('n_drifted', 0)}/{r.get('n_features', 0)})" if r.get("n_features") \
            else r.get("status", "—")
        table.add_row(r["model"], str(r.get("version", "")), str(r.get("n_predictions", 0)), drift,
                      "yes" if r.get("prediction_drift") else "no",
                      fmt(r.get("live_accuracy")) if r.get("live_mae") is None else f"MAE {r['live_mae']:.4g}",
                      fmt(r.get("backtest_accuracy")) if r.get("backtest_mae") is None else f"MAE {r['backtest_mae']:.4g}",
                      str(r.get("n_outcomes", 0)), fmt(r.get("latency_p99_us"), ".0f"),
                      fmt(r.get("error_rate"), ".1%"), "[bold red]yes[/]" if r["retrain"] else "no",
                      "; ".join(r.get("reasons") or []) or (r.get("error") or "—"))
    out.print(table)
    for r in results:
        if r.get("report_uri"):
            out.print(f"  {r['model']}: Evidently report {r['report_uri']}")
    wanted = [r for r in results if r["retrain"]]
    if wanted:
        symbols = ",".join(sorted({str(r.get("symbol")) for r in wanted}))
        specs = ",".join(sorted({str(r.get("spec")) for r in wanted}))
        out.print(f"\nRetraining needed: {symbols} · {specs}. To run it in process now instead:")
        out.print(f"  alphaops run --symbols {symbols} --families {specs} --reason monitor")
    _send_retrain_request(settings, results)


def _send_retrain_request(settings: Any, results: list[dict[str, Any]]) -> None:
    """Emit the retrain-request Asset event for Airflow's scheduler (stderr says what happened)."""
    from pipelines.config import RETRAIN_REQUEST_URI
    from pipelines.live.retrain import send_retrain_request

    try:
        sent = send_retrain_request(settings, results)
    except LookupError as exc:
        console.print(f"[yellow]retrain request not sent to Airflow[/]: {exc}")
        return
    if sent is None:
        return
    models = ", ".join(r["model"] for r in sent["requests"])
    console.print(f"retrain request for {models}: event {sent['event_id']} on {RETRAIN_REQUEST_URI}")
    if sent["queued"]:
        console.print(f"  queued {', '.join(sent['queued'])}: the scheduler on this state starts it "
                      f"for {', '.join(sent['extra']['families'])} on {', '.join(sent['extra']['symbols'])}")
    if sent["paused"]:
        console.print(f"[yellow]  {', '.join(sent['paused'])} is paused and ignores the event; unpause it "
                      "in the Airflow UI to retrain on requests[/]")
