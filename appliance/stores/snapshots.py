"""Consistent copies of the two stores while they are in use, for backups; and the
migrations a store has not applied yet, for upgrades.

``control.db`` is copied with SQLite's online backup API (one step: a read snapshot of
the database and its WAL), into a file keyed with the same store key, so the copy is
as encrypted as the original. ``features.duckdb`` can be open in one process only: the
process holding it checkpoints it and copies its file (and any WAL left) while it holds
the store's writer lock, so no commit lands mid-copy. The copy reads through the
store's own descriptor: opening and closing another descriptor of the file would drop
the POSIX lock that keeps other processes out.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import sqlcipher3

from appliance.errors import StoreBusy, StoreError
from appliance.stores.features import ALIAS, FeatureStore
from appliance.stores.migrations import Migration
from appliance.stores.sqltext import ident

COPY_BLOCK = 1 << 20


def _keyed(path: Path, key: bytes) -> Any:
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return conn


def snapshot_control(path: Path, key: bytes, dest: Path) -> dict[str, Any]:
    """Copy control.db to ``dest`` (a new file, same key) as of one instant; what it
    holds: row counts per table, the audit head, model versions and migrations."""
    src = dst = None
    try:
        src = _keyed(path, key)
        src.execute("PRAGMA busy_timeout = 5000")
        dst = _keyed(dest, key)
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        return control_facts(dst)
    except sqlcipher3.Error as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise StoreBusy("control.db: busy for over 5 s; try the backup again") from None
        raise StoreError(f"control.db: cannot copy it: {text}") from None
    finally:
        for conn in (dst, src):
            if conn is not None:
                with suppress(sqlcipher3.Error):
                    conn.close()


def control_facts(conn: Any) -> dict[str, Any]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )]  # fmt: skip
    counts = {n: conn.execute(f"SELECT count(*) FROM {ident(n)}").fetchone()[0] for n in names}
    head = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    models: dict[str, list[int]] = {}
    for name, version in conn.execute(
        "SELECT name, version FROM model_versions ORDER BY name, version"
    ):
        models.setdefault(name, []).append(version)
    migrations = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    return {
        "rows": counts,
        "audit_head": {"seq": head[0], "hash": head[1]} if head else {"seq": 0, "hash": ""},
        "models": models,
        "migrations": migrations,
    }


def read_control_facts(path: Path, key: bytes) -> dict[str, Any]:
    """The same facts from a control.db file (a restored one)."""
    conn = _keyed(path, key)
    try:
        return control_facts(conn)
    finally:
        conn.close()


def snapshot_features(store: FeatureStore, dest: Path) -> dict[str, Any]:
    """Copy the open feature store's file (and WAL, if a checkpoint could not empty it)
    to ``dest`` (``dest`` + ``.wal``) under its writer lock; row counts per table and the
    migrations, as of the copy."""
    with store._lock, store._guard():
        with suppress(duckdb.Error):  # a reader's open transaction may keep the WAL
            store.conn.execute(f"CHECKPOINT {ALIAS}")
        facts = features_facts(store.conn)
        _copy_fd(store._fd, dest)
        wal = Path(str(store.path) + ".wal")
        if wal.exists() and wal.stat().st_size:
            _copy_path(wal, Path(str(dest) + ".wal"))
    return facts


def features_facts(conn: Any) -> dict[str, Any]:
    names = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = "
        "current_database() AND table_type = 'BASE TABLE' ORDER BY table_name"
    ).fetchall()]  # fmt: skip
    counts = {n: conn.execute(f"SELECT count(*) FROM {ident(n)}").fetchone()[0] for n in names}
    migrations = [
        r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name").fetchall()
    ]
    return {"rows": counts, "migrations": migrations}


def read_features_facts(store: FeatureStore) -> dict[str, Any]:
    with store._lock, store._guard():
        return features_facts(store.conn)


def _copy_fd(fd: int, dest: Path) -> None:
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        offset = 0
        while block := os.pread(fd, COPY_BLOCK, offset):
            os.write(out, block)
            offset += len(block)
        os.fsync(out)
    finally:
        os.close(out)


def _copy_path(src: Path, dest: Path) -> None:
    fd = os.open(src, os.O_RDONLY)
    try:
        _copy_fd(fd, dest)
    finally:
        os.close(fd)


def pending_control(store: Any, migrations: list[Migration]) -> list[str]:
    """The migrations an open control.db has not applied; none for a store never
    migrated (a new home, not an upgrade)."""
    with store._lock, store._guard():
        found = store.conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = '_migrations'"
        ).fetchone()[0]
        if not found:
            return []
        done = {r[0] for r in store.conn.execute("SELECT name FROM _migrations")}
    return [m.name for m in migrations if m.name not in done]


def pending_features(store: FeatureStore, migrations: list[Migration]) -> list[str]:
    with store._lock, store._guard():
        found = store.conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = '_migrations' "
            "AND table_catalog = current_database()"
        ).fetchone()[0]
        if not found:
            return []
        done = {r[0] for r in store.conn.execute("SELECT name FROM _migrations").fetchall()}
    return [m.name for m in migrations if m.name not in done]
