"""``control.db``: the SQLCipher 4 store for the audit chain, registry and deployments.

One connection, one writer: every write runs inside ``transaction()`` (BEGIN IMMEDIATE
under a lock), which hands out a ``ControlTx`` whose methods are the only writes there
are, so a change and the audit event recording it commit together. Driver errors never
leave this module raw: damage is a ``StoreDamaged`` naming the store and, where SQLCipher
can tell, the page whose HMAC fails.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlcipher3

from appliance.audit.chain import GENESIS, canonical_json, event_hash
from appliance.errors import StoreBusy, StoreDamaged, StoreError, WrongKey
from appliance.stores import migrations
from appliance.stores.audit import MIGRATIONS as AUDIT_MIGRATIONS
from appliance.stores.audit import AuditReads, AuditTx
from appliance.stores.auth import MIGRATIONS as AUTH_MIGRATIONS
from appliance.stores.auth import AuthReads, AuthTx
from appliance.stores.compliance import MIGRATIONS as COMPLIANCE_MIGRATIONS
from appliance.stores.compliance import ComplianceReads, ComplianceTx
from appliance.stores.monitoring import MIGRATIONS as MONITORING_MIGRATIONS
from appliance.stores.monitoring import MonitoringReads, MonitoringTx
from appliance.stores.releases import MIGRATIONS as RELEASE_MIGRATIONS
from appliance.stores.releases import ReleaseReads, ReleaseTx
from appliance.stores.runs import MIGRATIONS as RUN_MIGRATIONS
from appliance.stores.runs import RunReads, RunTx
from appliance.stores.scheduler import MIGRATIONS as SCHEDULER_MIGRATIONS
from appliance.stores.scheduler import SchedulerReads, SchedulerTx
from appliance.stores.table_specs import MIGRATIONS as TABLE_SPEC_MIGRATIONS
from appliance.stores.table_specs import TableSpecReads, TableSpecTx
from appliance.stores.training_sets import MIGRATIONS as TRAINING_SET_MIGRATIONS
from appliance.stores.training_sets import TrainingSetReads, TrainingSetTx
from appliance.stores.views import MIGRATIONS as VIEW_MIGRATIONS
from appliance.stores.views import ViewReads, ViewTx

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
    migrations.Migration(
        "0003_audit_head",
        """
        CREATE TABLE audit_verified (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            verified_at TEXT NOT NULL
        );
        CREATE INDEX audit_by_action ON audit_events (action, subject)
        """,
    ),
    *TABLE_SPEC_MIGRATIONS,
    *VIEW_MIGRATIONS,
    *TRAINING_SET_MIGRATIONS,
    *RUN_MIGRATIONS,
    *RELEASE_MIGRATIONS,
    *SCHEDULER_MIGRATIONS,
    *MONITORING_MIGRATIONS,
    *AUTH_MIGRATIONS,
    *AUDIT_MIGRATIONS,
    *COMPLIANCE_MIGRATIONS,
]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


PAGE_SIZE = 4096  # SQLCipher 4's default, which control.db uses
DAMAGE = ("file is not a database", "malformed", "HMAC")  # what a page failing its HMAC gives


def _page_problem(text: str) -> str:
    """SQLCipher's line for a page, in our words ("HMAC check failed for page 7")."""
    m = re.fullmatch(r"HMAC verification failed for page (\d+)", text)
    return f"HMAC check failed for page {m[1]}" if m else text


def _cipher_problems(conn: Any) -> list[str]:
    """Every page of the file read and its HMAC checked, whatever page 1 holds."""
    try:
        return [_page_problem(r[0]) for r in conn.execute("PRAGMA cipher_integrity_check")]
    except sqlcipher3.DatabaseError as exc:
        return [str(exc)]


def _damaged(problems: list[str], text: str) -> StoreDamaged:
    return StoreDamaged.naming(FILENAME, problems or [text])


def _open_error(conn: Any, path: Path, exc: sqlcipher3.Error) -> StoreError:
    """Why a file did not open: busy, a wrong key (no page authenticates) or damage
    (some pages do), named by page."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreBusy(f"{FILENAME}: {path.name} is locked by another process; try again")
    problems = _cipher_problems(conn)
    pages = max(1, path.stat().st_size // PAGE_SIZE)
    if sum(p.startswith("HMAC check failed") for p in problems) >= pages:
        # The salt in the first 16 bytes keys every page: it alone cannot be told from a
        # wrong key. Any other damage leaves the other pages authenticating.
        return WrongKey(
            f"{FILENAME}: cannot decrypt {path}: wrong master key, or a damaged file "
            "(no page authenticates)"
        )
    return _damaged(problems, text)


def _decode(row: dict[str, Any], *fields: str) -> dict[str, Any]:
    for f in fields:
        row[f] = json.loads(row[f])
    return row


class ControlTx(
    TableSpecTx,
    ViewTx,
    TrainingSetTx,
    RunTx,
    ReleaseTx,
    SchedulerTx,
    MonitoringTx,
    AuthTx,
    AuditTx,
    ComplianceTx,
):
    """The writes of one open control.db transaction."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def _one(self, sql: str, params: tuple = ()) -> dict[str, Any] | None:
        row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    # -- audit -----------------------------------------------------------------

    def append_audit(
        self, actor: object, action: str, subject: str, details: dict[str, Any] | None = None
    ) -> int:
        """Append one event to the chain; returns its sequence number."""
        last = self._one("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        seq, prev = (last["seq"] + 1, last["hash"]) if last else (1, GENESIS)
        ts = datetime.now(UTC).isoformat(timespec="microseconds")
        body = canonical_json(details or {})
        h = event_hash(prev, seq, ts, str(actor), action, subject, body)
        self.conn.execute(
            "INSERT INTO audit_events (seq, ts, actor, action, subject, details, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, str(actor), action, subject, body, prev, h),
        )
        return seq

    def set_verified_head(self, seq: int, hash_: str) -> None:
        self.conn.execute(
            "INSERT INTO audit_verified VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
            "SET seq = excluded.seq, hash = excluded.hash, verified_at = excluded.verified_at",
            (seq, hash_, now()),
        )

    # -- registry --------------------------------------------------------------

    def next_version(self, name: str, actor: object) -> int:
        """Create the model if new; the number its next version takes."""
        self.conn.execute(
            "INSERT INTO models VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (name, now(), str(actor)),
        )
        row = self._one(
            "SELECT coalesce(max(version), 0) + 1 AS v FROM model_versions WHERE name = ?",
            (name,),
        )
        return int(row["v"])  # type: ignore[index]

    def insert_version(self, record: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO model_versions (name, version, created_at, created_by, path, "
            "manifest_sha256, source_table, label, features, metrics, data_fingerprint, status) "
            "VALUES (:name, :version, :created_at, :created_by, :path, :manifest_sha256, "
            ":source_table, :label, :features, :metrics, :data_fingerprint, :status)",
            {"status": "ready"} | record | {"features": json.dumps(record["features"]),
                                            "metrics": json.dumps(record["metrics"])},
        )  # fmt: skip

    def version_paths(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM model_versions")]

    def set_manifest(self, name: str, version: int, manifest_sha256: str) -> None:
        """A bundle re-signed under a new key (``falaj rekey``) has a new manifest."""
        self.conn.execute(
            "UPDATE model_versions SET manifest_sha256 = ? WHERE name = ? AND version = ?",
            (manifest_sha256, name, version),
        )

    # -- deployments -----------------------------------------------------------

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM deployments WHERE name = ?", (name,))

    def put_deployment(
        self, name: str, live_slot: str, blue: int | None, green: int | None, actor: object
    ) -> None:
        self.conn.execute(
            "INSERT INTO deployments VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET live_slot = excluded.live_slot, blue_version = excluded.blue_version, "
            "green_version = excluded.green_version, updated_at = excluded.updated_at, "
            "updated_by = excluded.updated_by",
            (name, live_slot, blue, green, now(), str(actor)),
        )


class ControlStore(
    TableSpecReads,
    ViewReads,
    TrainingSetReads,
    RunReads,
    ReleaseReads,
    SchedulerReads,
    MonitoringReads,
    AuthReads,
    AuditReads,
    ComplianceReads,
):
    def __init__(self, path: Path, key: bytes, create: bool = False) -> None:
        self.path = Path(path)
        exists = self.path.exists()
        if not create and not exists:
            raise StoreError(f"{FILENAME}: {self.path} does not exist; run `falaj init` first")
        if exists and self.path.is_file() and self.path.stat().st_size == 0:
            # SQLite would take it for a new, empty store, and reconciling against an
            # empty audit chain would undo every ingest: refuse it.
            raise StoreDamaged(
                f"{FILENAME}: damaged: {self.path} is empty (0 bytes); restore it from a backup"
            )
        self._lock = threading.RLock()
        self._located: list[str] | None = None
        try:
            conn = sqlcipher3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA cipher_log_level = NONE")  # errors are ours to report, once
            conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        except sqlcipher3.Error as exc:
            raise StoreError(f"{FILENAME}: cannot open {self.path}: {exc}") from None
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # a commit survives a power cut
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlcipher3.DatabaseError as exc:
            error = _open_error(conn, self.path, exc)
            conn.close()
            raise error from None
        self.conn = conn
        self.conn.row_factory = sqlcipher3.Row

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlcipher3.IntegrityError:
            raise
        except sqlcipher3.DatabaseError as exc:
            raise self._mapped(exc) from None

    def _mapped(self, exc: sqlcipher3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreBusy(
                f"{FILENAME}: {self.path.name} is locked by another process; try again"
            )
        if "disk is full" in text:
            return StoreError(f"{FILENAME}: the disk is full; free space and try again")
        if any(d in text for d in DAMAGE):
            if self._located is None:  # say which page, once: the damage stays put
                with suppress(sqlcipher3.Error):
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                # (a check that cannot run at all only repeats the error: leave it out)
                self._located = [p for p in _cipher_problems(self.conn) if p != text]
            return _damaged(self._located, text)
        return StoreError(f"{FILENAME}: {text}")

    def migrate(self) -> list[str]:
        with self._lock, self._guard():
            return migrations.apply(
                self.conn,
                MIGRATIONS,
                begin=lambda: self.conn.execute("BEGIN IMMEDIATE"),
                commit=lambda: self.conn.execute("COMMIT"),
                rollback=lambda: self.conn.execute("ROLLBACK"),
            )

    def migrations(self) -> list[str]:
        with self._lock, self._guard():
            return migrations.recorded(self.conn)

    @contextmanager
    def transaction(self) -> Iterator[ControlTx]:
        """One write transaction; commits on success, rolls back on any error."""
        with self._lock, self._guard():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield ControlTx(self.conn)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # a failed COMMIT may leave it open
                    with suppress(sqlcipher3.Error):
                        self.conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        with self._lock, self._guard():
            return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def data_version(self, wait: bool = True) -> int | None:
        """Changes when another connection (another process) commits a write. None,
        without ``wait``, while another thread holds the connection: a commit in
        progress here (a decision batch's audit event) takes an fsync, milliseconds a
        serving request need not spend waiting to learn that nothing changed."""
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            with self._guard():
                return self.conn.execute("PRAGMA data_version").fetchone()[0]
        finally:
            self._lock.release()

    # -- audit reads -----------------------------------------------------------

    def audit_events(self, after: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Events with seq > ``after``, oldest first."""
        return self.query(
            "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit or -1)
        )

    def audit_event(self, seq: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM audit_events WHERE seq = ?", (seq,))
        return rows[0] if rows else None

    def audit_tail(self, n: int) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM audit_events ORDER BY seq DESC LIMIT ?", (n,))
        return [_decode(r, "details") for r in rows]

    def audit_find(self, action: str, subject: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT * FROM audit_events WHERE action = ? AND subject = ? ORDER BY seq",
            (action, subject),
        )
        return [_decode(r, "details") for r in rows]

    def audit_details(self, action: str) -> list[dict[str, Any]]:
        """The details of every event of one action, oldest first."""
        rows = self.query(
            "SELECT details FROM audit_events WHERE action = ? ORDER BY seq", (action,)
        )
        return [json.loads(r["details"]) for r in rows]

    def audit_subjects(self, action: str) -> list[dict[str, Any]]:
        return self.query("SELECT seq, subject FROM audit_events WHERE action = ?", (action,))

    def audit_count(self) -> int:
        return self.query("SELECT count(*) AS n FROM audit_events")[0]["n"]

    def audit_action_count(self, action: str) -> int:
        rows = self.query("SELECT count(*) AS n FROM audit_events WHERE action = ?", (action,))
        return rows[0]["n"]

    def unused(self) -> bool:
        """True while no event was ever recorded (a first init that did not finish)."""
        tables = self.query("SELECT name FROM sqlite_master WHERE name = 'audit_events'")
        return not tables or self.audit_count() == 0

    def verified_head(self) -> tuple[int, str] | None:
        rows = self.query("SELECT seq, hash FROM audit_verified WHERE id = 1")
        return (rows[0]["seq"], rows[0]["hash"]) if rows else None

    # -- registry reads --------------------------------------------------------

    def model_versions(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is None:
            rows = self.query("SELECT * FROM model_versions ORDER BY name, version")
        else:
            rows = self.query(
                "SELECT * FROM model_versions WHERE name = ? ORDER BY version", (name,)
            )
        return [_decode(r, "metrics", "features") for r in rows]

    def model_version(self, name: str, version: int) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM model_versions WHERE name = ? AND version = ?", (name, version)
        )
        return _decode(rows[0], "metrics", "features") if rows else None

    def deployment(self, name: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM deployments WHERE name = ?", (name,))
        return rows[0] if rows else None

    def deployments(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM deployments ORDER BY name")

    # -- integrity -------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """Read and authenticate every page: SQLCipher's HMAC check of every page of the
        file (after moving the WAL's pages into it), then SQLite's own structural check."""
        with self._lock:
            # Without waiting on (or blocking) another process: pages a reader there still
            # needs stay in the WAL, where integrity_check below reads them.
            with suppress(sqlcipher3.DatabaseError):
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            problems = _cipher_problems(self.conn)
            if problems:
                return problems
            try:
                rows = self.conn.execute("PRAGMA integrity_check").fetchall()
            except sqlcipher3.DatabaseError as exc:
                return [str(exc)]
        return [r[0] for r in rows if r[0] != "ok"]

    def close(self) -> None:
        """Close, which checkpoints the WAL; one that fails stays for the next open."""
        with self._lock, suppress(sqlcipher3.Error):
            self.conn.close()
