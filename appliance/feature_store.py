"""``features.duckdb``: the encrypted DuckDB store for raw tables, ingest history and
the prediction log.

DuckDB writes encrypted files only with the httpfs extension loaded (its crypto
module); the extension ships inside the ``duckdb-ext-httpfs`` wheel, so nothing is
fetched at run time. One connection writes (under a lock); readers take cursors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import duckdb_ext

from appliance import migrations
from appliance.errors import StoreBusy, StoreError, WrongKey

FILENAME = "features.duckdb"
ALIAS = "fs"

MIGRATIONS = [
    migrations.Migration(
        "0001_catalog",
        """
        CREATE TABLE _tables (
            table_name TEXT PRIMARY KEY,
            entity_col TEXT NOT NULL,
            timestamp_col TEXT NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE _ingests (
            batch_id TEXT PRIMARY KEY,
            table_name TEXT NOT NULL,
            source TEXT NOT NULL,
            rows BIGINT NOT NULL,
            ingested_at TIMESTAMP NOT NULL,
            actor TEXT NOT NULL
        );
        CREATE TABLE _predictions (
            ts TIMESTAMP NOT NULL,
            request_id TEXT NOT NULL,
            model TEXT NOT NULL,
            version INTEGER NOT NULL,
            slot TEXT NOT NULL,
            input_fingerprint TEXT NOT NULL,
            output DOUBLE NOT NULL,
            latency_ms DOUBLE NOT NULL
        )
        """,
    ),
]


def extension_directory() -> str:
    return str(Path(next(iter(duckdb_ext.__path__))) / "extensions")


class FeatureStore:
    def __init__(self, path: Path, key: bytes, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{FILENAME}: {self.path} does not exist; run `falaj init` first")
        self._lock = threading.RLock()
        self.conn = duckdb.connect(
            config={
                "extension_directory": extension_directory(),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        self.conn.execute("LOAD httpfs")
        self.conn.execute("SET TimeZone = 'UTC'")  # all times are stored as UTC TIMESTAMPs
        try:
            self.conn.execute(
                f"ATTACH '{_quote(str(self.path))}' AS {ALIAS} (ENCRYPTION_KEY '{key.hex()}')"
            )
        except duckdb.Error as exc:
            self.conn.close()
            raise _open_error(self.path, exc) from None
        self.conn.execute(f"USE {ALIAS}")

    def migrate(self) -> list[str]:
        with self._lock:
            return migrations.apply(
                self.conn,
                MIGRATIONS,
                begin=self.conn.begin,
                commit=self.conn.commit,
                rollback=self.conn.rollback,
            )

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self.conn.begin()
            try:
                yield self.conn
            except BaseException:
                self.conn.rollback()
                raise
            self.conn.commit()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A read connection to the same database (safe to use from another thread)."""
        cur = self.conn.cursor()
        cur.execute(f"USE {ALIAS}")
        return cur

    def query(self, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]:
        cur = self.cursor()
        try:
            result = cur.execute(sql, params)
            cols = [d[0] for d in result.description]
            return [dict(zip(cols, row, strict=True)) for row in result.fetchall()]
        finally:
            cur.close()

    def table_names(self) -> list[str]:
        rows = self.query("SELECT table_name FROM _tables ORDER BY table_name")
        return [r["table_name"] for r in rows]

    def column_types(self, table: str) -> dict[str, str] | None:
        """The user columns of a table and their DuckDB types (internal ``_`` ones left
        out), or None if there is no such table."""
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_catalog = current_database() ORDER BY ordinal_position",
            [table],
        )
        if not rows:
            return None
        return {
            r["column_name"]: r["data_type"] for r in rows if not r["column_name"].startswith("_")
        }

    def table_keys(self, table: str) -> tuple[str, str] | None:
        """(entity column, timestamp column) of a feature table, or None."""
        rows = self.query(
            "SELECT entity_col, timestamp_col FROM _tables WHERE table_name = ?", [table]
        )
        return (rows[0]["entity_col"], rows[0]["timestamp_col"]) if rows else None

    def row_count(self, table: str) -> int:
        return self.query(f'SELECT count(*) AS n FROM "{table}"')[0]["n"]

    def checkpoint(self) -> None:
        with self._lock:
            self.conn.execute(f"CHECKPOINT {ALIAS}")

    def close(self) -> None:
        with self._lock:
            with suppress(duckdb.Error):
                self.conn.execute(f"CHECKPOINT {ALIAS}")
            self.conn.close()


def _quote(s: str) -> str:
    return s.replace("'", "''")


def _open_error(path: Path, exc: duckdb.Error) -> StoreError:
    text = str(exc)
    if "Wrong encryption key" in text:
        return WrongKey(f"{FILENAME}: cannot decrypt {path}: wrong master key")
    if "lock" in text.lower():
        return StoreBusy(
            f"{FILENAME}: {path} is in use by another Falaj process (is `falaj run` running?); "
            "stop it or use its API"
        )
    first = text.splitlines()[0] if text else type(exc).__name__
    return StoreError(f"{FILENAME}: cannot open {path}: damaged or not a Falaj store ({first})")
