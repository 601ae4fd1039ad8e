"""The SQL of a key rotation (``appliance.rekey``) and of the self-test's store checks:
re-encrypted copies of both stores, made while nothing else can write them, their row
counts, and opening a store file with a given key to see whether it is refused.

control.db: an exclusive lock (``locking_mode = EXCLUSIVE``: no other process may read
or write while it is held), the WAL moved into the file, the file copied, and the copy
re-encrypted in place by SQLCipher's ``PRAGMA rekey``. features.duckdb: the store's
own connection (DuckDB's file lock keeps other processes out) attaches a new file with
the new key and ``COPY FROM DATABASE`` fills it.
"""

from __future__ import annotations

import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import sqlcipher3

from appliance.errors import CheckFailed, StoreBusy, StoreError, WrongKey
from appliance.files import fsync_path
from appliance.stores.features import ALIAS, FeatureStore, extension_directory
from appliance.stores.sqltext import ident, literal

COPY = "rekeyed"  # the alias of the new features file while it is filled


def _keyed(path: Path, key: bytes) -> Any:
    conn = sqlcipher3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return conn


def lock_control(path: Path, key: bytes) -> Any:
    """A connection holding control.db exclusively (until it is closed), its WAL moved
    into the file; ``StoreBusy`` when another process has the store open."""
    conn = _keyed(path, key)
    try:
        conn.execute("PRAGMA busy_timeout = 2000")
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("COMMIT")
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise sqlcipher3.OperationalError("database is locked")
    except sqlcipher3.Error as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreBusy(
                "control.db: in use by another process (a running `falaj run`?); stop it "
                "first: the keys cannot change under a running server"
            ) from None
        if "not a database" in str(exc):
            raise WrongKey(f"control.db: cannot decrypt {path.name}: wrong master key, or a "
                           "damaged file (`falaj check` tells which)") from None  # fmt: skip
        raise StoreError(f"control.db: {exc}") from None
    return conn


def control_counts(conn: Any) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]  # fmt: skip
    return {t: conn.execute(f"SELECT count(*) FROM {ident(t)}").fetchone()[0] for t in tables}


def copy_control(locked: Any, src: Path, dst: Path, old: bytes, new: bytes) -> dict[str, int]:
    """Copy the locked control.db to ``dst`` and re-encrypt the copy with ``new``
    (``PRAGMA rekey``); its row counts, checked equal to the original's."""
    before = control_counts(locked)
    shutil.copyfile(src, dst)
    fsync_path(dst)
    conn = _keyed(dst, old)
    try:
        conn.execute(f"PRAGMA rekey = \"x'{new.hex()}'\"")
    finally:
        conn.close()
    conn = _keyed(dst, new)
    try:
        after = control_counts(conn)
        problems = [r[0] for r in conn.execute("PRAGMA cipher_integrity_check")]
    finally:
        conn.close()
    if after != before or problems:
        raise CheckFailed(f"control.db: the re-encrypted copy differs ({problems[:1] or after})")
    return after


def features_counts(store: FeatureStore, alias: str = ALIAS) -> dict[str, int]:
    with store._lock:
        tables = store.conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
            "ORDER BY schema_name, table_name", [alias]).fetchall()  # fmt: skip
        return {
            n: store.conn.execute(
                f"SELECT count(*) FROM {ident(alias)}.{ident(s)}.{ident(n)}"
            ).fetchone()[0]
            for s, n in tables
        }


def copy_features(store: FeatureStore, dst: Path, new: bytes) -> dict[str, int]:
    """Fill a new file ``dst``, encrypted with ``new``, with everything in the store;
    its row counts, checked equal to the store's."""
    before = features_counts(store)
    with store._lock:
        try:
            store.conn.execute(f"CHECKPOINT {ALIAS}")
            store.conn.execute(
                f"ATTACH {literal(str(dst))} AS {COPY} (ENCRYPTION_KEY '{new.hex()}')"
            )
            store.conn.execute(f"COPY FROM DATABASE {ALIAS} TO {COPY}")
            store.conn.execute(f"CHECKPOINT {COPY}")
            after = features_counts(store, COPY)
        except duckdb.Error as exc:
            raise StoreError(f"features.duckdb: the re-encrypted copy failed: {exc}") from None
        finally:
            with suppress(duckdb.Error):
                store.conn.execute(f"DETACH {COPY}")
    if after != before:
        raise CheckFailed(f"features.duckdb: the re-encrypted copy differs ({after} != {before})")
    fsync_path(dst)
    return after


def snapshot_control(store: Any, dst: Path, key: bytes) -> None:
    """A consistent, encrypted copy of the open control.db (``sqlcipher_export`` into a
    new file under the same key), for checks that must not touch the live store."""
    with store._lock:
        store.conn.execute(f"ATTACH DATABASE {literal(str(dst))} AS snapshot "
                           f"KEY \"x'{key.hex()}'\"")  # fmt: skip
        try:
            store.conn.execute("SELECT sqlcipher_export('snapshot')").fetchall()
        finally:
            store.conn.execute("DETACH DATABASE snapshot")


def snapshot_features(store: FeatureStore, dst: Path) -> None:
    """A copy of the open features.duckdb: checkpointed, then copied while its writer
    lock keeps every write out."""
    with store._lock:
        store.conn.execute(f"CHECKPOINT {ALIAS}")
        shutil.copyfile(store.path, dst)


def drop_last_events(path: Path, key: bytes, n: int, reset_head: bool) -> int:
    """On a COPY of control.db: remove the last ``n`` audit events past the append-only
    triggers, as an attacker with the key would (and, with ``reset_head``, the verified
    head too, as an older copy of the file would have it). The events left."""
    conn = _keyed(path, key)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        top = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_events").fetchone()[0]
        conn.execute("DELETE FROM audit_events WHERE seq > ?", (top - n,))
        if reset_head:
            conn.execute("DELETE FROM audit_verified")
        return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    finally:
        conn.close()


def sample_rows(store: FeatureStore, per_table: int = 20) -> dict[str, list[tuple]]:
    """A few rows of every feature table, for looking for their values outside the store."""
    out = {}
    for t in store.table_names():
        out[t] = [tuple(r.values()) for r in
                  store.query(f"SELECT * FROM {ident(t)} LIMIT {int(per_table)}")]  # fmt: skip
    return out


def control_refuses(path: Path, key: bytes) -> bool:
    """True when control.db at ``path`` does not open with ``key``."""
    conn = _keyed(path, key)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return False
    except sqlcipher3.DatabaseError:
        return True
    finally:
        conn.close()


def features_refuses(path: Path, key: bytes) -> bool:
    """True when features.duckdb at ``path`` does not open with ``key``."""
    try:
        FeatureStore(path, key).close()
        return False
    except WrongKey:
        return True
    except StoreError as exc:
        return "key" in str(exc).lower()


def control_cipher(path: Path, key: bytes) -> dict[str, Any]:
    """SQLCipher's settings of the open store: version, KDF iterations, page size, HMAC."""
    conn = _keyed(path, key)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        one = lambda sql: (conn.execute(sql).fetchone() or [None])[0]  # noqa: E731
        return {"cipher_version": one("PRAGMA cipher_version"),
                "kdf_iter": one("PRAGMA kdf_iter"),
                "cipher_page_size": one("PRAGMA cipher_page_size"),
                "hmac_algorithm": one("PRAGMA cipher_hmac_algorithm"),
                "kdf_algorithm": one("PRAGMA cipher_kdf_algorithm"),
                "integrity": [r[0] for r in conn.execute("PRAGMA cipher_integrity_check")]}  # fmt: skip
    finally:
        conn.close()


def features_encryption(path: Path, key: bytes) -> dict[str, Any]:
    """Whether DuckDB reports the features file as encrypted, and with which cipher."""
    con = duckdb.connect(config={"extension_directory": extension_directory(),
                                 "autoinstall_known_extensions": False,
                                 "autoload_known_extensions": False})  # fmt: skip
    try:
        con.execute("LOAD httpfs")
        con.execute(f"ATTACH {literal(str(path))} AS probe (ENCRYPTION_KEY '{key.hex()}', "
                    "READ_ONLY)")  # fmt: skip
        row = con.execute(
            "SELECT encrypted, cipher FROM duckdb_databases() WHERE database_name = 'probe'"
        ).fetchone()
        return {"encrypted": bool(row and row[0]), "cipher": row[1] if row else None}
    except duckdb.Error as exc:
        return {"encrypted": False, "error": str(exc).splitlines()[0]}
    finally:
        con.close()
