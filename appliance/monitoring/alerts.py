"""Alerts: thresholds over a pass's snapshots open alerts, a condition that clears
resolves them, and a webhook hears of each.

One alert per (model, kind, feature) is active at a time: ``open`` until acknowledged
(``monitor.alert_ack``) or resolved. Raising, resolving and acknowledging each write an
audit event (``monitor.alert``, ``monitor.alert_resolved``, ``monitor.alert_ack``) in
the same control.db transaction as the change.

The webhook is a URL on this machine or the local network (an address in the
``allowed_networks`` setting; ``check_webhook_url`` refuses anything else, by the same
rule as ``compliance.residency``). Deliveries run in a background
thread after the pass: each attempt is recorded on the alert with an audit event
(``monitor.webhook_sent`` or ``monitor.webhook_failed``, logged too), and the next pass
tries again (up to ``MAX_ATTEMPTS``), so a dead receiver never blocks monitoring.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from appliance.auth import Actor
from appliance.compliance import residency
from appliance.errors import BadInput
from appliance.stores.control import now

log = logging.getLogger(__name__)

WEBHOOK_ACTOR = Actor("system", "webhook")
KINDS = ("feature_drift", "prediction_drift", "latency_p99", "error_rate", "auc_drop")
MAX_ATTEMPTS = 10


def _breaches(snap: dict[str, Any], th: dict[str, float]) -> list[dict[str, Any]]:
    """(kind, feature, value, threshold, message) this snapshot breaches."""
    out = []
    where = f"{snap['variant']} traffic, window {snap['window']}"
    if snap["requests"] < th["min_rows"]:
        return out
    for feature, psi in (snap.get("psi") or {}).items():
        if psi is not None and psi > th["psi"]:
            out.append(("feature_drift", feature, psi, th["psi"],
                        f"{feature}: PSI {psi:.3f} > {th['psi']:g} ({where})"))  # fmt: skip
    p = snap.get("prediction_psi")
    if p is not None and p > th["prediction_psi"]:
        out.append(("prediction_drift", "", p, th["prediction_psi"],
                    f"prediction PSI {p:.3f} > {th['prediction_psi']:g} ({where})"))  # fmt: skip
    lat = snap.get("latency_p99_ms")
    if lat is not None and lat > th["latency_p99_ms"]:
        out.append(("latency_p99", "", lat, th["latency_p99_ms"],
                    f"p99 latency {lat:.1f} ms > {th['latency_p99_ms']:g} ms ({where})"))  # fmt: skip
    err = snap.get("error_rate")
    if err is not None and err > th["error_rate"]:
        out.append(("error_rate", "", err, th["error_rate"],
                    f"error rate {err:.1%} > {th['error_rate']:.1%} ({where})"))  # fmt: skip
    metric = snap.get("metric") or {}
    auc, base = metric.get("auc"), metric.get("holdout_auc")
    labelled = metric.get("labelled", 0) >= th["min_rows"]
    if auc is not None and base is not None and labelled and base - auc > th["auc_drop"]:
        out.append(("auc_drop", "", base - auc, th["auc_drop"],
                    f"live AUC {auc:.3f} is {base - auc:.3f} below the hold-out's "
                    f"{base:.3f} (> {th['auc_drop']:g}; {where})"))  # fmt: skip
    return out


def evaluate(model: str, snaps: list[dict[str, Any]], th: dict[str, float]) -> dict[str, Any]:
    """What this pass says: ``{"breached": {(kind, feature): alert}, "checked": kinds}``,
    the worst breach per key; a kind is checked when some snapshot could compute it."""
    breached: dict[tuple[str, str], dict[str, Any]] = {}
    checked: set[str] = set()
    for s in snaps:
        if s["requests"] >= th["min_rows"]:
            if s.get("psi"):
                checked.add("feature_drift")
            if s.get("prediction_psi") is not None:
                checked.add("prediction_drift")
            if s.get("latency_p99_ms") is not None:
                checked.add("latency_p99")
            if s.get("error_rate") is not None:
                checked.add("error_rate")
            if (s.get("metric") or {}).get("auc") is not None:
                checked.add("auc_drop")
        for kind, feature, value, threshold, message in _breaches(s, th):
            key = (kind, feature)
            if key not in breached or value > breached[key]["value"]:
                breached[key] = {"model": model, "kind": kind, "feature": feature,
                                 "variant": s["variant"], "window": s["window"],
                                 "value": float(value), "threshold": float(threshold),
                                 "message": message}  # fmt: skip
    return {"breached": breached, "checked": checked}


def apply(control: Any, model: str, changes: dict[str, Any], actor: Any) -> list[dict[str, Any]]:
    """Open the new alerts and resolve the cleared ones, each with its audit event in
    the same transaction; the alerts opened or resolved."""
    out = []
    breached, checked = changes["breached"], changes["checked"]
    with control.transaction() as tx:
        for (kind, feature), alert in breached.items():
            if tx.active_alert(model, kind, feature) is not None:
                continue  # one active alert per (model, kind, feature)
            at = now()
            alert_id = tx.insert_alert(alert | {"at": at})
            tx.append_audit(actor, "monitor.alert", f"{model}#{alert_id}",
                            {k: alert[k] for k in ("kind", "feature", "variant", "window",
                                                   "value", "threshold", "message")})  # fmt: skip
            out.append(alert | {"id": alert_id, "status": "open"})
        for row in control.alert_rows(False, model=model):
            key = (row["kind"], row["feature"])
            if row["status"] == "resolved" or row["kind"] not in checked or key in breached:
                continue
            tx.set_alert_status(row["id"], "resolved", now(), str(actor))
            tx.append_audit(actor, "monitor.alert_resolved", f"{model}#{row['id']}",
                            {"kind": row["kind"], "feature": row["feature"]})  # fmt: skip
            out.append(public(row) | {"status": "resolved"})
    return out


def public(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "model", "kind", "feature", "variant", "window", "value", "threshold",
            "message", "status", "raised_at", "updated_at", "updated_by", "delivered_at",
            "attempts", "last_error")  # fmt: skip
    return {k: row.get(k) for k in keys}


# ---------------------------------------------------------------- the webhook


def check_webhook_url(url: str) -> tuple[str, int]:
    """Refuse a webhook URL that is not http(s) to a loopback or private-LAN address
    (a host name must resolve to such addresses only); its (host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadInput(f"webhook {url!r}: the scheme must be http or https, not "
                       f"{parts.scheme or 'none'!r}")  # fmt: skip
    host = parts.hostname
    if not host:
        raise BadInput(f"webhook {url!r}: no host (like http://127.0.0.1:9000/alerts)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadInput(f"webhook {url!r}: the port is not a number from 1 to 65535") from None
    # one rule for every sink and for the process's own connections (compliance.residency)
    residency.check_sink(host, f"webhook {url!r}", port)
    return host, port


class Webhook:
    """Background delivery of undelivered alerts to the configured URL."""

    def __init__(self, control: Any, timeout: float = 5.0) -> None:
        self.control = control
        self.timeout = timeout
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def deliver_in_background(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return  # it picks up what is pending
            self._thread = threading.Thread(target=self.deliver, name="falaj-webhook",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def wait(self, timeout: float | None = None) -> int:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return len(self._pending())

    def _pending(self) -> list[dict[str, Any]]:
        if not self.control.monitor_setting("webhook"):
            return []
        return [a for a in self.control.alert_rows(False, undelivered=True)
                if a["attempts"] < MAX_ATTEMPTS and a["status"] != "resolved"]  # fmt: skip

    def deliver(self) -> int:
        """POST each undelivered alert; how many were delivered."""
        url = self.control.monitor_setting("webhook")
        if not url:
            return 0
        done = 0
        for alert in reversed(self._pending()):  # oldest first
            error = None
            try:
                check_webhook_url(url)  # the name may resolve elsewhere by now
                body = json.dumps({"source": "falaj", "alert": public(alert)}).encode()
                req = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})  # fmt: skip
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    r.read()
            except (OSError, BadInput, urllib.error.URLError) as exc:
                error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                log.warning("alert %s: webhook %s failed: %s", alert["id"], url, error)
            try:
                with self.control.transaction() as tx:
                    tx.mark_delivery(alert["id"], None if error else now(), error)
                    tx.append_audit(WEBHOOK_ACTOR,
                                    "monitor.webhook_failed" if error else "monitor.webhook_sent",
                                    f"{alert['model']}#{alert['id']}",
                                    {"url": url} | ({"error": error} if error else {}))  # fmt: skip
            except Exception as exc:  # never let the thread die loudly
                log.warning("alert %s: delivery not recorded: %s", alert["id"], exc)
            done += error is None
        return done
