"""``falaj rekey``: rotate the master key and everything keyed by it.

A new master key is made, and under it: a re-encrypted copy of control.db (SQLCipher
``PRAGMA rekey`` on a copy), of features.duckdb (``COPY FROM DATABASE`` into a new file
with the new key) and of every model bundle (verified with the old keys, re-encrypted
and re-signed with the new ones), with the bundles' new manifests and a ``keys.rotated``
audit event (the old and new keys' fingerprints, never the keys) written into the new
control.db. Everything is staged under ``HOME/.rekey/`` while the stores are held
exclusively; nothing live has changed yet.

Then the commit point: ``HOME/.rekey/journal.json`` is written (atomically). From there
the rotation only goes forward: the staged files are renamed over the live ones and the
new key over the old key file, then the audit helper's checkpoint key rotates (a line in
the checkpoint log signed by both keys) and the staging folder goes. A crash at any
point leaves a home that opens: before the journal, with the old key (the next open
throws the staged copies away); after it, with the new one (the next open finishes the
renames, before it reads the key, and the rotation of the checkpoint key once the stores
are open). Every step of the roll-forward can be repeated.

The key is written where it was read: ``HOME/keys/master.key`` or the
``FALAJ_MASTER_KEY_FILE`` file (a new file beside it, renamed over it). A systemd
credential is read-only: rekey refuses and prints the ``systemd-creds`` steps.
"""

from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance import faults, keys
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import BadInput, BundleTampered, CheckFailed
from appliance.files import fsync_path, publish
from appliance.registry import bundles
from appliance.stores import ControlStore, FeatureStore
from appliance.stores import rekey as store_rekey
from appliance.stores.control import FILENAME as CONTROL_FILE
from appliance.stores.features import FILENAME as FEATURES_FILE

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("falaj")

STAGE = ".rekey"
LOCK = ".rekey.lock"  # held by the process rotating or recovering (flock)
JOURNAL = "journal.json"
OLD_KEY = "old.key"  # the old key, kept (0600) until the checkpoint key has rotated
STORES = (CONTROL_FILE, FEATURES_FILE)
SIDE_FILES = {CONTROL_FILE: ("-wal", "-shm"), FEATURES_FILE: (".wal",)}

CREDENTIAL_STEPS = """\
master key: it comes from systemd's credential ({path}), which this process cannot
rewrite. Rotate it with systemd-creds, as root:
  systemctl stop falaj
  install -d -m 0700 /run/falaj-rekey
  systemd-creds decrypt /etc/credstore.encrypted/falaj-master-key /run/falaj-rekey/master.key
  FALAJ_MASTER_KEY_FILE=/run/falaj-rekey/master.key falaj --home HOME rekey
  systemd-creds encrypt --name=falaj-master-key /run/falaj-rekey/master.key \\
      /etc/credstore.encrypted/falaj-master-key
  shred -u /run/falaj-rekey/master.key
  systemctl start falaj"""


def new_key_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".new")


def _journal(home: Path) -> dict[str, Any] | None:
    path = home / STAGE / JOURNAL
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a journal cut short never committed: it is written by rename


def _write_journal(home: Path, record: dict[str, Any]) -> None:
    publish(home / STAGE / JOURNAL, json.dumps(record))


def pending(home: Path) -> str | None:
    """The state of an unfinished rotation: None, or the journal's state."""
    j = _journal(home)
    return j["state"] if j else ("staged" if (home / STAGE).exists() else None)


def recover(home: Path, key_path: Path) -> str | None:
    """Before the master key is read: finish or undo what a crash left of a rotation.
    'discarded' (before its commit point: the old key holds), 'rolled forward' (the
    files and the key renamed into place), or None (nothing pending)."""
    stage = home / STAGE
    staged_key = new_key_path(key_path)
    if not stage.exists() and not staged_key.exists():
        return None
    lock = _try_lock(home)
    if lock is None:
        return None  # another process is rotating: its store locks keep this one out
    try:
        return _recover(home, key_path)
    finally:
        os.close(lock)


def _try_lock(home: Path) -> int | None:
    fd = os.open(home / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _recover(home: Path, key_path: Path) -> str | None:
    journal = _journal(home)
    if journal is None:
        _discard(home, key_path)
        log.warning("rekey: an interrupted key rotation was undone; the old key holds")
        return "discarded"
    if journal["state"] == "commit":
        _roll_forward(home, journal)
        log.warning("rekey: an interrupted key rotation was completed; the new key holds")
        return "rolled forward"
    return None  # 'swapped': only the checkpoint key's rotation is left (finish)


def _discard(home: Path, key_path: Path) -> None:
    new_key_path(key_path).unlink(missing_ok=True)
    for tmp in key_path.parent.glob(glob.escape(key_path.name) + ".new.*tmp"):
        tmp.unlink(missing_ok=True)  # a new key's write cut short (files.publish)
    _shred(home / STAGE / OLD_KEY)
    shutil.rmtree(home / STAGE, ignore_errors=True)


def _shred(path: Path) -> None:
    """Overwrite a key file before unlinking it (best effort on flash storage)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
    except FileNotFoundError:
        pass


def _roll_forward(home: Path, journal: dict[str, Any]) -> None:
    """Rename every staged file over its live one, then the new key over the old; each
    step is skipped once done, so this can run again after a crash in the middle."""
    stage = home / STAGE
    for name in STORES:
        staged = stage / name
        if staged.exists():
            for suffix in SIDE_FILES[name]:  # the old file's (empty, checkpointed) log
                (home / (name + suffix)).unlink(missing_ok=True)
            os.replace(staged, home / name)
            fsync_path(home)
            faults.point("rekey.swapping")
    for rel in journal["bundles"]:
        staged, live, old = stage / rel, home / rel, stage / "old" / rel
        if staged.exists():
            if live.exists():
                old.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(old, ignore_errors=True)
                os.rename(live, old)
            os.rename(staged, live)
            fsync_path(live.parent)
    key_file = Path(journal["key_file"])
    staged_key = new_key_path(key_file)
    if staged_key.exists():
        os.replace(staged_key, key_file)
        fsync_path(key_file.parent)
    shutil.rmtree(stage / "old", ignore_errors=True)
    _write_journal(home, journal | {"state": "swapped"})
    faults.point("rekey.swapped")


def finish(app: Appliance, actor: Actor = SYSTEM) -> dict[str, Any] | None:
    """Once the stores are open under the new key: rotate the audit checkpoint key (the
    audit service signs a line with the old and the new key) and remove the staging
    folder with the old key. None when no rotation is pending."""
    journal = _journal(app.home)
    if journal is None or journal["state"] != "swapped" or app.__dict__.get("_rekey_finishing"):
        return None  # (opening control.db below calls this again: once is enough)
    app.__dict__["_rekey_finishing"] = True
    stage = app.home / STAGE
    rotated: dict[str, Any] | str = "skipped: the audit service has no rotate_checkpoint_key"
    rotate = getattr(app.audit, "rotate_checkpoint_key", None)
    if rotate is not None:
        old = keys.read_key(stage / OLD_KEY)
        rotated = rotate(old, app.master_key, actor)
    _shred(stage / OLD_KEY)
    shutil.rmtree(stage, ignore_errors=True)
    fsync_path(app.home)
    return {"checkpoint_key": rotated}


def rotate(app: Appliance, actor: Actor, say=lambda msg: None) -> dict[str, Any]:
    """Rotate the master key of ``app``'s home; see the module's docstring."""
    require(actor, "keys.rotate")
    home, key_path = app.home, app.key_path
    if keys.is_credential(key_path):
        raise BadInput(CREDENTIAL_STEPS.format(path=key_path))
    old = app.master_key  # reading it finishes or undoes an interrupted rotation
    if pending(home) == "swapped":  # left with only the checkpoint key to rotate
        finish(app, actor)
    app.close()  # the stores are held below, exclusively, by their own connections
    if not os.access(key_path.parent, os.W_OK):
        raise BadInput(f"master key: cannot write a new key beside {key_path.name} (its "
                       "folder is read-only); give a writable FALAJ_MASTER_KEY_FILE")  # fmt: skip
    new = secrets.token_bytes(keys.KEY_BYTES)
    lock = _try_lock(home)
    if lock is None:
        raise BadInput("rekey: another process is rotating this home's key")
    try:
        return _rotate(app, actor, say, old, new)
    finally:
        (home / LOCK).unlink(missing_ok=True)
        os.close(lock)


def _rotate(app: Appliance, actor: Actor, say, old: bytes, new: bytes) -> dict[str, Any]:
    home, key_path, stage = app.home, app.key_path, app.home / STAGE
    committed = False
    # held from the copy to the commit point: nothing else writes control.db meanwhile
    locked = store_rekey.lock_control(home / CONTROL_FILE, keys.derive(old, CONTROL_FILE))
    try:
        stage.mkdir(mode=0o700)
        keys.write_key(stage / OLD_KEY, old)
        keys.write_key(new_key_path(key_path), new)
        journal = _stage(home, locked, old, new, actor, say)
        journal["key_file"] = str(key_path)
        faults.point("rekey.staged")
        _write_journal(home, journal)  # the commit point
        committed = True
    finally:
        locked.close()
        if not committed:
            _discard(home, key_path)
    faults.point("rekey.committed")
    say("committed; renaming the new stores, bundles and key into place")
    _roll_forward(home, journal)
    reopened = type(app)(app.settings)
    try:
        finished = finish(reopened, actor) or {}
        reopened.control  # noqa: B018 -- opens (and checks) under the new key
    finally:
        reopened.close()
    return {
        "old_key": journal["old_key"], "new_key": journal["new_key"],
        "key_file": "FALAJ_MASTER_KEY_FILE" if app.settings["master_key_file"] else
                    str(key_path.relative_to(home)),
        "rows": journal["rows"], "bundles": len(journal["bundles"]),
        "checkpoint_key": finished.get("checkpoint_key"),
    }  # fmt: skip


def _stage(home: Path, locked: Any, old: bytes, new: bytes, actor: Actor,
           say) -> dict[str, Any]:  # fmt: skip
    """The new stores and bundles under HOME/.rekey, the event in the new control.db."""
    stage = home / STAGE
    features = FeatureStore(home / FEATURES_FILE, keys.derive(old, FEATURES_FILE))
    try:
        f_rows = store_rekey.copy_features(features, stage / FEATURES_FILE,
                                           keys.derive(new, FEATURES_FILE))  # fmt: skip
    finally:
        features.close()
    say(f"features.duckdb: {sum(f_rows.values())} rows in {len(f_rows)} tables re-encrypted")
    c_rows = store_rekey.copy_control(locked, home / CONTROL_FILE, stage / CONTROL_FILE,
                                      keys.derive(old, CONTROL_FILE),
                                      keys.derive(new, CONTROL_FILE))  # fmt: skip
    say(f"control.db: {sum(c_rows.values())} rows in {len(c_rows)} tables re-encrypted")
    control = ControlStore(stage / CONTROL_FILE, keys.derive(new, CONTROL_FILE))
    try:
        old_signer, new_signer = keys.signing_key(old), keys.signing_key(new)
        old_cipher = AESGCM(keys.derive(old, "bundle-encryption"))
        new_cipher = AESGCM(keys.derive(new, "bundle-encryption"))
        manifests, paths = {}, []
        for v in control.model_versions():
            label = f"bundle {v['name']}@{v['version']}"
            try:
                files = bundles.verify(home / v["path"], old_signer.public_key(),
                                       v["manifest_sha256"], label=label, cipher=old_cipher)  # fmt: skip
            except BundleTampered as exc:
                raise CheckFailed(f"{exc.message}; rekey re-signs only bundles that verify, "
                                  "nothing changed") from None  # fmt: skip
            target = stage / v["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            manifests[(v["name"], v["version"])] = bundles.write(target, files, new_signer,
                                                                 new_cipher)  # fmt: skip
            paths.append(v["path"])
        say(f"{len(paths)} bundles re-encrypted and re-signed")
        record = {"old_key": keys.fingerprint(old), "new_key": keys.fingerprint(new),
                  "rows": {FEATURES_FILE: sum(f_rows.values()),
                           CONTROL_FILE: sum(c_rows.values())},
                  "bundles": paths}  # fmt: skip
        with control.transaction() as tx:
            for (name, version), sha in manifests.items():
                tx.set_manifest(name, version, sha)
            tx.append_audit(actor, "keys.rotated", "master key",
                            {"old_key": record["old_key"], "new_key": record["new_key"],
                             "rows": record["rows"], "bundles": len(paths)})  # fmt: skip
    finally:
        control.close()
    for name in STORES:
        for suffix in SIDE_FILES[name]:
            if (stage / (name + suffix)).exists():
                raise CheckFailed(f"{name}: the re-encrypted copy kept a write-ahead log; "
                                  "nothing changed")  # fmt: skip
    return record | {"state": "commit"}
