"""Backups of a home, and restoring one: one encrypted, signed file.

A backup holds what the home cannot be rebuilt without: ``control.db`` (SQLite's online
backup, still encrypted with its store key), ``features.duckdb`` (checkpointed and copied
by the process that holds it, under its writer lock), the model bundles
(``artifacts/``), the audit checkpoints (``audit/``), the workspace file and the settings
file. Never the master key: the operator keeps it, and restoring needs it.

The copies are taken in the order the stores' crash recovery expects: the checkpoints
first (none may name events the copied chain lacks; the checkpoint writers' lock is held
until control.db is copied, so it indexes exactly the lines copied), then control.db, then
features.duckdb and the bundles, so whatever they hold beyond control.db's audit head
is what a crash would leave, and opening the restored home settles it (an ingest or an
unanswered decision batch without its event is undone; a bundle no version names is
removed). Every decision whose event is in the copied chain is in the copied log.

The file: ``MAGIC``, a plaintext header (format, chunk size, a random salt, and the
fingerprint of the master key that made it, so a foreign backup is named as such), then
a tar stream cut into 1 MiB chunks, each sealed with AES-256-GCM under a key derived
from the master key and the salt. A chunk's nonce is its number and its associated data
the header's hash and whether it is the last chunk, so chunks cannot be reordered, cut
off or spliced from another backup. The tar's first member, ``MANIFEST.json``, names
every member with its size and SHA-256, the stores' row counts, model versions,
migrations and audit head, the Falaj version and the time; ``MANIFEST.sig`` is its
Ed25519 signature by a key derived from the master key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import appliance
from appliance import keys
from appliance.audit.checkpoints import CheckpointLog
from appliance.auth import Actor, require
from appliance.errors import BadInput, CheckFailed, NotFound
from appliance.stores import snapshots

if TYPE_CHECKING:
    from appliance.core import Appliance

MAGIC = b"FALAJ-BACKUP\x00v1\n"
FORMAT = 1
CHUNK = 1 << 20
SUFFIX = ".falaj-backup"
DIR = "backups"
MANIFEST, SIGNATURE = "MANIFEST.json", "MANIFEST.sig"
STORES = ("control.db", "features.duckdb", "features.duckdb.wal")
FILES = ("falaj.yaml", "falaj.toml")  # the workspace and the settings, when present
TREES = ("artifacts", "audit")
HEADER_MAX = 4096


class BackupRefused(CheckFailed):
    """A backup that is damaged, cut short, foreign or not a backup: nothing restored."""


fingerprint = keys.fingerprint  # names a master key, as `falaj rekey`'s event does


def signing_key(master: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(keys.derive(master, "backup-signing"))


def _chunk_key(master: bytes, salt: bytes) -> AESGCM:
    return AESGCM(keys.derive(master, "backup-encryption:" + salt.hex()))


def _aad(header_hash: bytes, last: bool) -> bytes:
    return header_hash + (b"\x01" if last else b"\x00")


def _nonce(n: int) -> bytes:
    return n.to_bytes(12, "big")


# -- the sealed stream --------------------------------------------------------------


class _Sealer(io.RawIOBase):
    """A write-only stream: plaintext in, the sealed file out (``close`` seals the
    last chunk)."""

    def __init__(self, out: BinaryIO, master: bytes) -> None:
        self.out = out
        salt = os.urandom(16)
        header = json.dumps({"format": FORMAT, "chunk": CHUNK, "salt": salt.hex(),
                             "key": fingerprint(master)}).encode()  # fmt: skip
        out.write(MAGIC + struct.pack(">H", len(header)) + header)
        self.hash = hashlib.sha256(MAGIC + header).digest()
        self.aead = _chunk_key(master, salt)
        self.buf = bytearray()
        self.n = 0
        self.sealed = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.buf += data
        while len(self.buf) > CHUNK:  # keep one back: the last chunk is sealed as last
            self._emit(bytes(self.buf[:CHUNK]), last=False)
            del self.buf[:CHUNK]
        return len(data)

    def _emit(self, plain: bytes, last: bool) -> None:
        sealed = self.aead.encrypt(_nonce(self.n), plain, _aad(self.hash, last))
        self.out.write(struct.pack(">I?", len(sealed), last) + sealed)
        self.n += 1

    def finish(self) -> None:
        if not self.sealed:
            self._emit(bytes(self.buf), last=True)
            self.buf.clear()
            self.sealed = True


def read_header(f: BinaryIO, name: str) -> tuple[dict[str, Any], bytes]:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise BackupRefused(f"{name}: not a Falaj backup (its first bytes are not a backup's)")
    raw_len = f.read(2)
    size = struct.unpack(">H", raw_len)[0] if len(raw_len) == 2 else HEADER_MAX + 1
    raw = f.read(size) if size <= HEADER_MAX else b""
    try:
        header = json.loads(raw)
        assert header["format"] == FORMAT and isinstance(header["key"], str)
        bytes.fromhex(header["salt"])
    except Exception:
        raise BackupRefused(f"{name}: damaged: its header does not read") from None
    return header, hashlib.sha256(MAGIC + raw).digest()


class _Opener(io.RawIOBase):
    """A read-only stream of a sealed file's plaintext; every chunk authenticated
    before any of its bytes are handed on."""

    def __init__(self, f: BinaryIO, master: bytes, name: str) -> None:
        self.f, self.name = f, name
        self.header, self.hash = read_header(f, name)
        if self.header["key"] != fingerprint(master):
            raise BackupRefused(
                f"{name}: made with another master key (key {self.header['key']}; this "
                f"key is {fingerprint(master)}): a foreign backup, or give its own key"
            )
        self.aead = _chunk_key(master, bytes.fromhex(self.header["salt"]))
        self.buf = b""
        self.n = 0
        self.done = False

    def readable(self) -> bool:
        return True

    def _next(self) -> None:
        frame = self.f.read(5)
        if len(frame) < 5:
            raise BackupRefused(f"{self.name}: damaged: cut short after chunk {self.n}")
        size, last = struct.unpack(">I?", frame)
        if size > CHUNK + 16:
            raise BackupRefused(f"{self.name}: damaged: chunk {self.n + 1} has a bad length")
        sealed = self.f.read(size)
        if len(sealed) < size:
            raise BackupRefused(f"{self.name}: damaged: cut short in chunk {self.n + 1}")
        try:
            self.buf = self.aead.decrypt(_nonce(self.n), sealed, _aad(self.hash, last))
        except InvalidTag:
            raise BackupRefused(
                f"{self.name}: damaged: chunk {self.n + 1} (of {CHUNK:,} bytes) fails its "
                "authentication tag"
            ) from None
        self.n += 1
        if last:
            if self.f.read(1):
                raise BackupRefused(f"{self.name}: damaged: bytes after its last chunk")
            self.done = True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self.buf and not self.done:
            self._next()
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


# -- taking a backup ------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _copy_tree(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.tmp", ".*"))


def default_name(label: str = "backup") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{label}-{stamp}{SUFFIX}"


def take(app: Appliance, actor: Actor, out: Path | None = None, label: str = "backup",
         features: Any = None, audit: bool = True) -> dict[str, Any]:  # fmt: skip
    """Write a backup of the home (this process must hold features.duckdb, or be given
    ``features``, an open store) to ``out`` or ``HOME/backups/``; its manifest, path and
    size. The file appears whole or not at all. ``audit``: record a ``backup.create``
    event (not for the backup an upgrade takes before control.db has migrated)."""
    require(actor, "backup.create")
    home = app.home
    master = app.master_key
    store = features if features is not None else app.features
    folder = home / "tmp"
    folder.mkdir(exist_ok=True)
    if out is None:
        (home / DIR).mkdir(exist_ok=True)
        out = home / DIR / default_name(label)
    out = Path(out)
    if out.exists():
        raise BadInput(f"{out.name}: exists already; give another --out")
    stage = Path(tempfile.mkdtemp(prefix="backup-", dir=folder))
    partial = out.with_name(f".{out.name}.partial")
    try:
        # The order crash recovery expects (see the module's docstring), under the
        # checkpoint writers' lock: control.db indexes every checkpoint line it copies
        # and no other (a line between the two copies would read as a cut log).
        fresh = not (home / "audit").exists()
        with CheckpointLog(home).locked():
            _copy_tree(home / "audit", stage / "audit")
            with store._lock:  # no features.duckdb commit between the two store copies
                control = snapshots.snapshot_control(
                    home / "control.db", app.store_key("control.db"), stage / "control.db"
                )
                feats = snapshots.snapshot_features(store, stage / "features.duckdb")
        if fresh:  # the lock made the folder: leave the home as it was
            with suppress(OSError):
                (home / "audit").rmdir()
        _copy_tree(home / "artifacts", stage / "artifacts")
        for name in FILES:
            if (home / name).is_file():
                shutil.copy2(home / name, stage / name)
        members = {p.relative_to(stage).as_posix(): {"bytes": p.stat().st_size,
                                                     "sha256": _sha256(p)}
                   for p in sorted(stage.rglob("*")) if p.is_file()}  # fmt: skip
        manifest = {
            "falaj": appliance.__version__,
            "format": FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "created_by": str(actor),
            "label": label,
            "key": fingerprint(master),
            "audit_head": control["audit_head"],
            "models": control["models"],
            "rows": {"control.db": control["rows"], "features.duckdb": feats["rows"]},
            "migrations": {
                "control.db": control["migrations"],
                "features.duckdb": feats["migrations"],
            },  # fmt: skip
            "members": members,
            "master_key": "not included: the operator keeps it; restore needs it",
        }
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        sig = signing_key(master).sign(body)
        with open(partial, "wb") as f:
            sealer = _Sealer(f, master)
            with tarfile.open(fileobj=sealer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, MANIFEST, body)
                _add_bytes(tar, SIGNATURE, sig.hex().encode() + b"\n")
                for name in members:
                    tar.add(stage / name, arcname=name, recursive=False, filter=_plain)
            sealer.finish()
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, out)
        if audit:
            _audit(app, actor, out, label, control["audit_head"], body)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        with suppress(OSError):
            partial.unlink(missing_ok=True)
    return {"path": str(out), "name": out.name, "bytes": out.stat().st_size,
            "manifest": manifest}  # fmt: skip


def _audit(app: Appliance, actor: Actor, out: Path, label: str, head: dict, body: bytes) -> None:
    with app.control.transaction() as tx:  # who took a copy of everything, and of what
        tx.append_audit(actor, "backup.create", out.name, {
            "label": label, "bytes": out.stat().st_size, "audit_head": head,
            "manifest_sha256": hashlib.sha256(body).hexdigest()})  # fmt: skip


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


# -- reading one ------------------------------------------------------------------


def _members(stream: _Opener, name: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    try:
        with tarfile.open(fileobj=io.BufferedReader(stream, CHUNK), mode="r|") as tar:
            for info in tar:
                yield info, tar
    except tarfile.TarError as exc:
        raise BackupRefused(f"{name}: damaged: its archive does not read ({exc})") from None


def _check_signature(master: bytes, body: bytes, sig_hex: bytes, name: str) -> dict[str, Any]:
    public: Ed25519PublicKey = signing_key(master).public_key()
    try:
        public.verify(bytes.fromhex(sig_hex.decode().strip()), body)
    except (InvalidSignature, ValueError, UnicodeDecodeError):
        raise BackupRefused(
            f"{name}: its manifest's signature does not verify with this master key's "
            "backup key: a foreign or altered backup"
        ) from None
    return json.loads(body)


def read_manifest(path: Path, master: bytes) -> dict[str, Any]:
    """The manifest of a backup, its signature checked (reads only its first chunk)."""
    with open(path, "rb") as f:
        stream = _Opener(f, master, path.name)
        got: dict[str, bytes] = {}
        for info, tar in _members(stream, path.name):
            if info.name in (MANIFEST, SIGNATURE):
                got[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
            if len(got) == 2:
                return _check_signature(master, got[MANIFEST], got[SIGNATURE], path.name)
            if info.name not in (MANIFEST, SIGNATURE):
                break
    raise BackupRefused(f"{path.name}: damaged: it has no signed manifest")


def unpack(path: Path, master: bytes, dest: Path) -> dict[str, Any]:
    """Decrypt and unpack a backup into the empty folder ``dest``, checking every chunk's
    tag, the manifest's signature and every member's size and SHA-256; the manifest.
    Raises ``BackupRefused`` (and leaves ``dest`` to the caller to remove) otherwise."""
    name = path.name
    manifest: dict[str, Any] | None = None
    got: dict[str, bytes] = {}
    seen: set[str] = set()
    with open(path, "rb") as f:
        stream = _Opener(f, master, name)
        for info, tar in _members(stream, name):
            if info.name in (MANIFEST, SIGNATURE) and manifest is None:
                got[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
                if len(got) == 2:
                    manifest = _check_signature(master, got[MANIFEST], got[SIGNATURE], name)
                continue
            if manifest is None:
                raise BackupRefused(f"{name}: damaged: its manifest is not its first member")
            expected = manifest["members"].get(info.name)
            if expected is None or not info.isfile() or info.name in seen:
                raise BackupRefused(
                    f"{name}: holds {info.name!r}, which its manifest does not name"
                )
            seen.add(info.name)
            target = dest / info.name  # a manifest-named, signed path: no '..' can reach here
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            h = hashlib.sha256()
            src = tar.extractfile(info)
            with open(target, "wb") as out:
                while block := src.read(CHUNK):  # type: ignore[union-attr]
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != expected["sha256"] or info.size != expected["bytes"]:
                raise BackupRefused(f"{name}: damaged: {info.name} does not match its SHA-256")
        if not stream.done:
            raise BackupRefused(f"{name}: damaged: cut short")
    if manifest is None:
        raise BackupRefused(f"{name}: damaged: it has no signed manifest")
    missing = sorted(set(manifest["members"]) - seen)
    if missing:
        raise BackupRefused(f"{name}: damaged: missing {', '.join(missing[:3])}")
    return manifest


def verify(path: Path, master: bytes) -> dict[str, Any]:
    """Read a whole backup as a restore would, writing nothing that stays."""
    scratch = Path(tempfile.mkdtemp(prefix="verify-"))
    try:
        return unpack(path, master, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def listing(app: Appliance, actor: Actor) -> list[dict[str, Any]]:
    """The backups in ``HOME/backups``, newest first: name, size, and the manifest's
    summary with its signature checked."""
    require(actor, "backup.create")
    folder = app.home / DIR
    out = []
    paths = sorted(folder.glob("*" + SUFFIX), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in paths if folder.is_dir() else []:
        item: dict[str, Any] = {"name": p.name, "bytes": p.stat().st_size}
        try:
            m = read_manifest(p, app.master_key)
            item |= {"signature": "verified", "created": m["created"], "falaj": m["falaj"],
                     "label": m.get("label", ""), "audit_head": m["audit_head"],
                     "models": m["models"], "members": len(m["members"]),
                     "rows": m["rows"]}  # fmt: skip
        except BackupRefused as exc:
            item |= {"signature": "failed", "problem": exc.message.split(": ", 1)[-1]}
        out.append(item)
    return out


def backup_path(app: Appliance, name: str) -> Path:
    """The file of one listed backup, by name (nothing outside ``HOME/backups``)."""
    if "/" in name or "\\" in name or not name.endswith(SUFFIX) or name.startswith("."):
        raise BadInput(f"backup {name!r}: not a backup's name (NAME{SUFFIX})")
    path = app.home / DIR / name
    if not path.is_file():
        raise NotFound(f"backup {name!r}: no such backup")
    return path


# -- restoring ------------------------------------------------------------------------


def restore(path: Path, target: Path, master: bytes, actor: Actor,
            write_key: bool = True) -> dict[str, Any]:  # fmt: skip
    """Restore a backup into ``target`` (absent or empty), checked whole before the
    home appears: every chunk, the signature, every member's hash, then the restored
    stores read page by page and the audit chain verified from its first event. With
    ``write_key`` the master key is written to the new home's ``keys/master.key`` (for a
    key given as a file); without it the home is opened with the configured key (a
    systemd credential, ``master_key_file``)."""
    require(actor, "backup.restore")
    from appliance.core import Appliance

    target = Path(target).resolve()
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BadInput(f"{target.name}: not empty; restore into a new or empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.restoring-", dir=target.parent))
    try:
        manifest = unpack(path, master, stage)
        settings: dict[str, Any] = {"home": str(stage)}
        if write_key:
            (stage / "keys").mkdir(mode=0o700)
            fd = os.open(stage / "keys" / "master.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(master.hex() + "\n")
        restored = Appliance.open(settings)  # with the backup's falaj.toml, if it had one
        try:
            restored.check(actor)
            chain = restored.audit.verify(actor, full=True)
            if not chain.ok:
                raise BackupRefused(f"{path.name}: its audit chain does not verify: {chain.reason}")
            facts = snapshots.read_control_facts(stage / "control.db",
                                                 restored.store_key("control.db"))  # fmt: skip
            with restored.control.transaction() as tx:
                tx.append_audit(actor, "home.restore", path.name, {
                    "backup_created": manifest["created"], "falaj": manifest["falaj"],
                    "audit_head": manifest["audit_head"], "models": manifest["models"]})  # fmt: skip
        finally:
            restored.close()
        if target.exists():
            target.rmdir()
        os.rename(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return {"home": str(target), "backup": path.name, "created": manifest["created"],
            "falaj": manifest["falaj"], "audit_head": manifest["audit_head"],
            "models": facts["models"], "key_written": write_key}  # fmt: skip
