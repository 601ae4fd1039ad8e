"""control.db: registered training sets and their fingerprints.

A mixin pair: ``TrainingSetTx`` methods join ``ControlTx`` (they run inside its transaction,
through ``self.conn``); ``TrainingSetReads`` methods join ``ControlStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.

A record holds what rebuilds the set exactly (the spine's hash and where it was read
from, each view's ref and fingerprint, the feature list, the as-of time, the timestamp
column and the flags) and what identifies the file written (its path and SHA-256).
"""

from __future__ import annotations

import json
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0006_training_sets",
        """
        CREATE TABLE training_sets (
            id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            spine_sha256 TEXT NOT NULL,
            spine_source TEXT,
            views TEXT NOT NULL,
            features TEXT NOT NULL,
            as_of TEXT NOT NULL,
            timestamp_col TEXT NOT NULL,
            flags TEXT NOT NULL,
            path TEXT NOT NULL,
            file_sha256 TEXT NOT NULL,
            rows INTEGER NOT NULL,
            columns TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE INDEX training_sets_by_file ON training_sets (file_sha256)
        """,
    ),
]

JSON_FIELDS = ("views", "features", "flags", "columns")


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    for f in JSON_FIELDS:
        row[f] = json.loads(row[f])
    return row


class TrainingSetTx:
    conn: Any

    def insert_training_set(self, record: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO training_sets (id, fingerprint, spine_sha256, spine_source, views, "
            "features, as_of, timestamp_col, flags, path, file_sha256, rows, columns, "
            "created_at, created_by) VALUES (:id, :fingerprint, :spine_sha256, :spine_source, "
            ":views, :features, :as_of, :timestamp_col, :flags, :path, :file_sha256, :rows, "
            ":columns, :created_at, :created_by)",
            record | {f: json.dumps(record[f]) for f in JSON_FIELDS},
        )


class TrainingSetReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def training_sets(self) -> list[dict[str, Any]]:
        """Every registered training set, oldest first."""
        rows = self.query("SELECT * FROM training_sets ORDER BY created_at, rowid")
        return [_decoded(r) for r in rows]

    def training_set(self, id_: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM training_sets WHERE id = ?", (id_,))
        return _decoded(rows[0]) if rows else None

    def training_set_by_file(self, sha256: str) -> dict[str, Any] | None:
        """The latest training set whose file had this SHA-256."""
        rows = self.query(
            "SELECT * FROM training_sets WHERE file_sha256 = ? ORDER BY created_at DESC, "
            "rowid DESC LIMIT 1",
            (sha256,),
        )
        return _decoded(rows[0]) if rows else None
