"""control.db: feature views and their versions, and the entities they key on.

A mixin pair: ``ViewTx`` methods join ``ControlTx`` (they run inside its transaction,
through ``self.conn``); ``ViewReads`` methods join ``ControlStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.

A view version is never changed or removed once written: a changed definition is a new
version (``VIEW@2``) and the old one stays resolvable. ``definition`` and ``features``
are JSON (the normalised declaration; output column -> DuckDB type, null while unknown).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0005_feature_views",
        """
        CREATE TABLE entities (
            name TEXT PRIMARY KEY,
            join_key TEXT NOT NULL,
            description TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL
        );
        CREATE TABLE feature_views (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('columns', 'transforms', 'sql')),
            entity TEXT NOT NULL,
            source_table TEXT,
            ttl_seconds REAL,
            definition TEXT NOT NULL,
            features TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            PRIMARY KEY (name, version)
        );
        CREATE TRIGGER feature_views_no_update BEFORE UPDATE ON feature_views
            BEGIN SELECT RAISE(ABORT, 'feature view versions are immutable'); END
        """,
    ),
]

_FIELDS = ("name, version, kind, entity, source_table, ttl_seconds, definition, features, "
           "fingerprint, created_at, created_by")  # fmt: skip


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["definition"] = json.loads(row["definition"])
    row["features"] = json.loads(row["features"])
    return row


class ViewTx:
    conn: Any

    def put_entity(self, name: str, join_key: str, description: str, actor: object) -> bool:
        """Store an entity; False when it is already stored unchanged."""
        row = self.conn.execute(
            "SELECT join_key, description FROM entities WHERE name = ?", (name,)
        ).fetchone()
        if row is not None and (row[0], row[1]) == (join_key, description):
            return False
        self.conn.execute(
            "INSERT INTO entities VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET join_key = excluded.join_key, description = excluded.description, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (name, join_key, description, datetime.now(UTC).isoformat(timespec="seconds"),
             str(actor)),
        )  # fmt: skip
        return True

    def latest_view_version(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {_FIELDS} FROM feature_views WHERE name = ? ORDER BY version DESC LIMIT 1",
            (name,),
        ).fetchone()
        return _decoded(dict(row)) if row is not None else None

    def add_view_version(
        self,
        name: str,
        kind: str,
        entity: str,
        source_table: str | None,
        ttl_seconds: float | None,
        definition: dict[str, Any],
        features: dict[str, str | None],
        fingerprint: str,
        actor: object,
    ) -> int:
        """Write the next version of a view; its number."""
        row = self.conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM feature_views WHERE name = ?", (name,)
        ).fetchone()
        version = int(row[0])
        self.conn.execute(
            f"INSERT INTO feature_views ({_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, version, kind, entity, source_table, ttl_seconds,
             json.dumps(definition, sort_keys=True), json.dumps(features), fingerprint,
             datetime.now(UTC).isoformat(timespec="microseconds"), str(actor)),
        )  # fmt: skip
        return version


class ViewReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def entities(self) -> dict[str, dict[str, Any]]:
        rows = self.query("SELECT * FROM entities ORDER BY name")
        return {r["name"]: r for r in rows}

    def view_version(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """One version of a view (the latest when ``version`` is None), or None."""
        if version is None:
            rows = self.query(
                f"SELECT {_FIELDS} FROM feature_views WHERE name = ? ORDER BY version DESC LIMIT 1",
                (name,),
            )
        else:
            rows = self.query(
                f"SELECT {_FIELDS} FROM feature_views WHERE name = ? AND version = ?",
                (name, version),
            )
        return _decoded(rows[0]) if rows else None

    def view_versions(self, name: str) -> list[dict[str, Any]]:
        rows = self.query(
            f"SELECT {_FIELDS} FROM feature_views WHERE name = ? ORDER BY version", (name,)
        )
        return [_decoded(r) for r in rows]

    def latest_views(self) -> list[dict[str, Any]]:
        """The latest version of every view, by name, with its number of versions."""
        rows = self.query(
            f"SELECT {', '.join('v.' + f.strip() for f in _FIELDS.split(','))}, "
            "c.versions FROM feature_views v JOIN (SELECT name, max(version) AS version, "
            "count(*) AS versions FROM feature_views GROUP BY name) c "
            "ON v.name = c.name AND v.version = c.version ORDER BY v.name"
        )
        return [_decoded(r) for r in rows]
