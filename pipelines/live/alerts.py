"""Alerts from monitor results, through a pluggable hook.

:func:`alerts_for` turns one :func:`pipelines.live.monitor.monitor_models` result into alerts:
degraded live accuracy, drift (features or predictions), high p99 latency and a high error
rate. A hook is anything with ``send(alert)``: :class:`LogAlertHook` (the default) logs a
warning, :class:`WebhookAlertHook` POSTs the alert as JSON. :func:`hook_for` picks the
webhook when a URL is configured (``Settings.alert_webhook_url``, i.e.
``ALPHAOPS_ALERT_WEBHOOK_URL``). A hook never raises: a failed delivery is logged, and
monitoring goes on.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

ACCURACY_TRIGGERS = ("accuracy_vs_baseline", "accuracy_vs_backtest")


@dataclass(frozen=True)
class Alert:
    """One alert about one model version."""

    kind: str        # accuracy | drift | latency | errors
    severity: str    # warning | critical
    model: str
    version: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class AlertHook(Protocol):
    def send(self, alert: Alert) -> None: ...


class LogAlertHook:
    """Log each alert as a warning (the default hook)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def send(self, alert: Alert) -> None:
        self.logger.warning("ALERT [%s/%s] %s v%s: %s", alert.severity, alert.kind, alert.model, alert.version,
                            alert.message)


class WebhookAlertHook:
    """POST each alert as JSON to ``url`` (Slack-style ``text`` plus the alert's fields).

    Delivery errors (connection refused, timeouts, non-2xx answers) are logged, never raised;
    ``sent`` and ``failed`` count the outcomes.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"alert webhook URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.timeout = timeout
        self.sent = 0
        self.failed = 0

    def send(self, alert: Alert) -> None:
        payload = {"text": f"[{alert.severity}] {alert.model} v{alert.version}: {alert.message}", **alert.to_dict()}
        request = urllib.request.Request(self.url, data=json.dumps(payload, default=str).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http/https only)
                response.read()
            self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as exc:  # HTTPError is a URLError
            self.failed += 1
            log.error("alert webhook %s failed for %s v%s (%s): %s", self.url, alert.model, alert.version,
                      alert.kind, exc)


def hook_for(webhook_url: str | None) -> AlertHook:
    """The webhook hook for ``webhook_url`` (``Settings.alert_webhook_url``), else the logging hook."""
    url = (webhook_url or "").strip()
    return WebhookAlertHook(url) if url else LogAlertHook()


def alerts_for(result: Mapping[str, Any], *, max_latency_p99_us: float = 5000.0,
               max_error_rate: float = 0.01) -> list[Alert]:
    """Alerts for one monitor result: accuracy (an accuracy trigger fired), drift (the feature
    drift share passed its threshold, or the predictions drifted), latency (p99 above
    ``max_latency_p99_us``) and errors (error rate above ``max_error_rate``)."""
    model, version = str(result.get("model", "")), str(result.get("version", ""))
    triggers = list(result.get("triggers") or [])
    reasons = {str(r).split(":", 1)[0]: str(r) for r in result.get("reasons") or []}
    alerts: list[Alert] = []
    degraded = [t for t in triggers if t in ACCURACY_TRIGGERS]
    if degraded:
        alerts.append(Alert("accuracy", "critical", model, version, "; ".join(reasons.get(t, t) for t in degraded),
                            {k: result.get(k) for k in ("live_accuracy", "backtest_accuracy", "baseline_accuracy",
                                                        "n_outcomes")}))
    if result.get("drifted") or result.get("prediction_drift"):
        parts = []
        if result.get("drifted"):
            parts.append(f"{float(result.get('drift_share') or 0):.0%} of {result.get('n_features')} features drifted")
        if result.get("prediction_drift"):
            parts.append("the predictions drifted")
        alerts.append(Alert("drift", "warning", model, version, " and ".join(parts),
                            {k: result.get(k) for k in ("drift_share", "n_drifted", "n_features", "prediction_drift",
                                                        "prediction_drift_score", "report_uri")}))
    p99 = result.get("latency_p99_us")
    if p99 is not None and float(p99) > max_latency_p99_us:
        alerts.append(Alert("latency", "warning", model, version,
                            f"p99 latency {float(p99):.0f} us > {max_latency_p99_us:.0f} us",
                            {k: result.get(k) for k in ("latency_p50_us", "latency_p95_us", "latency_p99_us")}))
    error_rate = float(result.get("error_rate") or 0.0)
    if error_rate > max_error_rate:
        alerts.append(Alert("errors", "critical", model, version,
                            f"error rate {error_rate:.2%} > {max_error_rate:.2%}",
                            {"error_rate": error_rate, "fallback_rate": result.get("fallback_rate")}))
    return alerts
