"""Monitoring: drift of live traffic against a model's training reference, live
metrics and alerts. The decision log (``appliance.serving.decision_log``) is its input;
the drift statistics are the kernels' (``kernels.stats``).

A pass (``MonitoringService.run_pass``) reads each model's decisions over the windows
of the ``monitor_windows`` setting (``1h``: the last hour; ``10000``: the last 10,000
decisions) once, as Arrow, and per window and variant computes: request count, latency
p50/p99, per-input drift of the logged monitor vectors against the bundle's
``reference.json`` (PSI, KS, Wasserstein, Jensen-Shannon), prediction drift, and live
AUC and log loss where outcomes are configured. It stores the latest snapshot per
(model, variant, window), so the dashboard and the API read without recomputing, and
raises or resolves alerts (``appliance.monitoring.alerts``) against the model's
thresholds. A snapshot that cannot compute drift says why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance import durations
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import BadInput, FalajError, NotFound, StoreError
from appliance.monitoring import alerts as alerting
from appliance.monitoring.reference import Reference
from appliance.names import check_name
from appliance.stores import monitoring as store
from appliance.stores.control import now
from kernels.stats import drift, log_loss, roc_auc

log = logging.getLogger(__name__)

MAX_COUNT = 100_000_000  # decisions a count window may name
MEASURES = ("psi", "ks_statistic", "ks_pvalue", "wasserstein", "jensenshannon")
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.2,  # any input's PSI above this: a feature_drift alert
    "prediction_psi": 0.2,  # the output's PSI: a prediction_drift alert
    "latency_p99_ms": 250.0,  # p99 latency logged per decision
    "error_rate": 0.05,  # share of scoring requests that failed (from the live metrics)
    "auc_drop": 0.05,  # live AUC below the hold-out AUC by more than this
    "min_rows": 500,  # fewer decisions (or labelled ones) in a window: no alert from it
}
THRESHOLD_HELP = {
    "psi": "PSI of any input above which a feature_drift alert opens",
    "prediction_psi": "PSI of the prediction above which a prediction_drift alert opens",
    "latency_p99_ms": "p99 decision latency (ms) above which a latency alert opens",
    "error_rate": "share of failed scoring requests above which an error_rate alert opens",
    "auc_drop": "drop of live AUC below the hold-out AUC above which an auc_drop alert opens",
    "min_rows": "decisions a window needs before it can raise an alert",
}


def parse_windows(text: str | list[str]) -> list[tuple[str, timedelta | None, int | None]]:
    """``1h,1d,10000`` -> [(label, duration, None) or (label, None, count)]."""
    items = text if isinstance(text, list) else [t for t in str(text).split(",") if t.strip()]
    out = []
    for item in items:
        item = str(item).strip()
        if re.fullmatch(r"[0-9]+", item):
            if not 0 < int(item) <= MAX_COUNT:
                raise BadInput(f"monitor window {item!r}: a count of decisions must be from 1 "
                               f"to {MAX_COUNT:,}")  # fmt: skip
            out.append((f"last {int(item)}", None, int(item)))
        else:
            d = durations.parse_duration(item, f"monitor window {item!r}")
            out.append((durations.format_duration(d), d, None))
    if not out:
        raise BadInput("monitor windows: give at least one (like 1h,1d,10000)")
    return out


def monitor_matrix(inputs: pa.ChunkedArray | pa.Array, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows whose list holds ``d`` values, their (n, d) float64 matrix) from a list
    column, without a Python loop: the flat values reshaped (or gathered by offset)."""
    arr = inputs.combine_chunks() if isinstance(inputs, pa.ChunkedArray) else inputs
    if isinstance(arr, pa.ChunkedArray):  # no chunks at all
        arr = pa.array([], type=arr.type)
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=bool), np.empty((0, d))
    offsets = arr.offsets.to_numpy()
    lengths = np.diff(offsets)
    ok = lengths == d
    if arr.null_count:
        ok &= arr.is_valid().to_numpy(zero_copy_only=False)
    values = arr.values
    if values.null_count:
        values = pc.fill_null(values, np.nan)
    flat = values.to_numpy(zero_copy_only=False)
    if ok.all() and d > 0:
        start = offsets[0]
        return ok, flat[start : start + n * d].reshape(n, d)
    starts = offsets[:-1][ok]
    return ok, flat[starts[:, None] + np.arange(d)]


def _window_order(snapshot: dict[str, Any]) -> tuple:
    """Snapshots by variant (live first), then shortest duration first, then counts."""
    w = snapshot["window"]
    if w.startswith("last "):
        span = (1, int(w[5:]))
    else:
        try:
            span = (0, durations.parse_duration(w, "window").total_seconds())
        except BadInput:
            span = (2, 0)
    return (snapshot["variant"] != "live", snapshot["variant"], span)


def _finite(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


class MonitoringService:
    def __init__(self, control: Any, features: Callable[[], Any], registry: Any,
                 settings: dict[str, Any], metrics: Callable[[], Any] | None = None) -> None:  # fmt: skip
        self.control = control
        self._features = features
        self.registry = registry
        self.settings = settings
        self._metrics = metrics or (lambda: None)
        self.webhook = alerting.Webhook(control, float(settings.get("monitor_webhook_timeout", 5)))
        self._references: dict[tuple[str, int], Reference | str] = {}
        self._errors_seen: dict[tuple[str, str], tuple[float, float]] = {}

    @property
    def features(self) -> Any:
        return self._features()

    # -- configuration ---------------------------------------------------------

    def config(self, model: str, actor: Actor) -> dict[str, Any]:
        """The model's thresholds (defaults filled in) and outcome join."""
        require(actor, "monitor.read")
        row = self.control.monitor_config(model) or {}
        return {
            "model": model,
            "thresholds": DEFAULT_THRESHOLDS | (row.get("thresholds") or {}),
            "outcomes": row.get("outcomes"),
            "updated_at": row.get("updated_at"),
            "updated_by": row.get("updated_by"),
        }

    def configure(self, model: str, actor: Actor, **thresholds: float | None) -> dict[str, Any]:
        """Set some of a model's alert thresholds (``DEFAULT_THRESHOLDS`` names them)."""
        require(actor, "monitor.configure")
        check_name("model", model)
        given = {k: v for k, v in thresholds.items() if v is not None}
        for key, value in given.items():
            if key not in DEFAULT_THRESHOLDS:
                raise BadInput(f"threshold {key!r} is not one of {', '.join(DEFAULT_THRESHOLDS)}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadInput(f"threshold {key}: expected a number, got {value!r}")
            if not np.isfinite(value) or value < 0:
                raise BadInput(f"threshold {key}: {value} must be a finite number >= 0")
        current = self.control.monitor_config(model) or {}
        merged = (current.get("thresholds") or {}) | {k: float(v) for k, v in given.items()}
        with self.control.transaction() as tx:
            tx.put_monitor_config(model, merged, current.get("outcomes"), now(), str(actor))
            tx.append_audit(actor, "monitor.configure", model, {"thresholds": given})
        return self.config(model, actor)

    def set_outcomes(self, model: str, actor: Actor, table: str, label: str,
                     request_id: str | None = None, entity: str | None = None,
                     timestamp: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Name the table where a model's outcomes (labels) arrive and how they join its
        decisions: by request id column, or by entity and timestamp columns."""
        require(actor, "monitor.configure")
        check_name("model", model)
        if (request_id is None) == (entity is None and timestamp is None):
            raise BadInput("outcomes: give --request-id COL, or --entity COL and "
                           "--timestamp COL (one join, not both)")  # fmt: skip
        if request_id is None and (entity is None or timestamp is None):
            raise BadInput("outcomes: a join by entity needs both --entity and --timestamp")
        types = self.features.column_types(table)
        if types is None:
            raise NotFound(f"outcomes: no table {table!r} (ingest the labels with falaj ingest)")
        for what, col in (("label", label), ("request id", request_id), ("entity", entity),
                          ("timestamp", timestamp)):  # fmt: skip
            if col is not None and col not in types:
                raise BadInput(f"outcomes: table {table!r} has no {what} column {col!r} "
                               f"(columns: {', '.join(types)})")  # fmt: skip
        if timestamp is not None and "TIMESTAMP" not in types[timestamp].upper():
            raise BadInput(f"outcomes: {table}.{timestamp} is {types[timestamp]}, not a "
                           "timestamp")  # fmt: skip
        outcomes = {"table": table, "label": label}
        outcomes |= {"request_id": request_id} if request_id else {
            "entity": entity, "timestamp": timestamp}  # fmt: skip
        current = self.control.monitor_config(model) or {}
        with self.control.transaction() as tx:
            tx.put_monitor_config(model, current.get("thresholds") or {}, outcomes, now(),
                                  str(actor))  # fmt: skip
            tx.append_audit(actor, "monitor.outcomes", model, outcomes)
        return self.config(model, actor)

    def set_webhook(self, url: str | None, actor: Actor) -> dict[str, Any]:
        """Where alerts are POSTed as JSON: a loopback or private-LAN http(s) URL, or
        none (empty)."""
        require(actor, "monitor.configure")
        url = (url or "").strip() or None
        if url is not None:
            alerting.check_webhook_url(url)
        with self.control.transaction() as tx:
            tx.put_monitor_setting("webhook", url)
            tx.append_audit(actor, "monitor.webhook", url or "", {"url": url})
        return {"webhook": url}

    def webhook_url(self, actor: Actor) -> str | None:
        require(actor, "monitor.read")
        return self.control.monitor_setting("webhook")

    # -- reading ---------------------------------------------------------------

    def status(self, model: str, actor: Actor) -> dict[str, Any]:
        """The latest snapshots of a model (per variant and window), its PSI history,
        active alerts and config; computed by the last pass, not now."""
        require(actor, "monitor.read")
        snaps = sorted(self.control.snapshots(model), key=_window_order)
        if not snaps:
            self.registry.latest(model, actor)  # an unknown model is named as such
        history = {
            f"{s['variant']}|{s['window']}": self.control.psi_history(
                model, s["variant"], s["window"]
            )
            for s in snaps
        }
        return {
            "model": model,
            "snapshots": [s["result"] | {"computed_at": s["computed_at"]} for s in snaps],
            "history": history,
            "alerts": [
                alerting.public(a)
                for a in self.control.alert_rows(False, model=model)
                if a["status"] != "resolved"
            ],  # fmt: skip
            "config": self.config(model, actor),
        }

    def overview(self, actor: Actor) -> list[dict[str, Any]]:
        """Every monitored model's latest snapshots."""
        require(actor, "monitor.read")
        by_model: dict[str, list] = {}
        for s in sorted(self.control.snapshots(), key=_window_order):
            by_model.setdefault(s["model"], []).append(
                s["result"] | {"computed_at": s["computed_at"]}
            )
        return [{"model": m, "snapshots": snaps} for m, snaps in sorted(by_model.items())]

    def alerts(self, actor: Actor, open_only: bool = True, since: str | None = None,
               model: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Alerts, newest first: only open ones by default; ``since`` (ISO time) keeps
        those changed at or after it."""
        require(actor, "monitor.read")
        return [alerting.public(a) for a in self.control.alert_rows(open_only, since, model)]

    def acknowledge(self, alert_id: int, actor: Actor) -> dict[str, Any]:
        """Acknowledge an open alert: it stays until its condition clears, without
        raising again."""
        require(actor, "monitor.configure")
        row = self.control.alert_row(int(alert_id)) if 0 < int(alert_id) < 2**63 else None
        if row is None:
            raise NotFound(f"no alert {alert_id}")
        if row["status"] != "open":
            raise BadInput(f"alert {alert_id} is {row['status']}, not open")
        with self.control.transaction() as tx:
            tx.set_alert_status(row["id"], "acknowledged", now(), str(actor))
            tx.append_audit(actor, "monitor.alert_ack", f"{row['model']}#{row['id']}",
                            {"kind": row["kind"], "feature": row["feature"]})  # fmt: skip
        self._set_open_gauge(row["model"])
        return alerting.public(self.control.alert_row(row["id"]))

    # -- the pass --------------------------------------------------------------

    def run_pass(self, actor: Actor, model: str | None = None,
                 window: str | list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        """Compute every window's snapshots for one model (or every model with logged
        decisions), store them, raise and resolve alerts; webhook deliveries go on in
        the background. Returns ``{"models": {model: [snapshot, ...]}, "alerts": [...],
        "errors": {model: message}}`` (a model that fails is skipped when passing all)."""
        require(actor, "monitor.configure")
        windows = parse_windows(window or self.settings.get("monitor_windows", "1h,1d,10000"))
        models = [model] if model is not None else store.logged_models(self.features)
        if model is not None:
            check_name("model", model)
            self.registry.latest(model, actor)  # an unknown model is named as such
        at = datetime.now(UTC).replace(tzinfo=None)
        out: dict[str, Any] = {"computed_at": now(), "models": {}, "alerts": [], "errors": {}}
        for name in models:
            try:
                snaps = self._model_pass(name, windows, at)
            except StoreError:
                raise
            except Exception as exc:  # one model's trouble does not stop the others'
                if model is not None:
                    raise
                out["errors"][name] = getattr(exc, "message", None) or str(exc)
                log.warning("monitoring %s: pass failed: %s", name, out["errors"][name])
                continue
            cfg = self.config(name, SYSTEM)
            changes = alerting.evaluate(name, snaps, cfg["thresholds"])
            stamp = now()
            with self.control.transaction() as tx:
                for s in snaps:
                    tx.put_snapshot(name, s["variant"], s["window"], stamp, s)
                tx.append_audit(actor, "monitor.pass", name, {
                    "windows": [w[0] for w in windows], "snapshots": len(snaps),
                    "max_psi": max((s["max_psi"] for s in snaps if s["max_psi"] is not None),
                                   default=None)})  # fmt: skip
            out["alerts"] += alerting.apply(self.control, name, changes, actor)
            out["models"][name] = snaps
            self._set_gauges(name, snaps)
        self.webhook.deliver_in_background()
        return out

    def deliver_alerts(self, timeout: float | None = None) -> int:
        """Wait for the background webhook deliveries (the CLI, before it exits);
        how many alerts are still undelivered."""
        return self.webhook.wait(timeout)

    def release_evidence(self, model: str, release_id: int, actor: Actor) -> dict[str, Any]:
        """Per variant of one release, over all its decisions: ``{variant: {"requests",
        "latency_p99_ms", "drift": {feature: psi}, "max_psi", "prediction_psi", "metric":
        {"auc", "labelled"}}}`` (what an automatic promotion weighs)."""
        require(actor, "monitor.read")
        table = store.decision_window(self.features, model, None, None, release_id)
        snaps = self._snapshots(model, table, [("release", None, None)], None,
                                self._outcomes(model, None, release_id))  # fmt: skip
        return {
            s["variant"]: {
                "version": s["version"],
                "requests": s["requests"],
                "latency_p99_ms": s["latency_p99_ms"],
                "drift": s["psi"],
                "max_psi": s["max_psi"],
                "prediction_psi": s["prediction_psi"],
                "metric": {"auc": s["metric"]["auc"], "labelled": s["metric"]["labelled"]},
            }
            for s in snaps
        }

    # -- parts -----------------------------------------------------------------

    def _model_pass(self, name: str, windows: list, at: datetime) -> list[dict[str, Any]]:
        spans = [at - d for _, d, _ in windows if d is not None]
        counts = [n for _, _, n in windows if n is not None]
        since = min(spans) if spans else None
        last = max(counts) if counts else None
        table = store.decision_window(self.features, name, since, last)  # read once
        outcomes = self._outcomes(name, since if last is None else None)
        return self._snapshots(name, table, windows, at, outcomes)

    def _outcomes(self, name: str, since: datetime | None,
                  release_id: int | None = None) -> pa.Table | str | None:  # fmt: skip
        row = self.control.monitor_config(name)
        if not row or not row.get("outcomes"):
            return None
        try:
            return store.joined_outcomes(self.features, name, row["outcomes"], since, release_id)
        except Exception as exc:  # a dropped table or column: say so in the snapshot
            log.warning("monitoring %s: outcomes cannot be joined: %s", name, exc)
            return f"outcomes cannot be joined: {str(exc).splitlines()[0]}"

    def _snapshots(self, name: str, table: pa.Table, windows: list, at: datetime | None,
                   outcomes: pa.Table | str | None) -> list[dict[str, Any]]:  # fmt: skip
        n = table.num_rows
        ts = table["ts"].to_numpy().astype("datetime64[us]") if n else np.empty(0, "M8[us]")
        # the variant as a code per row (a few distinct names: no Python string per row)
        coded = pc.dictionary_encode(table["variant"]).combine_chunks() if n else None
        names = coded.dictionary.to_pylist() if n else []
        codes = coded.indices.to_numpy() if n else np.empty(0, np.int64)
        versions = table["version"].to_numpy() if n else np.empty(0, np.int64)
        output = table["output"].to_numpy() if n else np.empty(0)
        latency = table["latency_ms"].to_numpy() if n else np.empty(0)
        matrices: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        errors: dict[str, float | None] = {}
        snaps = []
        for label, span, count in windows:
            if span is not None:
                in_window = ts >= np.datetime64(at - span, "us")
            elif count is not None:
                in_window = np.zeros(n, dtype=bool)
                in_window[np.argsort(ts, kind="stable")[-count:]] = True
            else:
                in_window = np.ones(n, dtype=bool)
            present = np.flatnonzero(np.bincount(codes[in_window], minlength=len(names)))
            for variant, code in sorted((names[c], c) for c in present):
                rows = in_window & (codes == code)
                last_row = np.flatnonzero(rows)[np.argmax(ts[rows])]
                version = int(versions[last_row])
                rows &= versions == version
                if variant not in errors:
                    errors[variant] = self._error_rate(name, variant) if at else None
                snap = self._snapshot(name, version, variant, label, rows, output, latency)
                snap["error_rate"] = errors[variant]
                self._drift_into(snap, name, version, table, rows, matrices)
                self._metric_into(snap, name, version, outcomes, at, span)
                snaps.append(snap)
        return snaps

    def _snapshot(self, name, version, variant, label, rows, output, latency) -> dict[str, Any]:
        lat = latency[rows]
        p50, p99 = np.percentile(lat, [50, 99]) if len(lat) else (np.nan, np.nan)
        return {
            "model": name, "version": version, "variant": variant, "window": label,
            "requests": int(rows.sum()), "latency_p50_ms": _finite(p50),
            "latency_p99_ms": _finite(p99), "error_rate": None,
            "drift": {}, "drift_reason": None, "psi": {}, "max_psi": None,
            "prediction": None, "prediction_psi": None, "monitored_rows": 0,
            "metric": {"auc": None, "log_loss": None, "labelled": 0, "holdout_auc": None,
                       "reason": None},
        }  # fmt: skip

    def _reference(self, name: str, version: int) -> Reference | str:
        key = (name, version)
        if key not in self._references:
            try:
                model = self.registry.load(name, version, SYSTEM)
            except FalajError as exc:
                self._references[key] = f"{name}@{version} cannot be loaded: {exc.message}"
            else:
                if model.reference is None:
                    self._references[key] = (
                        f"{name}@{version} was trained before monitoring: its bundle has no "
                        "reference.json; retrain it to monitor drift"
                    )
                else:
                    ref = Reference(model.reference)
                    if ref.names and ref.names != model.features:
                        self._references[key] = f"{name}@{version}: reference.json names " \
                                                "other inputs than the model"  # fmt: skip
                    else:
                        self._references[key] = ref
        return self._references[key]

    def _drift_into(self, snap, name, version, table, rows, matrices) -> None:
        ref = self._reference(name, version)
        if isinstance(ref, str):
            snap["drift_reason"] = ref
            return
        snap["metric"]["holdout_auc"] = ref.holdout.get("roc_auc")
        output = table["output"].to_numpy()[rows] if rows.any() else np.empty(0)
        if ref.prediction is not None and np.isfinite(output).any():
            pd = drift(ref.prediction, output)
            snap["prediction"] = {m: _finite(pd[m][0]) for m in MEASURES}
            snap["prediction_psi"] = snap["prediction"]["psi"]
        if ref.features is None:
            snap["drift_reason"] = ref.error or f"{name}@{version}: no input reference"
            return
        d = len(ref.names)
        if d not in matrices:
            matrices[d] = monitor_matrix(table["inputs"], d)
        ok, X = matrices[d]
        keep = rows & ok
        m = int(keep.sum())
        snap["monitored_rows"] = m
        if m == 0:
            snap["drift_reason"] = "no decision in this window logged its inputs"
            return
        # X holds the rows with a monitor vector (ok), in order
        sub = X if keep.all() else X[keep] if ok.all() else X[np.cumsum(ok)[keep] - 1]
        result = drift(ref.features, sub)
        snap["drift"] = {
            f: {m_: _finite(result[m_][j]) for m_ in MEASURES} for j, f in enumerate(ref.names)
        }
        snap["psi"] = {f: v["psi"] for f, v in snap["drift"].items()}
        finite = [v for v in snap["psi"].values() if v is not None]
        snap["max_psi"] = max(finite) if finite else None

    def _metric_into(self, snap, name, version, outcomes, at, span) -> None:
        if outcomes is None:
            snap["metric"]["reason"] = "no outcomes configured (falaj monitor outcomes)"
            return
        if isinstance(outcomes, str):
            snap["metric"]["reason"] = outcomes
            return
        if outcomes.num_rows == 0:
            snap["metric"]["reason"] = "no outcome has arrived for these decisions"
            return
        v = np.asarray(outcomes["variant"].to_numpy(zero_copy_only=False), dtype=object)
        keep = (v == snap["variant"]) & (outcomes["version"].to_numpy() == version)
        if span is not None and at is not None:
            ts = outcomes["ts"].to_numpy().astype("datetime64[us]")
            keep &= ts >= np.datetime64(at - span, "us")
        y = outcomes["label"].to_numpy()[keep]
        p = outcomes["output"].to_numpy()[keep]
        snap["metric"]["labelled"] = int(keep.sum())
        if not len(y):
            snap["metric"]["reason"] = "no outcome has arrived for these decisions"
            return
        if np.isin(y, (0.0, 1.0)).all():
            snap["metric"]["log_loss"] = _finite(log_loss(y, p))
            if 0 < y.sum() < len(y):
                snap["metric"]["auc"] = _finite(roc_auc(y, p))
            else:
                snap["metric"]["reason"] = "the outcomes hold one class only: no AUC yet"
        else:
            snap["metric"]["reason"] = "labels are not 0/1: no AUC"

    def _error_rate(self, name: str, variant: str) -> float | None:
        """Failed scoring requests' share since the previous pass, from the live
        metrics of this process (None where it serves nothing)."""
        metrics = self._metrics()
        counter = getattr(metrics, "requests", None)
        if counter is None:
            return None
        total = failed = 0.0
        for fam in counter.collect():
            for sample in fam.samples:
                lab = sample.labels
                if not sample.name.endswith("_total") or lab.get("model") != name:
                    continue
                if lab.get("variant") not in (variant, ""):
                    continue
                total += sample.value
                if lab.get("status") == "server_error":
                    failed += sample.value
        before = self._errors_seen.get((name, variant), (0.0, 0.0))
        self._errors_seen[(name, variant)] = (total, failed)
        dt, df = total - before[0], failed - before[1]
        return df / dt if dt > 0 else None

    def _set_gauges(self, name: str, snaps: list[dict[str, Any]]) -> None:
        metrics = self._metrics()
        if metrics is None or not hasattr(metrics, "set_drift"):
            return
        live = [s for s in snaps if s["variant"] == "live"] or snaps
        if live:
            s = live[0]  # the first window's
            for feature, values in s["drift"].items():
                for measure in ("psi", "ks_statistic", "wasserstein", "jensenshannon"):
                    if values[measure] is not None:
                        metrics.set_drift(name, feature, measure, values[measure])
            if s["prediction_psi"] is not None:
                metrics.set_drift(name, "__prediction__", "psi", s["prediction_psi"])
        self._set_open_gauge(name)

    def _set_open_gauge(self, name: str) -> None:
        metrics = self._metrics()
        if metrics is not None and hasattr(metrics, "set_alerts_open"):
            metrics.set_alerts_open(name, len(self.control.alert_rows(True, model=name)))
