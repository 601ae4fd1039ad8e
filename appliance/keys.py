"""The master key and the per-store keys derived from it with HKDF.

The master key comes from, in order: ``FALAJ_MASTER_KEY_FILE`` (the ``master_key_file``
setting), systemd's ``$CREDENTIALS_DIRECTORY/falaj-master-key`` (``LoadCredential=``),
or ``$FALAJ_HOME/keys/master.key``, which ``falaj init`` generates (mode 0600) when no
other source is given. A key file holds 32 raw bytes or 64 hex digits.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import KeyMissing
from appliance.files import publish

KEY_BYTES = 32
CREDENTIAL_NAME = "falaj-master-key"


def default_key_path(home: Path) -> Path:
    return home / "keys" / "master.key"


def key_source(home: Path, key_file: str = "") -> Path:
    """The file the master key is read from (it may not exist yet)."""
    if key_file:
        return Path(key_file)
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).exists():
        return Path(cred_dir) / CREDENTIAL_NAME
    return default_key_path(home)


def read_key(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyMissing(
            f"master key: {path} does not exist; give the key with FALAJ_MASTER_KEY_FILE "
            "or restore the file (run `falaj init` only for a new home)"
        ) from None
    except PermissionError:
        raise KeyMissing(f"master key: {path} is not readable by this user") from None
    text = raw.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(raw) == KEY_BYTES:
        return raw
    raise KeyMissing(
        f"master key: {path} must hold {KEY_BYTES} bytes or {2 * KEY_BYTES} hex digits"
    )


def create_key(path: Path) -> bytes:
    """Generate a master key into ``path`` with mode 0600, atomically; never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.link(tmp, path)  # fails if a key appeared meanwhile: never overwrite a key
    os.unlink(tmp)
    return key


def write_key(path: Path, key: bytes) -> None:
    """Write ``key`` (hex) to ``path`` with mode 0600 atomically: a temporary file in the
    same folder, fsynced, renamed over ``path``, the folder fsynced."""
    publish(path, key.hex() + "\n")


def is_credential(path: Path) -> bool:
    """True when the key is systemd's credential (read-only: rotated with systemd-creds)."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(cred_dir) and Path(path).parent == Path(cred_dir)


def fingerprint(master: bytes) -> str:
    """Names a master key without revealing anything of it (audit events, backups)."""
    return hashlib.sha256(derive(master, "fingerprint")).hexdigest()[:16]


def derive(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose ('features.duckdb', 'control.db', 'bundle-signing')."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=b"falaj/v1", info=purpose.encode()
    )
    return hkdf.derive(master)


def signing_key(master: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(derive(master, "bundle-signing"))
