"""Alerts from monitor results, delivered by the log hook or a webhook (a local http.server)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pipelines.live.alerts import Alert, AlertHook, LogAlertHook, WebhookAlertHook, alerts_for, hook_for

HEALTHY = {"model": "default.direction_h1.X", "version": "4", "drifted": False, "prediction_drift": False,
           "drift_share": 0.05, "n_features": 100, "triggers": [], "reasons": [], "live_accuracy": 0.6,
           "latency_p50_us": 20.0, "latency_p95_us": 40.0, "latency_p99_us": 90.0, "error_rate": 0.0,
           "fallback_rate": 0.0}


@pytest.fixture
def webhook():
    """A local HTTP server recording POSTed JSON bodies; answers ``status`` (200 by default)."""
    received: list[dict] = []
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"body": json.loads(body), "content_type": self.headers["Content-Type"]})
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):  # keep test output quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received, state
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_healthy_result_raises_no_alert():
    assert alerts_for(HEALTHY) == []


def test_degraded_accuracy_drift_latency_and_errors_each_alert():
    result = {**HEALTHY, "drifted": True, "drift_share": 0.42, "n_drifted": 42, "prediction_drift": True,
              "triggers": ["drift", "accuracy_vs_backtest"], "n_outcomes": 900, "backtest_accuracy": 0.63,
              "reasons": ["drift: 42% of 100 features drifted (> 30%)",
                          "accuracy_vs_backtest: live accuracy 0.510 is more than 5 points below the backtest 0.630"],
              "live_accuracy": 0.51, "latency_p99_us": 12_000.0, "error_rate": 0.05}
    alerts = {a.kind: a for a in alerts_for(result, max_latency_p99_us=5000.0)}
    assert set(alerts) == {"accuracy", "drift", "latency", "errors"}
    assert alerts["accuracy"].severity == "critical" and "0.510" in alerts["accuracy"].message
    assert alerts["accuracy"].details["backtest_accuracy"] == 0.63
    assert "42% of 100 features" in alerts["drift"].message and "predictions drifted" in alerts["drift"].message
    assert "12000 us > 5000 us" in alerts["latency"].message
    assert alerts["errors"].severity == "critical" and "5.00%" in alerts["errors"].message
    assert all(a.model == HEALTHY["model"] and a.version == "4" for a in alerts.values())
    # the latency bound is a parameter
    assert "latency" not in {a.kind for a in alerts_for(result, max_latency_p99_us=20_000.0)}


def test_log_hook_logs_a_warning(caplog):
    alert = Alert("latency", "warning", "default.m.X", "1", "p99 latency 9000 us > 5000 us")
    with caplog.at_level(logging.WARNING, logger="pipelines.live.alerts"):
        LogAlertHook().send(alert)
    assert "ALERT [warning/latency] default.m.X v1: p99 latency 9000 us" in caplog.text


def test_webhook_posts_the_alert_as_json(webhook):
    url, received, _ = webhook
    hook = WebhookAlertHook(url, timeout=2.0)
    assert isinstance(hook, AlertHook)
    hook.send(Alert("drift", "warning", "default.m.X", "2", "40% of 144 features drifted", {"drift_share": 0.4}))
    assert hook.sent == 1 and hook.failed == 0
    assert received[0]["content_type"] == "application/json"
    body = received[0]["body"]
    assert body["kind"] == "drift" and body["model"] == "default.m.X" and body["details"] == {"drift_share": 0.4}
    assert body["text"] == "[warning] default.m.X v2: 40% of 144 features drifted"


def test_webhook_errors_are_logged_not_raised(webhook, caplog):
    url, received, state = webhook
    state["status"] = 500
    hook = WebhookAlertHook(url, timeout=2.0)
    alert = Alert("errors", "critical", "default.m.X", "2", "error rate 5.00% > 1.00%")
    with caplog.at_level(logging.ERROR, logger="pipelines.live.alerts"):
        hook.send(alert)  # the server answers 500
        WebhookAlertHook("http://127.0.0.1:9/nothing-listens-here", timeout=0.5).send(alert)  # refused
    assert hook.failed == 1 and len(received) == 1
    assert caplog.text.count("alert webhook") == 2 and "500" in caplog.text


def test_the_webhook_is_used_when_settings_name_one(monkeypatch):
    import pydantic

    from pipelines.config import Settings

    monkeypatch.delenv("ALPHAOPS_ALERT_WEBHOOK_URL", raising=False)
    assert isinstance(hook_for(Settings().alert_webhook_url), LogAlertHook)
    monkeypatch.setenv("ALPHAOPS_ALERT_WEBHOOK_URL", "http://127.0.0.1:8999/hook")
    hook = hook_for(Settings().alert_webhook_url)
    assert isinstance(hook, WebhookAlertHook) and hook.url == "http://127.0.0.1:8999/hook"
    monkeypatch.setenv("ALPHAOPS_ALERT_WEBHOOK_URL", "ftp://example/hook")
    with pytest.raises(pydantic.ValidationError, match="alert_webhook_url"):
        Settings()
    with pytest.raises(ValueError, match="must start with http"):
        hook_for("ftp://example/hook")


def test_monitor_results_go_through_the_hook(monkeypatch):
    """monitor_models sends each result's alerts through the hook it is given."""
    import pipelines.live.monitor as monitor

    sent: list[Alert] = []

    class Collect:
        def send(self, alert: Alert) -> None:
            sent.append(alert)

    result = {**HEALTHY, "model": "default.direction_h1.HOOK", "latency_p99_us": 9000.0, "retrain": False,
              "checked_at": "2025-01-01T00:00:00+00:00", "report_uri": ""}
    monkeypatch.setattr(monitor, "_monitor_one", lambda *a, **k: dict(result))

    class FakeRegistry:
        tenant = "default"

        def model_names(self):
            return ["default.direction_h1.HOOK"]

        def alias_version(self, name, alias):
            return "1"

        def qualify(self, name):
            return name

    monkeypatch.setattr("registry.Registry.from_settings", classmethod(lambda cls, s: FakeRegistry()))
    from pipelines.config import get_settings

    results = monitor.monitor_models(get_settings(), as_of="2025-01-01", alert_hook=Collect())
    assert [r["model"] for r in results] == ["default.direction_h1.HOOK"]
    assert [(a.kind, a.model) for a in sent] == [("latency", "default.direction_h1.HOOK")]
