"""``control.db``: the SQLCipher 4 store for the audit chain, registry and deployments.

One connection, one writer: every write runs inside ``transaction()`` (BEGIN IMMEDIATE
under a lock), so a change and the audit event recording it commit together.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlcipher3

from appliance import migrations
from appliance.errors import StoreError, WrongKey

FILENAME = "control.db"

MIGRATIONS = [
    migrations.Migration(
        "0001_audit",
        """
        CREATE TABLE audit_events (
            seq INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
        """,
    ),
    migrations.Migration(
        "0002_registry",
        """
        CREATE TABLE models (
            name TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        CREATE TABLE model_versions (
            name TEXT NOT NULL REFERENCES models(name),
            version INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            path TEXT NOT NULL,
            manifest_sha256 TEXT NOT NULL,
            source_table TEXT NOT NULL,
            label TEXT NOT NULL,
            features TEXT NOT NULL,
            metrics TEXT NOT NULL,
            data_fingerprint TEXT NOT NULL,
            PRIMARY KEY (name, version)
        );
        CREATE TABLE deployments (
            name TEXT PRIMARY KEY REFERENCES models(name),
            live_slot TEXT NOT NULL CHECK (live_slot IN ('blue', 'green')),
            blue_version INTEGER,
            green_version INTEGER,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL
        )
        """,
    ),
]


class ControlStore:
    def __init__(self, path: Path, key: bytes, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{FILENAME}: {self.path} does not exist; run `falaj init` first")
        self._lock = threading.RLock()
        try:
            conn = sqlcipher3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        except sqlcipher3.Error as exc:
            raise StoreError(f"{FILENAME}: cannot open {self.path}: {exc}") from None
        conn.execute("PRAGMA cipher_log_level = NONE")  # errors are ours to report, once
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlcipher3.DatabaseError:
            conn.close()
            raise WrongKey(
                f"{FILENAME}: cannot decrypt {self.path}: wrong master key or damaged file"
            ) from None
        self.conn = conn
        self.conn.row_factory = sqlcipher3.Row

    def migrate(self) -> list[str]:
        with self._lock:
            return migrations.apply(
                self.conn,
                MIGRATIONS,
                begin=lambda: self.conn.execute("BEGIN IMMEDIATE"),
                commit=lambda: self.conn.execute("COMMIT"),
                rollback=lambda: self.conn.execute("ROLLBACK"),
            )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction; commits on success, rolls back on any error."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def data_version(self) -> int:
        """Changes when another connection (another process) commits a write."""
        with self._lock:
            return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.conn.close()
