"""Check a Falaj audit export, or a receipt's proof, with nothing but the file.

    python -m appliance.audit.verify_export audit.json [--key PUBLIC_KEY_HEX]
    python appliance/audit/verify_export.py proof.json   # this file alone works too

Needs no store, no key and no network, and imports nothing from Falaj: only the Python
standard library and ``cryptography`` (Ed25519). An export (``falaj audit export``) is
checked for: every event's hash and its link to the one before (the chain); every
checkpoint line's signature, following key rotations from the first line's key (or the
``--key`` given, which pins it); each checkpoint's root and head against the events;
and a consistency proof between each pair of consecutive checkpoints. A proof
(``falaj audit prove RECEIPT --json``) is checked from the decision's leaf to the
batch's root, the batch's event to the checkpoint's root, and the checkpoint's
signature. Exit 0 when all holds, 1 naming the first problem, 2 for an unreadable file.

The hashing repeats ``appliance.audit.chain`` and ``appliance.audit.merkle`` on
purpose (RFC 6962 / RFC 9162 §2.1), so this file stands alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64
DOMAIN = b"falaj-audit-checkpoint/v1\n"
FORMAT = "falaj-audit-export/1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip


def event_hash(e: dict[str, Any]) -> str:
    body = canonical_json({k: e[k] for k in ("seq", "ts", "actor", "action", "subject", "details")})
    return hashlib.sha256((e["prev_hash"] + body).encode()).hexdigest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """Every perfect subtree's hash, level by level; MTH of any prefix from them."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.levels = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1])
                                for i in range(0, len(below) - 1, 2)])  # fmt: skip

    def mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n & (n - 1) == 0 and start % n == 0:
            return self.levels[n.bit_length() - 1][start // n]
        k = _split(n)
        return node_hash(self.mth(start, start + k), self.mth(start + k, end))

    def consistency(self, m: int, n: int) -> list[bytes]:
        def sub(m: int, start: int, end: int, whole: bool) -> list[bytes]:
            if m == end - start:
                return [] if whole else [self.mth(start, end)]
            k = _split(end - start)
            if m <= k:
                return sub(m, start, start + k, whole) + [self.mth(start + k, end)]
            return sub(m - k, start + k, end, False) + [self.mth(start, start + k)]

        return [] if m in (0, n) else sub(m, 0, n, True)


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if not 0 <= m <= n:
        return False
    if m == n:
        return old == new and not proof
    if m == 0:
        return not proof
    proof = ([old] if m & (m - 1) == 0 else []) + list(proof)
    if not proof:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old and sr == new


def _key_id(public_hex: str) -> str:
    try:
        return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]
    except (ValueError, TypeError):
        return ""


def _signed(public_hex: str, sig_hex: str, record: dict[str, Any]) -> bool:
    body = DOMAIN + canonical_json({k: v for k, v in record.items()
                                    if k not in ("sig", "new_sig")}).encode()  # fmt: skip
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(sig_hex), body
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class Problem(Exception):
    pass


def _check_line(i: int, r: dict[str, Any], current: str | None) -> str:
    """The key in force after checkpoint line ``i`` (raises ``Problem``)."""
    kind, pub = r.get("kind"), r.get("public_key", "")
    if kind not in ("checkpoint", "rotation"):
        raise Problem(f"checkpoint line {i}: unknown kind {kind!r}")
    if current is not None and pub != current:
        raise Problem(f"checkpoint line {i} is signed by key {r.get('key_id')}, not by the key "
                      "in force there (no rotation names it)")  # fmt: skip
    if r.get("key_id") != _key_id(pub):
        raise Problem(f"checkpoint line {i}: its key_id does not match its key")
    if not _signed(pub, r.get("sig", ""), r):
        raise Problem(f"checkpoint line {i}: bad signature")
    if kind == "rotation":
        new = r.get("new_public_key", "")
        if r.get("new_key_id") != _key_id(new) or not _signed(new, r.get("new_sig", ""), r):
            raise Problem(f"checkpoint line {i}: rotation not signed by the new key")
        return new
    return pub


def check_export(doc: Any, key: str | None = None) -> str:
    """A summary of a sound export; raises ``Problem`` naming the first fault."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Problem(f"not a Falaj audit export (expected format {FORMAT!r})")
    events, lines = doc.get("events"), doc.get("checkpoints")
    if not isinstance(events, list) or not isinstance(lines, list):
        raise Problem("the export lacks its events or checkpoints list")
    prev = GENESIS
    for i, e in enumerate(events, 1):
        try:
            if e["seq"] != i:
                raise Problem(f"event {i} is missing (found seq {e['seq']})")
            if e["prev_hash"] != prev:
                raise Problem(f"event {i} does not link to event {i - 1}")
            if e["hash"] != event_hash(e):
                raise Problem(f"event {i} ({e['action']} {e['subject']}) was altered")
        except (KeyError, TypeError, AttributeError):
            raise Problem(f"event {i}: not an event record") from None
        prev = e["hash"]
    tree = Tree([leaf_hash(bytes.fromhex(e["hash"])) for e in events])
    current = key
    previous: dict[str, Any] | None = None
    count = 0
    for i, line in enumerate(lines, 1):
        try:
            r = json.loads(line)
        except (TypeError, ValueError):
            raise Problem(f"checkpoint line {i}: not JSON") from None
        if not isinstance(r, dict):
            raise Problem(f"checkpoint line {i}: not a record")
        if canonical_json(r) != line:
            raise Problem(f"checkpoint line {i}: not in canonical form")
        current = _check_line(i, r, current)
        if r["kind"] != "checkpoint":
            continue
        size = r.get("size")
        if not isinstance(size, int) or not 0 <= size <= len(events):
            raise Problem(f"checkpoint line {i} covers {size} events; the export has "
                          f"{len(events)}")  # fmt: skip
        root = tree.mth(0, size)
        if r.get("root") != root.hex():
            raise Problem(f"checkpoint line {i}: the first {size} events do not have its root")
        if size and r.get("head") != events[size - 1]["hash"]:
            raise Problem(f"checkpoint line {i}: event {size} is not the one it signed")
        if previous is not None:
            m = previous["size"]
            if m > size:
                raise Problem(f"checkpoint line {i} covers fewer events ({size}) than the one "
                              f"before it ({m})")  # fmt: skip
            proof = tree.consistency(m, size)
            if not verify_consistency(m, size, bytes.fromhex(previous["root"]), root, proof):
                raise Problem(f"checkpoint line {i} is not consistent with the one before it")
        previous, count = r, count + 1
    if previous is None:
        return f"verified: {len(events)} events, chain intact; no checkpoint in the export"
    after = len(events) - previous["size"]
    return (f"verified: {len(events)} events, {count} checkpoints (latest: "
            f"{previous['size']} events, root {previous['root'][:16]}..., key "
            f"{previous['key_id']})"
            + (f"; the last {after} events are under no checkpoint, only the chain"
               if after else ""))  # fmt: skip


def check_proof(proof: dict[str, Any], key: str | None = None) -> str | None:
    """None when a receipt's proof holds, else the first problem."""
    try:
        event, c = proof["event"], proof["checkpoint"]
        if event["hash"] != event_hash(event):
            return f"event {event['seq']} does not hash to its hash"
        details = json.loads(event["details"])
        if event["action"] != "decisions.logged" or event["subject"] != proof["batch"]:
            return f"event {event['seq']} is not the audit event of batch {proof['batch']}"
        if proof["kind"] == "merkle":
            root = bytes.fromhex(details.get("records_root", ""))
            for d in proof["decisions"]:
                if not verify_inclusion(d["index"], proof["batch_rows"], bytes.fromhex(d["leaf"]),
                                        [bytes.fromhex(h) for h in d["path"]], root):  # fmt: skip
                    return f"decision {d['index']} is not in its batch's records_root"
            if not proof["decisions"]:
                return "the proof names no decision"
        elif details.get("records_sha256") != proof.get("records_sha256"):
            return "the batch's records_sha256 is not the one its event committed to"
        if key is not None and c["public_key"] != key:
            return f"the checkpoint is signed by key {c.get('key_id')}, not the one given"
        record = {k: v for k, v in c.items() if k != "line_no"}
        if not _signed(c["public_key"], c["sig"], record) or c["key_id"] != _key_id(
            c["public_key"]
        ):
            return "the checkpoint's signature does not verify"
        if not verify_inclusion(event["seq"] - 1, c["size"], leaf_hash(bytes.fromhex(event["hash"])),
                                [bytes.fromhex(h) for h in proof["event_path"]],
                                bytes.fromhex(c["root"])):  # fmt: skip
            return f"event {event['seq']} is not in the tree checkpoint {c['size']} signed"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"not a proof record ({type(exc).__name__}: {exc})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.audit.verify_export",
        description="Check a Falaj audit export or a receipt's proof, offline.",
    )
    parser.add_argument("file", help="the export (falaj audit export) or a proof (prove --json)")
    parser.add_argument("--key", help="the checkpoint public key (hex) to trust first")
    args = parser.parse_args(argv)
    try:
        with open(args.file, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"error: {args.file}: cannot read it as JSON ({type(exc).__name__})", file=sys.stderr)
        return 2
    if isinstance(doc, dict) and "receipt" in doc:
        problem = check_proof(doc, args.key)
        if problem:
            print(f"FAILED: receipt {doc.get('receipt')}: {problem}", file=sys.stderr)
            return 1
        print(f"verified: receipt {doc['receipt']} is in checkpoint {doc['checkpoint']['size']} "
              f"(key {doc['checkpoint']['key_id']})")  # fmt: skip
        return 0
    try:
        print(check_export(doc, args.key))
    except Problem as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
