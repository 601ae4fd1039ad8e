"""``features.duckdb``: the encrypted DuckDB store for raw tables, ingest history and
the decision log.

DuckDB writes encrypted files only with the httpfs extension loaded (its crypto
module); the extension ships inside the ``duckdb-ext-httpfs`` wheel, so nothing is
fetched at run time. One connection writes (under a lock) through ``FeaturesTx``;
readers take cursors. Spill files go to ``HOME/tmp``, encrypted. Every identifier
reaches SQL through ``ident``, whatever characters a file's header holds.

Driver errors never leave this module raw: damage is a ``StoreDamaged`` naming the
store, and ``integrity_problems`` reads and authenticates every block of the file (see
``FileCheck``), since DuckDB checks a block only when a query happens to read it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
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
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import StoreBusy, StoreDamaged, StoreError, Unavailable, WrongKey
from appliance.stores import migrations
from appliance.stores.online import MIGRATIONS as ONLINE_MIGRATIONS
from appliance.stores.online import OnlineReads, OnlineTx
from appliance.stores.quality import MIGRATIONS as QUALITY_MIGRATIONS
from appliance.stores.quality import QualityReads, QualityTx
from appliance.stores.results import arrow_table
from appliance.stores.sqltext import ident, literal
from appliance.stores.view_rows import ViewRowReads

FILENAME = "features.duckdb"
ALIAS = "fs"
BULK_FLUSH = "16MB"  # DuckDB's allocator_flush_threshold during an ingest

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
            records_sha256 TEXT NOT NULL,
            answered BOOLEAN NOT NULL  -- answered before this commit (the async mode)
        )
        """,
    ),
    *QUALITY_MIGRATIONS,
    *ONLINE_MIGRATIONS,
    migrations.Migration(
        "0005_decision_routes",
        # How a decision was routed (see appliance.serving.routing.Route) and the raw
        # input values the model was given, for monitoring and for the record.
        """
        ALTER TABLE _predictions ADD COLUMN variant TEXT;
        ALTER TABLE _predictions ADD COLUMN release_id BIGINT;
        ALTER TABLE _predictions ADD COLUMN served BOOLEAN;
        ALTER TABLE _predictions ADD COLUMN request_key TEXT;
        ALTER TABLE _predictions ADD COLUMN inputs DOUBLE[]
        """,
    ),
]

# The decision log's columns, in order; what a batch's hash commits to: the first ten
# for batches logged before 0005_decision_routes (their audit event has no "columns"),
# all of them for those whose event says "columns": 2.
DECISION_COLUMNS_1 = ("ts", "request_id", "row_in_request", "actor", "model", "version", "slot",
                      "input_fingerprint", "output", "latency_ms")  # fmt: skip
DECISION_COLUMNS = (*DECISION_COLUMNS_1, "variant", "release_id", "served", "request_key",
                    "inputs")  # fmt: skip


def extension_directory() -> str:
    return str(Path(next(iter(duckdb_ext.__path__))) / "extensions")


def connect_memory(temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection for validating input; it holds nothing of the stores.

    Without ``temp_dir`` it never spills (DuckDB's default would write the input in
    plaintext to ./.tmp): work beyond its memory limit fails instead. With one, it
    spills there, encrypted with a key that lives only in this process."""
    config: dict[str, Any] = {"autoinstall_known_extensions": False,
                              "autoload_known_extensions": False, "temp_directory": ""}  # fmt: skip
    if temp_dir is not None:
        config |= {"temp_directory": str(temp_dir), "temp_file_encryption": True,
                   "extension_directory": extension_directory()}  # fmt: skip
    con = duckdb.connect(config=config)
    if temp_dir is not None:
        con.execute("LOAD httpfs")  # the crypto module that encrypted spills need
    con.execute("SET TimeZone = 'UTC'")
    return con


class FeaturesTx(QualityTx, OnlineTx):
    """The writes of one open features.duckdb transaction."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def create_table(
        self,
        table: str,
        types: dict[str, str],
        entity: str,
        timestamp: str,
        at: datetime,
        created: str | None = None,
    ) -> None:
        cols = ", ".join(f"{ident(c)} {t}" for c, t in types.items())
        self.conn.execute(
            f"CREATE TABLE {ident(table)} ({cols}, _batch_id VARCHAR, _ingested_at TIMESTAMP, "
            "_seq BIGINT)"
        )
        self.conn.execute(
            "INSERT INTO _tables (table_name, entity_col, timestamp_col, created_at, created_col) "
            "VALUES (?, ?, ?, ?, ?)",
            [table, entity, timestamp, at, created],
        )

    def append(self, table: str, rows: pa.Table | pa.RecordBatch) -> tuple[int, int]:
        """Append rows, numbering them with the next ``_seq`` values in their order
        (a ``_seq`` column already given is kept); (first ``_seq``, rows)."""
        n = rows.num_rows
        first = 0
        if "_seq" not in rows.schema.names:
            first = self.reserve_seq(n)
            seq = pa.array(np.arange(first, first + n, dtype=np.int64))
            rows = rows.append_column("_seq", seq)
        # In the table's column order, through a relation: a view registered inside a
        # transaction (and the Arrow data it holds) would live until the commit.
        order = self.table_columns(table)
        for c in order:  # a column not given is null, as INSERT BY NAME would leave it
            if c not in rows.schema.names:
                rows = rows.append_column(c, pa.nulls(n))
        self.conn.from_arrow(rows.select(order)).insert_into(table)
        return first, n

    def append_stream(
        self, table: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch]
    ) -> None:
        """Append a stream of batches (``_seq`` included) in one INSERT, which DuckDB
        writes row group by row group to the file, in bounded memory."""
        order = self.table_columns(table)
        reader = pa.RecordBatchReader.from_batches(
            pa.schema([schema.field(c) for c in order]), (b.select(order) for b in batches)
        )
        self.conn.from_arrow(reader).insert_into(table)

    def table_columns(self, table: str) -> list[str]:
        """Every column of a table, internal ones too, in order."""
        return [r[0] for r in self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_catalog = current_database() ORDER BY ordinal_position", [table]
        ).fetchall()]  # fmt: skip

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
        self.forget_batch_quality(batch_id)
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
        self,
        rows: pa.Table,
        batch_id: str,
        requests: int,
        records_sha256: str,
        at: datetime,
        answered: bool = False,
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
            "INSERT INTO _decision_batches VALUES (?, ?, ?, ?, ?, ?)",
            [batch_id, at, rows.num_rows, requests, records_sha256, answered],
        )

    def undo_decisions(self, batch_id: str) -> None:
        """Remove a batch whose decisions were never answered."""
        self.conn.execute("DELETE FROM _predictions WHERE batch_id = ?", [batch_id])
        self.conn.execute("DELETE FROM _decision_batches WHERE batch_id = ?", [batch_id])

    def prune_decisions(self, before: datetime) -> int:
        """Delete every batch committed before ``before``, records and all; how many."""
        old = "SELECT batch_id FROM _decision_batches WHERE committed_at < ?"
        self.conn.execute(f"DELETE FROM _predictions WHERE batch_id IN ({old})", [before])
        gone = self.conn.execute(
            "DELETE FROM _decision_batches WHERE committed_at < ? RETURNING batch_id", [before]
        ).fetchall()
        return len(gone)


class FeatureStore(QualityReads, OnlineReads, ViewRowReads):
    def __init__(
        self, path: Path, key: bytes, create: bool = False, temp_dir: Path | None = None
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{FILENAME}: {self.path} does not exist; run `falaj init` first")
        self._lock = threading.RLock()
        temp_dir = temp_dir or self.path.parent / "tmp"
        try:
            self.conn = duckdb.connect(
                config={
                    "extension_directory": extension_directory(),
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                    # Spills stay inside the home, encrypted like the store (never ./.tmp),
                    # from the first byte: set here, not by a later SET.
                    "temp_directory": str(temp_dir),
                    "temp_file_encryption": True,
                }
            )
        except duckdb.Error as exc:
            raise StoreError(f"{FILENAME}: cannot start DuckDB: {_first_line(exc)}") from None
        try:
            self.conn.execute("LOAD httpfs")
            self.conn.execute("SET TimeZone = 'UTC'")  # all times are stored as UTC TIMESTAMPs
            self.conn.execute(
                f"ATTACH {literal(str(self.path))} AS {ALIAS} (ENCRYPTION_KEY '{key.hex()}')"
            )
            self.conn.execute(f"USE {ALIAS}")
        except duckdb.Error as exc:
            with suppress(duckdb.Error):
                self.conn.close()
            raise _open_error(self.path, key, exc) from None
        # A descriptor of our own for reading every block: opened once and closed only
        # after DuckDB's, because closing any descriptor of a file drops every POSIX lock
        # this process holds on it, and DuckDB's lock is what keeps a second process out.
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            with suppress(duckdb.Error):
                self.conn.close()
            raise StoreError(f"{FILENAME}: cannot read {self.path}: {exc.strerror}") from None
        self._file_check = FileCheck(self._fd, key)
        self._located: list[str] | None = None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except duckdb.Error as exc:
            mapped = _mapped(exc)
            if mapped is None:
                raise  # not the store's fault: a constraint, a bad cast, a bug
            if isinstance(mapped, StoreDamaged):
                if self._located is None:  # say which block, once: the damage stays put
                    with self._lock:
                        self._located = self._file_check.problems()
                if self._located:
                    mapped = _damaged(self._located)
            raise mapped from None

    def set_memory_limit(self, limit: str) -> None:
        with self._lock, self._guard():
            self.conn.execute(f"SET memory_limit = {literal(limit)}")

    def migrate(self) -> list[str]:
        with self._lock, self._guard():
            applied = migrations.apply(
                self.conn,
                MIGRATIONS,
                begin=self.conn.begin,
                commit=self.conn.commit,
                rollback=self.conn.rollback,
            )
        self.number_old_tables()
        return applied

    def number_old_tables(self) -> list[str]:
        """Give every table made before ``_seq`` existed its ``_seq`` column, rows
        numbered in stored order, oldest table first; idempotent. The tables upgraded."""
        upgraded = []
        old = self.query(
            "SELECT table_name FROM _tables t WHERE NOT EXISTS (SELECT 1 FROM "
            "information_schema.columns c WHERE c.table_name = t.table_name "
            "AND c.table_catalog = current_database() AND c.column_name = '_seq') "
            "ORDER BY created_at, table_name"
        )
        for t in old:
            with self.transaction() as tx:
                if tx.number_rows(t["table_name"]):
                    upgraded.append(t["table_name"])
        return upgraded

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

    @contextmanager
    def bulk_transaction(self) -> Iterator[FeaturesTx]:
        """A transaction for a large append (an ingest): DuckDB may then write full row
        groups to the file as they fill instead of holding the whole transaction in
        memory, which it does only when it need not keep insertion order. Rows carry
        their order in ``_seq``; the setting is restored afterwards."""
        with self._lock:
            with self._guard():
                self.conn.execute("SET preserve_insertion_order = false")
                # hand freed memory back as it goes, not after 128 MiB of it
                self.conn.execute(f"SET allocator_flush_threshold = '{BULK_FLUSH}'")
            try:
                with self.transaction() as tx:
                    yield tx
            finally:
                with suppress(duckdb.Error):
                    self.conn.execute("RESET preserve_insertion_order")
                    self.conn.execute("RESET allocator_flush_threshold")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A read connection to the same database (safe to use from another thread)."""
        with self._guard():
            cur = self.conn.cursor()
            try:
                cur.execute(f"USE {ALIAS}")
            except BaseException:
                cur.close()
                raise
        return cur

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor, closed afterwards, whose driver errors are mapped."""
        cur = self.cursor()
        try:
            with self._guard():
                yield cur
        finally:
            with suppress(duckdb.Error):
                cur.close()

    def query(self, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]:
        with self._reading() as cur:
            result = cur.execute(sql, params)
            cols = [d[0] for d in result.description]
            return [dict(zip(cols, row, strict=True)) for row in result.fetchall()]

    # -- the table catalog -----------------------------------------------------

    def table_names(self) -> list[str]:
        rows = self.query("SELECT table_name FROM _tables ORDER BY table_name")
        return [r["table_name"] for r in rows]

    def tables(self) -> list[dict[str, Any]]:
        """Every feature table with its keys and ingest history."""
        return self.query(
            "SELECT t.table_name, t.entity_col, t.timestamp_col, t.created_col, "
            "max(i.ingested_at) AS last, "
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

    def labelled_rows(self, table: str, label: str, timestamp: str, entity: str) -> pa.Table:
        """The user columns of the rows whose label is set, ordered by event time then
        entity (then ingest order, so the order is total)."""
        cols = ", ".join(ident(c) for c in self.column_types(table) or {})
        with self._reading() as cur:
            return cur.execute(
                f"SELECT {cols} FROM {ident(table)} WHERE {ident(label)} IS NOT NULL "
                f"ORDER BY {ident(timestamp)}, {ident(entity)}, _seq"
            ).fetch_arrow_table()

    # -- the decision log ------------------------------------------------------

    def decision_count(self, model: str | None = None) -> int:
        if model is None:
            return self.query("SELECT count(*) AS n FROM _predictions")[0]["n"]
        return self.query("SELECT count(*) AS n FROM _predictions WHERE model = ?", [model])[0]["n"]

    def recent_decisions(self, n: int) -> list[dict[str, Any]]:
        """The latest ``n`` requests: id, time, model, version, slot and record count."""
        return self.query(
            "SELECT request_id, max(ts) AS ts, any_value(model) AS model, "
            "any_value(version) AS version, any_value(slot) AS slot, count(*) AS records "
            "FROM _predictions GROUP BY request_id ORDER BY max(ts) DESC, request_id LIMIT ?",
            [n],
        )

    def decisions(self, request_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM _predictions WHERE request_id = ? ORDER BY row_in_request",
            [request_id],
        )

    def decision_batch_rows(self, batch_id: str) -> pa.Table:
        """A batch's records, in the order its hash covers."""
        with self._reading() as cur:
            return arrow_table(cur.execute(
                f"SELECT {', '.join(DECISION_COLUMNS)} FROM _predictions WHERE batch_id = ? "
                "ORDER BY request_id, row_in_request",
                [batch_id],
            ))  # fmt: skip

    def change_counts(self) -> dict[str, int]:
        """How many ingest and decision batches the store holds."""
        return self.query(
            "SELECT (SELECT count(*) FROM _ingests) AS ingests, "
            "(SELECT count(*) FROM _decision_batches) AS decisions"
        )[0]

    def decision_batches(self) -> list[dict[str, Any]]:
        """Every batch's record: id, time, rows, requests, records' hash, answered."""
        return self.query("SELECT * FROM _decision_batches ORDER BY committed_at")

    def decision_batches_before(self, before: datetime) -> list[dict[str, Any]]:
        """The batches committed before ``before``: id, time, rows, records' hash."""
        return self.query(
            "SELECT batch_id, committed_at, rows, records_sha256 FROM _decision_batches "
            "WHERE committed_at < ? ORDER BY committed_at, batch_id",
            [before],
        )

    # -- integrity -------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """Read and authenticate every block of the file (free ones and indexes too,
        which no query reads), then every table through DuckDB; the problems found,
        each naming where ("block 12 (bytes …) fails its authentication tag")."""
        with self._lock:
            failed = []
            try:
                self.conn.execute(f"CHECKPOINT {ALIAS}")  # everything in the file, none in the WAL
            except duckdb.Error as exc:
                if _mapped(exc) is None:
                    raise
                failed = [f"a checkpoint fails: {_first_line(exc)}"]
            problems = self._file_check.problems() + failed
        if problems:
            return problems  # named where they are; reading tables would only repeat them
        tables = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() ORDER BY table_name"
        )
        for t in tables:
            cur = self.cursor()
            try:  # one row that needs every value of every column decoded
                cur.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {ident(t['table_name'])}")
                cur.fetchall()
            except duckdb.Error as exc:
                problems.append(f"table {t['table_name']} cannot be read: {_first_line(exc)}")
            finally:
                cur.close()
        return problems

    def checkpoint(self) -> None:
        with self._lock, self._guard():
            self.conn.execute(f"CHECKPOINT {ALIAS}")

    def close(self) -> None:
        """Checkpoint and close. A checkpoint that fails leaves its changes in the WAL,
        which the next open replays (and reports, if it cannot)."""
        with self._lock:
            with suppress(duckdb.Error):
                self.conn.execute(f"CHECKPOINT {ALIAS}")
            with suppress(duckdb.Error):
                self.conn.close()
            if self._fd >= 0:
                os.close(self._fd)  # after DuckDB's: see __init__
                self._fd = -1


# -- reading every block ---------------------------------------------------------
#
# DuckDB 1.4 (storage version 67) lays out an encrypted file as: a 4096-byte main header
# in plaintext (an 8-byte checksum, "DUCK", the version, flags, encryption metadata, the
# 16-byte database identifier that salts the key, an encrypted canary), two 4096-byte
# database headers, then blocks of block_alloc_size bytes (256 KiB) from byte 12288.
# Each database header and block is a 16-byte nonce, a 16-byte AES-GCM tag and the
# ciphertext of an 8-byte checksum and the data. The AES key is SHA-256(identifier ||
# user key), the user key base64-decoded when it decodes (the hex of ours does).
# The reader below checks a file only when its header matches all of this and its
# canary decrypts with our key; any other layout is left to DuckDB's own reads.

MAIN_HEADER_SIZE = 4096
BLOCKS_START = 3 * MAIN_HEADER_SIZE
STORAGE_VERSION = 67
ENCRYPTION_METADATA = bytes.fromhex("0100010020000000")  # SHA-256 KDF, AES-GCM, 32-byte key
CANARY = b"DUCKKEY\x00"
NONCE, TAG = 16, 16
READ_AT_ONCE = 64  # blocks per read: 16 MiB


def checksum(data: bytes) -> int:
    """DuckDB's checksum of a buffer whose length is a multiple of 8."""
    words = np.frombuffer(data, dtype="<u8")
    return int(np.bitwise_xor.reduce(words * np.uint64(0xBF58476D1CE4E5B9)) ^ np.uint64(5381))


class UnknownLayout(Exception):
    """A file this reader does not know how to check."""


class FileCheck:
    """Reads every byte of an encrypted DuckDB file and checks it: the main header's
    checksum, each database header's and each block's AES-GCM tag and checksum."""

    def __init__(self, fd: int, key: bytes) -> None:
        self.fd = fd
        self.key = key
        self._aes: AESGCM | None = None
        self._identifier = b""

    def _read(self, n: int, offset: int) -> bytes:
        return os.pread(self.fd, n, offset)

    def _cipher(self, header: bytes) -> AESGCM:
        """The AES key of this file, derived from our key and the header's identifier."""
        if (
            len(header) < 148
            or header[8:12] != b"DUCK"
            or struct.unpack_from("<Q", header, 12)[0] != STORAGE_VERSION
            or not header[20] & 1
            or header[116:124] != ENCRYPTION_METADATA
        ):
            raise UnknownLayout
        identifier = header[124:140]
        if self._aes is None or identifier != self._identifier:
            user = self.key.hex()
            for material in (base64.b64decode(user), user.encode()):
                aes = AESGCM(hashlib.sha256(identifier + material).digest())
                if aes.encrypt(bytes(NONCE), CANARY, None)[:8] == header[140:148]:
                    self._aes, self._identifier = aes, identifier
                    break
            else:
                raise UnknownLayout  # our key does not open it: DuckDB says which way
        return self._aes

    def _open(self, aes: AESGCM, buf: bytes | memoryview) -> bytes | None:
        """The plaintext of a header or block, or None if its tag or checksum fails."""
        if len(buf) < NONCE + TAG + 8 or len(buf) % 8:
            return None  # cut short
        try:
            plain = aes.decrypt(
                bytes(buf[:NONCE]),
                bytes(buf[NONCE + TAG :]) + bytes(buf[NONCE : NONCE + TAG]),
                None,
            )
        except InvalidTag:
            return None
        if struct.unpack_from("<Q", plain)[0] != checksum(plain[8:]):
            return None
        return plain

    def problems(self) -> list[str]:
        """Every damaged part of the file, named by block and byte range."""
        try:
            return self._problems()
        except OSError as exc:
            return [f"the file cannot be read: {exc.strerror or exc}"]

    def _problems(self) -> list[str]:
        main = self._read(MAIN_HEADER_SIZE, 0)
        if main[8:12] != b"DUCK":
            return []  # not a DuckDB file at all: DuckDB says so
        if len(main) < MAIN_HEADER_SIZE:
            return [f"the file is {len(main)} bytes long, shorter than its main header"]
        if struct.unpack_from("<Q", main)[0] != checksum(main[8:]):
            return [f"the main header (bytes 0-{MAIN_HEADER_SIZE - 1}) fails its checksum"]
        try:
            aes = self._cipher(main)
        except UnknownLayout:
            return []
        problems, headers = [], []
        for i in (1, 2):
            start = i * MAIN_HEADER_SIZE
            where = f"database header {i} (bytes {start}-{start + MAIN_HEADER_SIZE - 1})"
            plain = self._open(aes, self._read(MAIN_HEADER_SIZE, start))
            if plain is None:
                problems.append(f"{where} fails its authentication tag or checksum")
            else:
                headers.append(struct.unpack_from("<5Q", plain, 8))
        if not headers:
            return problems
        # the active header: the higher iteration; (iteration, meta, free list, count, size)
        _, _, _, block_count, block_size = max(headers)
        if not 4096 <= block_size <= 1 << 20:
            return problems + [f"the database header gives an impossible block size {block_size}"]
        for first in range(0, block_count, READ_AT_ONCE):
            n = min(READ_AT_ONCE, block_count - first)
            offset = BLOCKS_START + first * block_size
            data = memoryview(self._read(n * block_size, offset))
            for j in range(n):
                block = data[j * block_size : (j + 1) * block_size]
                start = offset + j * block_size
                where = f"block {first + j} (bytes {start}-{start + block_size - 1})"
                if len(block) < block_size:
                    after = block_count - first - j - 1
                    end = start + len(block)
                    return problems + [f"{where} and {after} after it are missing: the file "
                                       f"ends at byte {end}"]  # fmt: skip
                if not any(block[: NONCE + TAG]) and block == bytes(block_size):
                    continue  # never written, or trimmed: a free block holding nothing
                if self._open(aes, block) is None:
                    problems.append(f"{where} fails its authentication tag or checksum")
        return problems


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


DAMAGE = (
    "AES tag",  # a block whose authentication tag fails
    "Corrupt database file",  # a block whose checksum fails
    "Could not read enough bytes",  # a block past the end of a cut-short file
    "unsuccessful or closed pending query",  # what a failed parallel scan leaves
)


def _is_damage(exc: duckdb.Error) -> bool:
    if isinstance(exc, (duckdb.InternalException, duckdb.FatalException,
                        duckdb.SerializationException)):  # fmt: skip
        return True
    return any(s in str(exc) for s in DAMAGE)


def _mapped(exc: duckdb.Error) -> StoreError | Unavailable | None:
    """The domain error for a driver error that is the store's, not the caller's."""
    first = _first_line(exc)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return Unavailable(
            f"{FILENAME}: out of memory ({first}); raise memory_limit or free memory"
        )
    if "No space left on device" in str(exc):
        return StoreError(f"{FILENAME}: the disk is full ({first}); free space and try again")
    if _is_damage(exc):
        return StoreDamaged(
            f"{FILENAME}: damaged or unreadable: {first}; "
            "run `falaj check` and restore it from a backup"
        )
    if isinstance(exc, duckdb.IOException):  # the file system: permissions, a lost disk
        return StoreError(f"{FILENAME}: {first}")
    return None


def _damaged(problems: list[str]) -> StoreDamaged:
    return StoreDamaged.naming(FILENAME, problems)


def _open_error(path: Path, key: bytes, exc: duckdb.Error) -> StoreError:
    text = str(exc)
    if "Wrong encryption key" in text:
        return WrongKey(f"{FILENAME}: cannot decrypt {path}: wrong master key")
    if "Could not set lock" in text or "Conflicting lock" in text:
        return StoreBusy(
            f"{FILENAME}: {path} is in use by another Falaj process (is `falaj run` running?); "
            "stop it or use its API"
        )
    # DuckDB says only that some block failed; read them all to say which. The store
    # is not open here, so a descriptor of our own may come and go.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        found = []
    else:
        try:
            found = FileCheck(fd, key).problems()
        finally:
            os.close(fd)
    if found:
        return _damaged(found)
    return StoreError(
        f"{FILENAME}: cannot open {path}: damaged or not a Falaj store ({_first_line(exc)})"
    )
