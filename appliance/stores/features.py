"""``features.duckdb``: the encrypted DuckDB store for raw tables, ingest history and
the decision log.

DuckDB writes encrypted files only with the httpfs extension loaded (its crypto
module); the extension ships inside the ``duckdb-ext-httpfs`` wheel, so nothing is
fetched at run time. One connection writes (under a lock) through ``FeaturesTx``;
readers take cursors. Spill files go to ``HOME/tmp``, encrypted. Every identifier
reaches SQL through ``ident``, whatever characters a file's header holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import duckdb_ext
import numpy as np
import pyarrow as pa

from appliance.errors import StoreBusy, StoreDamaged, StoreError, WrongKey
from appliance.stores import migrations

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
    migrations.Migration(
        "0002_decision_batches",
        """
        ALTER TABLE _predictions ADD COLUMN batch_id TEXT;
        ALTER TABLE _predictions ADD COLUMN row_in_request INTEGER;
        ALTER TABLE _predictions ADD COLUMN actor TEXT;
        CREATE TABLE _decision_batches (
            batch_id TEXT PRIMARY KEY,
            committed_at TIMESTAMP NOT NULL,
            rows BIGINT NOT NULL,
            requests BIGINT NOT NULL,
            records_sha256 TEXT NOT NULL
        )
        """,
    ),
]

# The decision log's columns, in order; what a batch's hash commits to.
DECISION_COLUMNS = ("ts", "request_id", "row_in_request", "actor", "model", "version", "slot",
                    "input_fingerprint", "output", "latency_ms")  # fmt: skip


def ident(name: str) -> str:
    """An identifier quoted for DuckDB: any characters, double quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def extension_directory() -> str:
    return str(Path(next(iter(duckdb_ext.__path__))) / "extensions")


def connect_memory() -> duckdb.DuckDBPyConnection:
    """An in-memory connection for validating input; it holds nothing of the stores."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})  # fmt: skip
    con.execute("SET TimeZone = 'UTC'")
    return con


class FeaturesTx:
    """The writes of one open features.duckdb transaction."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def create_table(
        self, table: str, types: dict[str, str], entity: str, timestamp: str, at: datetime
    ) -> None:
        cols = ", ".join(f"{ident(c)} {t}" for c, t in types.items())
        self.conn.execute(
            f"CREATE TABLE {ident(table)} ({cols}, _batch_id VARCHAR, _ingested_at TIMESTAMP)"
        )
        self.conn.execute("INSERT INTO _tables VALUES (?, ?, ?, ?)", [table, entity, timestamp, at])

    def append(self, table: str, rows: pa.Table | pa.RecordBatchReader) -> None:
        self.conn.register("_rows", rows)
        try:
            self.conn.execute(f"INSERT INTO {ident(table)} BY NAME SELECT * FROM _rows")
        finally:
            self.conn.unregister("_rows")

    def record_ingest(
        self, batch_id: str, table: str, source: str, rows: int, at: datetime, actor: object
    ) -> None:
        self.conn.execute(
            "INSERT INTO _ingests VALUES (?, ?, ?, ?, ?, ?)",
            [batch_id, table, source, rows, at, str(actor)],
        )

    def undo_ingest(self, batch_id: str) -> str | None:
        """Remove an ingest batch (and its table, if the batch created it); its table."""
        row = self.conn.execute(
            "SELECT table_name FROM _ingests WHERE batch_id = ?", [batch_id]
        ).fetchone()
        if row is None:
            return None
        table = row[0]
        self.conn.execute(f"DELETE FROM {ident(table)} WHERE _batch_id = ?", [batch_id])
        self.conn.execute("DELETE FROM _ingests WHERE batch_id = ?", [batch_id])
        left = self.conn.execute(
            "SELECT count(*) FROM _ingests WHERE table_name = ?", [table]
        ).fetchone()[0]
        if left == 0:
            self.conn.execute(f"DROP TABLE {ident(table)}")
            self.conn.execute("DELETE FROM _tables WHERE table_name = ?", [table])
        return table

    def row_count(self, table: str) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()[0]

    def append_decisions(
        self, rows: pa.Table, batch_id: str, requests: int, records_sha256: str, at: datetime
    ) -> None:
        self.conn.register("_decisions", rows)
        try:
            self.conn.execute(
                "INSERT INTO _predictions BY NAME SELECT *, ? AS batch_id FROM _decisions",
                [batch_id],
            )
        finally:
            self.conn.unregister("_decisions")
        self.conn.execute(
            "INSERT INTO _decision_batches VALUES (?, ?, ?, ?, ?)",
            [batch_id, at, rows.num_rows, requests, records_sha256],
        )


class FeatureStore:
    def __init__(
        self, path: Path, key: bytes, create: bool = False, temp_dir: Path | None = None
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{FILENAME}: {self.path} does not exist; run `falaj init` first")
        self._lock = threading.RLock()
        temp_dir = temp_dir or self.path.parent / "tmp"
        self.conn = duckdb.connect(
            config={
                "extension_directory": extension_directory(),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                # Spills stay inside the home, encrypted like the store (never ./.tmp).
                "temp_directory": str(temp_dir),
            }
        )
        self.conn.execute("LOAD httpfs")
        self.conn.execute("SET TimeZone = 'UTC'")  # all times are stored as UTC TIMESTAMPs
        try:
            self.conn.execute(
                f"ATTACH {literal(str(self.path))} AS {ALIAS} (ENCRYPTION_KEY '{key.hex()}')"
            )
        except duckdb.Error as exc:
            self.conn.close()
            raise _open_error(self.path, exc) from None
        self.conn.execute("SET temp_file_encryption = true")
        self.conn.execute(f"USE {ALIAS}")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (duckdb.IOException, duckdb.InternalException, duckdb.FatalException) as exc:
            raise _damage(exc) from None
        except duckdb.SerializationException as exc:
            raise _damage(exc) from None

    def set_memory_limit(self, limit: str) -> None:
        with self._lock:
            self.conn.execute(f"SET memory_limit = {literal(limit)}")

    def migrate(self) -> list[str]:
        with self._lock, self._guard():
            return migrations.apply(
                self.conn,
                MIGRATIONS,
                begin=self.conn.begin,
                commit=self.conn.commit,
                rollback=self.conn.rollback,
            )

    def migrations(self) -> list[str]:
        with self._lock, self._guard():
            return migrations.recorded(self.conn)

    @contextmanager
    def transaction(self) -> Iterator[FeaturesTx]:
        with self._lock, self._guard():
            self.conn.begin()
            try:
                yield FeaturesTx(self.conn)
            except BaseException:
                with suppress(duckdb.Error):
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
            with self._guard():
                result = cur.execute(sql, params)
                cols = [d[0] for d in result.description]
                return [dict(zip(cols, row, strict=True)) for row in result.fetchall()]
        finally:
            cur.close()

    # -- the table catalog -----------------------------------------------------

    def table_names(self) -> list[str]:
        rows = self.query("SELECT table_name FROM _tables ORDER BY table_name")
        return [r["table_name"] for r in rows]

    def tables(self) -> list[dict[str, Any]]:
        """Every feature table with its keys and ingest history."""
        return self.query(
            "SELECT t.table_name, t.entity_col, t.timestamp_col, max(i.ingested_at) AS last, "
            "count(i.batch_id) AS batches FROM _tables t LEFT JOIN _ingests i USING (table_name) "
            "GROUP BY ALL ORDER BY t.table_name"
        )

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
        return self.query(f"SELECT count(*) AS n FROM {ident(table)}")[0]["n"]

    def ingest_batches(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM _ingests ORDER BY ingested_at")

    # -- training reads --------------------------------------------------------

    def training_arrays(
        self, table: str, features: list[str], label: str, timestamp: str, entity: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, event time in µs) of the labelled rows, ordered by time then entity."""
        cols = ", ".join(f"{ident(c)}::DOUBLE" for c in features)
        cur = self.cursor()
        try:
            with self._guard():
                arrays = cur.execute(
                    f"SELECT {cols}, {ident(label)}::DOUBLE, epoch_us({ident(timestamp)}) "
                    f"FROM {ident(table)} WHERE {ident(label)} IS NOT NULL "
                    f"ORDER BY {ident(timestamp)}, {ident(entity)}"
                ).fetchnumpy()
        finally:
            cur.close()
        values = list(arrays.values())
        X = np.column_stack([np.asarray(v, dtype=np.float64) for v in values[: len(features)]])
        return X, np.asarray(values[-2], dtype=np.float64), np.asarray(values[-1], np.int64)

    # -- the decision log ------------------------------------------------------

    def decision_count(self, model: str | None = None) -> int:
        if model is None:
            return self.query("SELECT count(*) AS n FROM _predictions")[0]["n"]
        return self.query("SELECT count(*) AS n FROM _predictions WHERE model = ?", [model])[0]["n"]

    def decisions(self, request_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM _predictions WHERE request_id = ? ORDER BY row_in_request",
            [request_id],
        )

    def decision_batch(self, batch_id: str) -> tuple[dict[str, Any] | None, pa.Table]:
        """A batch's record and its rows, in the order its hash covers."""
        rows = self.query("SELECT * FROM _decision_batches WHERE batch_id = ?", [batch_id])
        cur = self.cursor()
        try:
            with self._guard():
                table = cur.execute(
                    f"SELECT {', '.join(DECISION_COLUMNS)} FROM _predictions WHERE batch_id = ? "
                    "ORDER BY request_id, row_in_request",
                    [batch_id],
                ).arrow()
        finally:
            cur.close()
        if isinstance(table, pa.RecordBatchReader):
            table = table.read_all()
        return (rows[0] if rows else None), table

    def decision_batch_ids(self) -> list[str]:
        return [r["batch_id"] for r in self.query("SELECT batch_id FROM _decision_batches")]

    # -- integrity -------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """Read every block of every table; DuckDB checks each block's checksum (and, in
        an encrypted file, its authentication tag) as it reads it."""
        problems = []
        tables = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() ORDER BY table_name"
        )
        for t in tables:
            name = t["table_name"]
            cur = self.cursor()
            try:
                cur.execute(f"SELECT hash(COLUMNS(*)) FROM {ident(name)}")
                while cur.fetchmany(1 << 16):
                    pass
            except duckdb.Error as exc:
                problems.append(f"table {name}: {str(exc).splitlines()[0]}")
            finally:
                cur.close()
        return problems

    def checkpoint(self) -> None:
        with self._lock, self._guard():
            self.conn.execute(f"CHECKPOINT {ALIAS}")

    def close(self) -> None:
        with self._lock:
            with suppress(duckdb.Error):
                self.conn.execute(f"CHECKPOINT {ALIAS}")
            self.conn.close()


def _damage(exc: duckdb.Error) -> StoreDamaged:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreDamaged(
        f"{FILENAME}: damaged or unreadable: {first}; run `falaj check` and restore from a backup"
    )


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
