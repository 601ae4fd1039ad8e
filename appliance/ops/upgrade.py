"""Upgrades of a home: a home made by an earlier release opens, is backed up, and then
migrates forward; a migration that fails puts the home back as it was.

Each migration commits in its own transaction with its record, so a failure in
migration N of a store would leave N-1 applied, and the two stores migrate one after
the other, so a failure in features.duckdb's would leave control.db's applied. Instead,
before the first pending migration of either store runs, the process takes a backup of
the whole home into ``HOME/backups/pre-upgrade-<version>-<time>.falaj-backup`` (once per
process); when a migration raises, both stores are closed and replaced by that backup's
copies, and the error says so. A process killed mid-upgrade is not undone: the next open
applies what is left and audits every migration once (see ``tests/test_crash.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import appliance
from appliance.auth import SYSTEM
from appliance.errors import FalajError, StoreBusy, StoreError
from appliance.ops import backup as backups
from appliance.stores import control as control_store
from appliance.stores import features as features_store
from appliance.stores import snapshots
from appliance.stores.control import FILENAME as CONTROL_FILE
from appliance.stores.features import FILENAME as FEATURES_FILE
from appliance.stores.features import FeatureStore

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("falaj")

BACKUP_ATTR = "_pre_upgrade_backup"  # the Appliance's backup, once taken in this process


class UpgradeFailed(StoreError):
    """A migration failed; the home was put back as it was before the upgrade."""


def pending(store: Any, filename: str) -> list[str]:
    """The migrations ``store`` has not applied; none for a store never migrated."""
    if filename == CONTROL_FILE:
        return snapshots.pending_control(store, control_store.MIGRATIONS)
    return snapshots.pending_features(store, features_store.MIGRATIONS)


def migrate(app: Appliance, store: Any, filename: str) -> list[str]:
    """Apply ``store``'s pending migrations, backing the home up first when it is an
    upgrade (the store was migrated before); the names applied."""
    todo = pending(store, filename)
    if not todo or not in_use(app):
        return store.migrate()  # up to date, or a new home: nothing to keep
    backup = pre_upgrade_backup(app)
    try:
        applied = store.migrate()
    except Exception as exc:  # a failed migration: put both stores back
        reason = exc.message if isinstance(exc, FalajError) else f"{type(exc).__name__}: {exc}"
        reason = (reason.strip().splitlines() or [""])[0]
        roll_back(app, backup)
        raise UpgradeFailed(
            f"{filename}: upgrading to falaj {appliance.__version__} failed ({reason[:300]}); "
            f"the home is as it was before the upgrade (restored from backups/{backup.name})"
        ) from None
    log.warning("upgraded %s: %s (backup first: backups/%s)", filename, ", ".join(applied),
                backup.name)  # fmt: skip
    return applied


def in_use(app: Appliance) -> bool:
    """Whether the home holds anything: both stores exist and an event was recorded (a
    first init killed before its event is finished, not upgraded)."""
    return (app.home / FEATURES_FILE).exists() and not app.control.unused()


def pre_upgrade_backup(app: Appliance) -> Path:
    """A backup of the home as it is before any migration of this process: both stores
    are copied before either migrates."""
    done = app.__dict__.get(BACKUP_ATTR)
    if done is not None:
        return done
    features = app.__dict__.get("features")
    opened = None
    if features is None:
        try:
            opened = features = FeatureStore(app.home / FEATURES_FILE, app.store_key(FEATURES_FILE))
        except StoreBusy:
            raise StoreBusy(
                f"{FEATURES_FILE}: held by another process (an older `falaj run`?); stop it "
                "before upgrading: the upgrade backs the home up first"
            ) from None
    try:
        label = f"pre-upgrade-{appliance.__version__}"
        result = backups.take(app, SYSTEM, label=label, features=features, audit=False)
    finally:
        if opened is not None:
            opened.close()
    path = Path(result["path"])
    app.__dict__[BACKUP_ATTR] = path
    log.warning("upgrade: backed up the home first, to backups/%s", path.name)
    return path


def roll_back(app: Appliance, backup: Path) -> None:
    """Close both stores and put back the backup's copies of them."""
    for name in ("decision_log", "features", "control"):
        obj = app.__dict__.pop(name, None)
        if obj is not None:
            try:
                obj.close()
            except Exception:  # noqa: BLE001 -- the files are replaced next, whatever this says
                log.exception("closing %s before rolling the upgrade back", name)
    scratch = Path(tempfile.mkdtemp(prefix="upgrade-undo-", dir=app.home / "tmp"))
    try:
        backups.unpack(backup, app.master_key, scratch)
        for name in (CONTROL_FILE, FEATURES_FILE):
            for leftover in (f"{name}-wal", f"{name}-shm", f"{name}.wal"):
                (app.home / leftover).unlink(missing_ok=True)
            os.replace(scratch / name, app.home / name)
        if (scratch / f"{FEATURES_FILE}.wal").exists():
            os.replace(scratch / f"{FEATURES_FILE}.wal", app.home / f"{FEATURES_FILE}.wal")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
