"""Model bundles on disk: written once, published atomically, signed, verified on load.

A bundle is a folder ``artifacts/NAME/vN/`` holding JSON files, a ``MANIFEST`` of
their SHA-256 sums and ``MANIFEST.sig``, an Ed25519 signature of the manifest by a key
derived from the master key. A fitted pipeline holds values of the data (category
names), so each file is stored encrypted with AES-256-GCM under another key derived from
the master key, its name bound as associated data; the manifest sums the stored bytes,
so tampering is found before anything is decrypted. (Bundles written before encryption
are read as they are.) It is built in a temporary folder beside its final place,
fsynced, then renamed into place, so a crash never leaves half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import BundleTampered
from appliance.files import fsync_path

MANIFEST = "MANIFEST"
SIGNATURE = "MANIFEST.sig"
SEALED = b"FALAJ-AESGCM-1\n"  # leads every encrypted file
NONCE_BYTES = 12


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def manifest_text(files: dict[str, bytes]) -> bytes:
    return "".join(f"{sha256_bytes(files[n])}  {n}\n" for n in sorted(files)).encode()


def _encode(doc: Any) -> bytes:
    if isinstance(doc, bytes):
        return doc
    if isinstance(doc, str):
        return doc.encode()
    return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def seal(cipher: AESGCM, name: str, data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return SEALED + nonce + cipher.encrypt(nonce, data, name.encode())


def unseal(cipher: AESGCM | None, name: str, data: bytes, label: str) -> bytes:
    if not data.startswith(SEALED):
        return data  # a bundle from before encryption
    if cipher is None:
        raise BundleTampered(f"{label}: {name} is encrypted and no key was given")
    body = data[len(SEALED) :]
    try:
        return cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], name.encode())
    except InvalidTag:
        raise BundleTampered(f"{label}: {name} does not decrypt with this home's key") from None


def write(
    target: Path, documents: dict[str, Any], key: Ed25519PrivateKey, cipher: AESGCM | None = None
) -> str:
    """Publish ``documents`` (file name -> JSON value, or text/bytes written as they are,
    such as LightGBM's own model format) as a bundle at ``target``.

    Returns the SHA-256 of the manifest, which the registry records.
    """
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    files = {name: _encode(doc) for name, doc in documents.items()}
    if cipher is not None:
        files = {name: seal(cipher, name, data) for name, data in files.items()}
    manifest = manifest_text(files)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for name, data in files.items():
            fsync_write(tmp / name, data)
        fsync_write(tmp / MANIFEST, manifest)
        fsync_write(tmp / SIGNATURE, key.sign(manifest).hex().encode() + b"\n")
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sha256_bytes(manifest)


def verify(
    path: Path,
    public_key: Ed25519PublicKey,
    manifest_sha256: str | None = None,
    label: str | None = None,
    cipher: AESGCM | None = None,
) -> dict[str, bytes]:
    """Check signature, manifest and every file; return the files' contents, decrypted.

    Raises ``BundleTampered`` naming the first thing that does not match; ``label``
    (say ``bundle credit@2``) names the bundle in errors instead of its server path.
    """
    label = label or f"bundle {path}"
    try:
        manifest = (path / MANIFEST).read_bytes()
        signature = bytes.fromhex((path / SIGNATURE).read_text().strip())
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise BundleTampered(f"{label}: {Path(exc.filename).name} is missing") from None
    except (ValueError, UnicodeDecodeError):
        raise BundleTampered(f"{label}: {SIGNATURE} is not a hex signature") from None
    if manifest_sha256 is not None and sha256_bytes(manifest) != manifest_sha256:
        raise BundleTampered(f"{label}: {MANIFEST} differs from the one registered")
    try:
        public_key.verify(signature, manifest)
    except InvalidSignature:
        raise BundleTampered(f"{label}: {MANIFEST} signature does not verify") from None
    expected: dict[str, str] = {}
    for line in manifest.decode().splitlines():
        digest, _, name = line.partition("  ")
        expected[name] = digest
    try:
        present = {p.name for p in path.iterdir()} - {MANIFEST, SIGNATURE}
    except OSError:
        raise BundleTampered(f"{label}: its folder cannot be read") from None
    extra = sorted(present - set(expected))
    if extra:
        raise BundleTampered(f"{label}: {extra[0]} is not listed in {MANIFEST}")
    contents = {}
    for name, digest in expected.items():
        try:
            data = (path / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise BundleTampered(f"{label}: {name} is missing") from None
        if sha256_bytes(data) != digest:
            raise BundleTampered(f"{label}: {name} does not match its SHA-256 in {MANIFEST}")
        contents[name] = unseal(cipher, name, data, label)
    return contents


def remove(path: Path) -> None:
    """Withdraw a bundle whose registration did not commit."""
    shutil.rmtree(path, ignore_errors=True)
