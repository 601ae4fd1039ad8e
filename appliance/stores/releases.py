"""control.db: releases (canary, shadow, A/B), their automatic policy and the counters
each variant has gathered.

A mixin pair like ``runs.py``: ``ReleaseTx`` joins ``ControlTx``, ``ReleaseReads`` joins
``ControlStore``. At most one release per model is active (a partial unique index says
so, whatever a racing process tries). A release's ``stats`` are counters that add up
across processes: each process adds what it counted since it last did (``add_stats``).
"""

from __future__ import annotations

import json
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0008_releases",
        """
        CREATE TABLE releases (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL REFERENCES models(name),
            strategy TEXT NOT NULL CHECK (strategy IN ('canary', 'shadow', 'ab')),
            percent REAL NOT NULL CHECK (percent >= 0 AND percent <= 100),
            baseline_slot TEXT NOT NULL CHECK (baseline_slot IN ('blue', 'green')),
            baseline_version INTEGER NOT NULL,
            candidate_slot TEXT NOT NULL CHECK (candidate_slot IN ('blue', 'green')),
            candidate_version INTEGER NOT NULL,
            replaced_version INTEGER,
            entity_column TEXT,
            policy TEXT,
            stats TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL CHECK (status IN ('active', 'promoted', 'rolled_back')),
            started_at TEXT NOT NULL,
            started_by TEXT NOT NULL,
            ended_at TEXT,
            ended_by TEXT,
            reason TEXT
        );
        CREATE UNIQUE INDEX releases_one_active ON releases (model) WHERE status = 'active';
        CREATE INDEX releases_by_model ON releases (model, id)
        """,
    ),
]

COLUMNS = ("model", "strategy", "percent", "baseline_slot", "baseline_version", "candidate_slot",
           "candidate_version", "replaced_version", "entity_column", "policy", "status",
           "started_at", "started_by")  # fmt: skip


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["policy"] = json.loads(row["policy"]) if row["policy"] else None
    row["stats"] = json.loads(row["stats"])
    return row


def merge_stats(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Add one set of counters to another: numbers add, lists add element-wise, dicts
    recurse (a variant's counters, its latency histogram)."""
    for k, v in more.items():
        if isinstance(v, dict):
            merge_stats(into.setdefault(k, {}), v)
        elif isinstance(v, list):
            old = into.get(k) or []
            n = max(len(old), len(v))
            old, v = old + [0] * (n - len(old)), list(v) + [0] * (n - len(v))
            into[k] = [a + b for a, b in zip(old, v, strict=True)]
        else:
            into[k] = into.get(k, 0) + v
    return into


class ReleaseTx:
    conn: Any

    def active_release(self, model: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM releases WHERE model = ? AND status = 'active'", (model,)
        ).fetchone()
        return _decoded(dict(row)) if row is not None else None

    def insert_release(self, release: dict[str, Any]) -> int:
        cur = self.conn.execute(
            f"INSERT INTO releases ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in COLUMNS)})",
            {c: release.get(c) for c in COLUMNS}
            | {"policy": json.dumps(release["policy"]) if release.get("policy") else None},
        )
        return int(cur.lastrowid)

    def add_release_stats(self, release_id: int, delta: dict[str, Any]) -> dict[str, Any]:
        """Add counters to a release's stats; the new totals."""
        row = self.conn.execute("SELECT stats FROM releases WHERE id = ?", (release_id,)).fetchone()
        if row is None:
            return {}
        stats = merge_stats(json.loads(row[0]), delta)
        self.conn.execute(
            "UPDATE releases SET stats = ? WHERE id = ?", (json.dumps(stats), release_id)
        )
        return stats

    def end_release(self, release_id: int, status: str, at: str, by: str, reason: str) -> None:
        self.conn.execute(
            "UPDATE releases SET status = ?, ended_at = ?, ended_by = ?, reason = ? WHERE id = ?",
            (status, at, by, reason, release_id),
        )


class ReleaseReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def active_releases(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM releases WHERE status = 'active' ORDER BY model")
        return [_decoded(r) for r in rows]

    def release(self, release_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM releases WHERE id = ?", (release_id,))
        return _decoded(rows[0]) if rows else None

    def releases(self, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Releases newest first, of one model when named."""
        if model is None:
            rows = self.query("SELECT * FROM releases ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.query(
                "SELECT * FROM releases WHERE model = ? ORDER BY id DESC LIMIT ?", (model, limit)
            )
        return [_decoded(r) for r in rows]
