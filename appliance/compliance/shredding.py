"""Crypto-shredding: personal columns are encrypted per subject, so erasing a subject
is deleting one key.

The workspace declares a table's personal columns (``tables: T: personal: [full_name,
email]``). At ingest each of their values is encrypted with the subject's own key
(AES-256-GCM, a random 96-bit nonce, AAD = table, column and subject) and stored as a
BLOB: ``0x01 | nonce | ciphertext+tag``. The keys live in control.db's
``subject_keys`` (control.db is itself encrypted by the store key). Erasure deletes the
key: the ciphertext stays where it is, the audit chain is untouched, and nothing can
read those values again (a new key made for a later ingest cannot open them: the GCM
tag fails). Rows in the quarantine keep no personal plaintext: their personal values
read ``[personal: withheld]``.

Rows of subjects whose consent for ``model-training`` is withdrawn are not taken in:
they go to the quarantine with the rule ``consent`` (the decision the issue left open:
no new processing, yet nothing sent is lost silently; releasing them is an explicit,
audited act).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.auth import SYSTEM
from appliance.ingest.validate import Checked, as_text
from appliance.stores import ControlStore
from appliance.stores.control import now
from appliance.stores.staging import ROW

VERSION = b"\x01"
ERASED = "[erased]"
ENCRYPTED = "[encrypted]"
WITHHELD = "[personal: withheld]"
TRAINING = "model-training"


def aad(table: str, column: str, subject: str) -> bytes:
    return "\x1f".join((table, column, subject)).encode()


def seal(key: bytes | AESGCM, table: str, column: str, subject: str, value: str) -> bytes:
    aes = key if isinstance(key, AESGCM) else AESGCM(key)
    nonce = os.urandom(12)
    return VERSION + nonce + aes.encrypt(nonce, value.encode(), aad(table, column, subject))


def unseal(key: bytes | None, table: str, column: str, subject: str, blob: bytes) -> str | None:
    """The plaintext, or None when the key is gone or does not open it (erased)."""
    if key is None or len(blob) < 29 or blob[:1] != VERSION:
        return None
    try:
        return AESGCM(key).decrypt(blob[1:13], blob[13:], aad(table, column, subject)).decode()
    except InvalidTag:
        return None


class Shredder:
    """Per-subject keys: made at ingest, used by exports and rectifications, deleted by
    erasure."""

    def __init__(self, control: ControlStore, withdrawn: Any = None) -> None:
        self.control = control
        self._withdrawn = withdrawn  # () -> {purpose: {subject}} (the consent registry's)

    def keys(self, subjects: Iterable[str]) -> dict[str, bytes]:
        return self.control.subject_key_rows(sorted(set(subjects)))

    def ensure_keys(self, table: str, subjects: list[str]) -> dict[str, bytes]:
        """Every subject's key, making the missing ones (one audited control.db write)."""
        subjects = sorted(set(subjects))
        if not subjects:
            return {}
        with self.control.transaction() as tx:
            keys = tx.subject_keys_for(subjects)
            new = {s: AESGCM.generate_key(256) for s in subjects if s not in keys}
            if new:
                tx.add_subject_keys(new, now())
                tx.append_audit(SYSTEM, "subject.keys", table, {"created": len(new)})
        return keys | new

    def protect(
        self, table: str, entity: str, personal: tuple[str, ...], checked: Iterable[Checked]
    ) -> Iterator[Checked]:
        """Ingest's hook over its checked batches: rows of subjects who withdrew consent
        for model training are moved to the quarantine (rule ``consent``), personal
        values are sealed with their subject's key, and quarantined rows keep none."""
        withdrawn = (self._withdrawn() if self._withdrawn else {}).get(TRAINING, set())
        for ch in checked:
            landed = ch.landed
            if withdrawn and landed.num_rows:
                subjects = pc.cast(landed.column(entity), pa.string())
                out = pc.is_in(subjects, value_set=pa.array(sorted(withdrawn), pa.string()))
                if pc.any(out).as_py():
                    for r in landed.filter(out).to_pylist():
                        ch.failed.append({
                            "row": r[ROW],
                            "values": {c: as_text(v) for c, v in r.items() if c != ROW},
                            "reasons": [{"rule": "consent", "message":
                                         f"{entity}: subject {as_text(r[entity])} withdrew "
                                         f"consent for {TRAINING}"}],
                        })  # fmt: skip
                        ch.counts.update(["consent"])
                    landed = landed.filter(pc.invert(out))
            for f in ch.failed:
                for c in personal:
                    if f["values"].get(c) is not None:
                        f["values"][c] = WITHHELD
            if personal:  # even with no rows: every batch streams in one schema
                landed = self.seal_columns(table, entity, personal, landed)
            ch.landed = landed
            yield ch

    def seal_columns(
        self, table: str, entity: str, personal: tuple[str, ...], rows: pa.Table
    ) -> pa.Table:
        subjects = [as_text(v) for v in rows.column(entity).to_pylist()]
        keys = self.ensure_keys(table, [s for s in subjects if s is not None])
        keys = {s: AESGCM(k) for s, k in keys.items()}  # one cipher object per subject
        for c in personal:
            if c not in rows.column_names:
                continue
            values = rows.column(c).to_pylist()
            sealed = [
                None if v is None or s is None else seal(keys[s], table, c, s, as_text(v))
                for s, v in zip(subjects, values, strict=True)
            ]
            rows = rows.set_column(rows.schema.get_field_index(c), c, pa.array(sealed, pa.binary()))
        return rows

    def open_rows(
        self, table: str, entity: str, personal: tuple[str, ...], rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Rows with their personal values decrypted; an erased subject's read ``[erased]``."""
        if not personal or not rows:
            return rows
        keys = self.keys(as_text(r[entity]) for r in rows if r.get(entity) is not None)
        for r in rows:
            s = as_text(r.get(entity))
            for c in personal:
                blob = r.get(c)
                if isinstance(blob, bytes | bytearray | memoryview):
                    text = unseal(keys.get(s or ""), table, c, s or "", bytes(blob))
                    r[c] = ERASED if text is None else text
        return rows

    @staticmethod
    def masked(personal: tuple[str, ...], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows with their personal values shown as ``[encrypted]`` (never bytes)."""
        for r in rows:
            for c in personal:
                if r.get(c) is not None:
                    r[c] = ENCRYPTED
        return rows
