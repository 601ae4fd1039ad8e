"""Monitoring's state in control.db (per-model config, the latest snapshot per model,
variant and window, a short PSI history, alerts and the webhook) and its reads of the
decision log and outcome tables in features.duckdb.

A mixin pair like ``runs.py``: ``MonitoringTx`` joins ``ControlTx``, ``MonitoringReads``
joins ``ControlStore``. The features.duckdb reads are functions over a ``FeatureStore``
(its own cursor): ``decision_window`` hands the log back as Arrow, the monitor vectors
as one flat list column the caller reshapes without a Python loop.

One alert per (model, kind, feature) is active (open or acknowledged) at a time: a
partial unique index holds that, so two passes cannot both raise it.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from appliance.stores import migrations
from appliance.stores.sqltext import ident

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0010_alerts",
        """
        CREATE TABLE monitor_configs (
            model TEXT PRIMARY KEY,
            thresholds TEXT NOT NULL,
            outcomes TEXT,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL
        );
        CREATE TABLE monitor_snapshots (
            model TEXT NOT NULL,
            variant TEXT NOT NULL,
            window TEXT NOT NULL,
            computed_at TEXT NOT NULL,
            result TEXT NOT NULL,
            PRIMARY KEY (model, variant, window)
        );
        CREATE TABLE monitor_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            variant TEXT NOT NULL,
            window TEXT NOT NULL,
            computed_at TEXT NOT NULL,
            psi TEXT NOT NULL,
            prediction_psi REAL
        );
        CREATE INDEX monitor_history_by_model ON monitor_history (model, variant, window, id);
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            kind TEXT NOT NULL,
            feature TEXT NOT NULL DEFAULT '',
            variant TEXT,
            window TEXT,
            value REAL,
            threshold REAL,
            message TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
            raised_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by TEXT,
            delivered_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );
        CREATE UNIQUE INDEX alerts_one_active ON alerts (model, kind, feature)
            WHERE status != 'resolved';
        CREATE INDEX alerts_by_time ON alerts (raised_at);
        CREATE TABLE monitor_settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )
        """,
    ),
]

HISTORY_KEEP = 50  # passes of PSI kept per model, variant and window (the chart's points)


def _json(row: dict[str, Any] | None, *fields: str) -> dict[str, Any] | None:
    if row is None:
        return None
    for f in fields:
        if row.get(f) is not None:
            row[f] = json.loads(row[f])
    return row


class MonitoringTx:
    conn: Any

    def put_monitor_config(self, model: str, thresholds: dict, outcomes: dict | None,
                           at: str, by: str) -> None:  # fmt: skip
        self.conn.execute(
            "INSERT INTO monitor_configs VALUES (?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE "
            "SET thresholds = excluded.thresholds, outcomes = excluded.outcomes, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (model, json.dumps(thresholds), None if outcomes is None else json.dumps(outcomes),
             at, by),
        )  # fmt: skip

    def put_monitor_setting(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO monitor_settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def put_snapshot(self, model: str, variant: str, window: str, at: str,
                     result: dict[str, Any]) -> None:  # fmt: skip
        self.conn.execute(
            "INSERT OR REPLACE INTO monitor_snapshots VALUES (?, ?, ?, ?, ?)",
            (model, variant, window, at, json.dumps(result, allow_nan=False)),
        )
        psi = result.get("psi") or {}
        if psi or result.get("prediction_psi") is not None:
            self.conn.execute(
                "INSERT INTO monitor_history (model, variant, window, computed_at, psi, "
                "prediction_psi) VALUES (?, ?, ?, ?, ?, ?)",
                (model, variant, window, at, json.dumps(psi), result.get("prediction_psi")),
            )
            self.conn.execute(
                "DELETE FROM monitor_history WHERE model = ? AND variant = ? AND window = ? "
                "AND id NOT IN (SELECT id FROM monitor_history WHERE model = ? AND variant = ? "
                "AND window = ? ORDER BY id DESC LIMIT ?)",
                (model, variant, window, model, variant, window, HISTORY_KEEP),
            )

    def active_alert(self, model: str, kind: str, feature: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM alerts WHERE model = ? AND kind = ? AND feature = ? "
            "AND status != 'resolved'",
            (model, kind, feature),
        ).fetchone()
        return dict(row) if row is not None else None

    def insert_alert(self, alert: dict[str, Any]) -> int:
        cur = self.conn.execute(
            "INSERT INTO alerts (model, kind, feature, variant, window, value, threshold, "
            "message, status, raised_at, updated_at) VALUES (:model, :kind, :feature, "
            ":variant, :window, :value, :threshold, :message, 'open', :at, :at)",
            alert,
        )
        return int(cur.lastrowid)

    def set_alert_status(self, alert_id: int, status: str, at: str, by: str) -> None:
        self.conn.execute(
            "UPDATE alerts SET status = ?, updated_at = ?, updated_by = ? WHERE id = ?",
            (status, at, by, alert_id),
        )

    def mark_delivery(self, alert_id: int, at: str | None, error: str | None) -> None:
        self.conn.execute(
            "UPDATE alerts SET attempts = attempts + 1, delivered_at = ?, last_error = ? "
            "WHERE id = ?",
            (at, error, alert_id),
        )


class MonitoringReads:
    query: Any

    def monitor_config(self, model: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM monitor_configs WHERE model = ?", (model,))
        return _json(rows[0], "thresholds", "outcomes") if rows else None

    def monitor_setting(self, key: str) -> Any:
        rows = self.query("SELECT value FROM monitor_settings WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def snapshots(self, model: str | None = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM monitor_snapshots", ()
        if model is not None:
            sql, params = sql + " WHERE model = ?", (model,)
        rows = self.query(sql + " ORDER BY model, variant, window", params)
        return [_json(r, "result") for r in rows]  # type: ignore[misc]

    def psi_history(self, model: str, variant: str, window: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT computed_at, psi, prediction_psi FROM monitor_history WHERE model = ? AND "
            "variant = ? AND window = ? ORDER BY id",
            (model, variant, window),
        )
        return [_json(r, "psi") for r in rows]  # type: ignore[misc]

    def alert_rows(self, active_only: bool = True, since: str | None = None,
                   model: str | None = None, undelivered: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        where, params = [], []
        if active_only:
            where.append("status = 'open'")
        if since is not None:
            where.append("updated_at >= ?")
            params.append(since)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if undelivered:
            where.append("delivered_at IS NULL")
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        return self.query(sql + " ORDER BY id DESC", params)

    def alert_row(self, alert_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        return rows[0] if rows else None


# ---------------------------------------------------------------- features.duckdb

# what a pass reads: no text but the variant (reading a text column costs as much as the
# rest of the row's scalars together)
WINDOW_COLUMNS = ("ts", "variant", "version", "output", "latency_ms", "inputs")


def _read(features: Any, sql: str, params: list) -> pa.Table:
    cur = features.cursor()
    try:
        return cur.execute(sql, params).fetch_arrow_table()
    finally:
        with suppress(duckdb.Error):
            cur.close()


def decision_window(features: Any, model: str, since: datetime | None, last: int | None,
                    release_id: int | None = None) -> pa.Table:  # fmt: skip
    """The model's decisions that were served or shadowed at or after ``since`` or among
    its ``last`` latest (either, or both: their union), in log order: ``WINDOW_COLUMNS``,
    ``variant`` ``live`` where the log has none. ``release_id`` keeps one release's."""
    cond, params = ["model = ?"], [model]
    if release_id is not None:
        cond.append("release_id = ?")
        params.append(release_id)
    span = []
    if since is not None:
        span.append("ts >= ?")
        params.append(since)
    if last is not None:
        span.append(
            f"ts >= (SELECT min(ts) FROM (SELECT ts FROM _predictions WHERE {' AND '.join(cond)} "
            "ORDER BY ts DESC LIMIT ?))"
        )
        params += params[: len(cond)] + [last]
    where = " AND ".join(cond) + (f" AND ({' OR '.join(span)})" if span else "")
    cols = ", ".join(ident(c) if c != "variant" else "coalesce(variant, 'live') AS variant"
                     for c in WINDOW_COLUMNS)  # fmt: skip
    return _read(features, f"SELECT {cols} FROM _predictions WHERE {where}", params)


def logged_models(features: Any) -> list[str]:
    """The models the decision log holds decisions of."""
    return _read(features, "SELECT DISTINCT model FROM _predictions ORDER BY model", [])[
        "model"
    ].to_pylist()


def joined_outcomes(features: Any, model: str, outcomes: dict[str, Any],
                    since: datetime | None, release_id: int | None = None) -> pa.Table:  # fmt: skip
    """(ts, variant, version, output, label) of the model's decisions that have an
    outcome: by request id, or by entity and time (per variant, the latest decision for
    that request key at or before the outcome's time: an ASOF join)."""
    table, label = ident(outcomes["table"]), ident(outcomes["label"])
    params: list[Any] = [model]
    span = ""
    if since is not None:
        span += " AND ts >= ?"
        params.append(since)
    if release_id is not None:
        span += " AND release_id = ?"
        params.append(release_id)
    decisions = (
        "SELECT coalesce(variant, 'live') AS variant, version, output, ts, request_id, "
        f"request_key FROM _predictions WHERE model = ?{span}"
    )
    if outcomes.get("request_id"):
        rid = ident(outcomes["request_id"])
        sql = (
            f"SELECT d.ts, d.variant, d.version, d.output, CAST(o.{label} AS DOUBLE) AS label "
            f"FROM ({decisions}) d JOIN {table} o ON CAST(o.{rid} AS TEXT) = d.request_id "
            f"WHERE o.{label} IS NOT NULL"
        )
    else:
        ent, ts = ident(outcomes["entity"]), ident(outcomes["timestamp"])
        sql = (
            f"SELECT d.ts, d.variant, d.version, d.output, CAST(o.{label} AS DOUBLE) AS label "
            f"FROM (SELECT t.*, v.variant AS _variant FROM {table} t, (SELECT DISTINCT "
            f"variant FROM ({decisions})) v WHERE t.{label} IS NOT NULL) o "
            f"ASOF JOIN ({decisions}) d ON CAST(o.{ent} AS TEXT) = d.request_key "
            f"AND o._variant = d.variant AND o.{ts} >= d.ts"
        )
        params = params + params
    return _read(features, sql, params)
