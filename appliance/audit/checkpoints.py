"""Signed checkpoints of the audit chain, one JSON line each in an append-only file
outside the store (``HOME/audit/checkpoints.log``).

A checkpoint says: the chain's first ``size`` events have Merkle root ``root`` (RFC 6962,
leaves the events' chain hashes) and event ``size`` has chain hash ``head``, at ``time``,
signed with Ed25519 by a key derived from the master key (``audit-checkpoint``). Each
line carries its public key, so anyone can check it with nothing but the file.

A rotation line (``falaj rekey``) names the next key and is signed by both the old and
the new key, so the keys form one chain from the file's first line: a verifier trusts
the first key (or one it was given) and follows rotations from there.

Lines are canonical JSON; the signature covers the line without its ``sig`` (and
``new_sig``) fields, prefixed by ``DOMAIN``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.audit.chain import canonical_json
from appliance.files import publish

LOG_DIR = "audit"
LOG_FILE = "checkpoints.log"
KEY_PURPOSE = "audit-checkpoint"
DOMAIN = b"falaj-audit-checkpoint/v1\n"
UNSIGNED = ("sig", "new_sig")


def private_key(derived: bytes) -> Ed25519PrivateKey:
    """The checkpoint key from ``keys.derive(master, KEY_PURPOSE)``."""
    return Ed25519PrivateKey.from_private_bytes(derived)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def signed_bytes(record: dict[str, Any]) -> bytes:
    return DOMAIN + canonical_json({k: v for k, v in record.items() if k not in UNSIGNED}).encode()


def good_signature(public_hex: str, sig_hex: str, record: dict[str, Any]) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(sig_hex), signed_bytes(record)
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def checkpoint_record(key: Ed25519PrivateKey, size: int, root: bytes, head: str, time: str) -> dict:
    pub = public_bytes(key)
    record = {"kind": "checkpoint", "size": size, "root": root.hex(), "head": head, "time": time,
              "key_id": key_id(pub), "public_key": pub.hex()}  # fmt: skip
    return record | {"sig": key.sign(signed_bytes(record)).hex()}


def rotation_record(old: Ed25519PrivateKey, new: Ed25519PrivateKey, time: str) -> dict:
    old_pub, new_pub = public_bytes(old), public_bytes(new)
    record = {"kind": "rotation", "time": time, "key_id": key_id(old_pub),
              "public_key": old_pub.hex(), "new_key_id": key_id(new_pub),
              "new_public_key": new_pub.hex()}  # fmt: skip
    body = signed_bytes(record)
    return record | {"sig": old.sign(body).hex(), "new_sig": new.sign(body).hex()}


@dataclass(frozen=True)
class KeyCheck:
    ok: bool
    reason: str = ""
    key: str = ""  # the public key (hex) in force after the lines checked


def check_lines(records: list[dict[str, Any]], trusted: str | None = None,
                every: bool = True) -> KeyCheck:  # fmt: skip
    """Follow the key chain through ``records`` (in file order): each checkpoint signed
    by the key in force, each rotation by it and by the next. ``trusted``: the first
    key (hex) to accept, else the first line's. ``every`` False checks the signatures
    of rotations and the last checkpoint only (the others were checked before)."""
    current = trusted
    last = max((i for i, r in enumerate(records) if r.get("kind") == "checkpoint"), default=-1)
    for i, r in enumerate(records, 1):
        kind = r.get("kind")
        if kind not in ("checkpoint", "rotation"):
            return KeyCheck(False, f"checkpoint line {i}: unknown kind {kind!r}")
        pub = r.get("public_key", "")
        if current is None:
            current = pub
        if pub != current:
            return KeyCheck(False, f"checkpoint line {i} is signed by key {r.get('key_id')}, "
                                   "not by the key in force there (no rotation names it)")  # fmt: skip
        if r.get("key_id") != _key_id_hex(pub):
            return KeyCheck(False, f"checkpoint line {i}: its key_id does not match its key")
        if kind == "checkpoint" and not every and i - 1 != last:
            continue
        if not good_signature(pub, r.get("sig", ""), r):
            return KeyCheck(False, f"checkpoint line {i}: bad signature")
        if kind == "rotation":
            new = r.get("new_public_key", "")
            if r.get("new_key_id") != _key_id_hex(new) or not good_signature(
                new, r.get("new_sig", ""), r
            ):
                return KeyCheck(False, f"checkpoint line {i}: rotation not signed by the new key")
            current = new
    return KeyCheck(True, key=current or "")


def _key_id_hex(public_hex: str) -> str:
    try:
        return key_id(bytes.fromhex(public_hex))
    except ValueError:
        return ""


class CheckpointLog:
    """The append-only file: one canonical JSON line per checkpoint or rotation."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOG_DIR / LOG_FILE

    def exists(self) -> bool:
        return self.path.exists()

    def lines(self) -> list[str]:
        """The complete lines (a last line a crash left without its newline is not one)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        text = data.decode("utf-8", errors="replace")
        return text.split("\n")[:-1]

    def records(self) -> list[dict[str, Any]]:
        out = []
        for i, line in enumerate(self.lines(), 1):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"kind": "unreadable", "line_no": i}
            out.append(rec if isinstance(rec, dict) else {"kind": "unreadable", "line_no": i})
        return out

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time, across processes (the scheduler and a CLI)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the lock

    def append(self, line: str) -> int:
        """Append one line and fsync it (call under ``locked``); its line number."""
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size:  # a line a crash cut short is dropped, not continued
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        data = self.path.read_bytes()
                        os.ftruncate(fd, data.rfind(b"\n") + 1)
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return len(self.lines())

    def copy_to(self, target: Path) -> Path:
        """The whole log, published atomically at ``target`` (a folder: inside it)."""
        target = Path(target)
        if target.is_dir():
            target = target / LOG_FILE
        return publish(target, self.path.read_bytes())


def line_of(record: dict[str, Any]) -> str:
    return canonical_json(record)
