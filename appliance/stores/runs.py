"""control.db: training runs (searches, their trials, final fits), model aliases and the
status of a version (``ready``, or ``rejected`` by its gates).

A mixin pair like ``training_sets.py``: ``RunTx`` joins ``ControlTx``, ``RunReads`` joins
``ControlStore``. A search is recorded when it starts and each trial as it ends, so a run
cut short still shows what it tried.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0007_runs_aliases",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            spec TEXT,
            parent TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('search', 'trial', 'final')),
            family TEXT,
            params TEXT NOT NULL,
            metrics TEXT NOT NULL,
            status TEXT NOT NULL,
            seed INTEGER,
            device TEXT,
            started_at TEXT NOT NULL,
            duration_s REAL NOT NULL,
            version INTEGER,
            created_by TEXT NOT NULL
        );
        CREATE INDEX runs_by_model ON runs (model, started_at);
        CREATE INDEX runs_by_parent ON runs (parent);
        CREATE TABLE model_aliases (
            name TEXT NOT NULL REFERENCES models(name),
            alias TEXT NOT NULL,
            version INTEGER NOT NULL,
            set_at TEXT NOT NULL,
            set_by TEXT NOT NULL,
            PRIMARY KEY (name, alias)
        );
        ALTER TABLE model_versions ADD COLUMN status TEXT NOT NULL DEFAULT 'ready'
        """,
    ),
]

JSON_FIELDS = ("params", "metrics")
COLUMNS = ("id", "model", "spec", "parent", "kind", "family", "params", "metrics", "status",
           "seed", "device", "started_at", "duration_s", "version", "created_by")  # fmt: skip


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    for f in JSON_FIELDS:
        row[f] = json.loads(row[f])
    return row


class RunTx:
    conn: Any

    def put_run(self, run: dict[str, Any]) -> None:
        """Insert a run, or replace it (a search updated when it ends)."""
        self.conn.execute(
            f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in COLUMNS)})",
            {c: run.get(c) for c in COLUMNS}
            | {f: json.dumps(run.get(f) or {}, allow_nan=False) for f in JSON_FIELDS},
        )

    def set_alias(self, name: str, alias: str, version: int, at: str, by: str) -> int | None:
        """Point ``alias`` at ``version``; the version it named before, if any."""
        row = self.conn.execute(
            "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
        ).fetchone()
        self.conn.execute(
            "INSERT OR REPLACE INTO model_aliases VALUES (?, ?, ?, ?, ?)",
            (name, alias, version, at, by),
        )
        return row[0] if row else None

    def delete_alias(self, name: str, alias: str) -> int | None:
        row = self.conn.execute(
            "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
        ).fetchone()
        self.conn.execute("DELETE FROM model_aliases WHERE name = ? AND alias = ?", (name, alias))
        return row[0] if row else None


class RunReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def runs(self, model: str | None = None, parent: str | None = None) -> list[dict[str, Any]]:
        """Runs newest first, of one model and/or one search when named."""
        where, args = [], []
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if parent is not None:
            where.append("parent = ?")
            args.append(parent)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self.query(f"SELECT * FROM runs {clause}ORDER BY started_at DESC, rowid DESC", args)
        return [_decoded(r) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _decoded(rows[0]) if rows else None

    def aliases(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is None:
            return self.query("SELECT * FROM model_aliases ORDER BY name, alias")
        return self.query("SELECT * FROM model_aliases WHERE name = ? ORDER BY alias", (name,))
