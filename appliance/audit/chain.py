"""The audit chain's hashing: append-only events in ``control.db``, each hashing its
predecessor (the store appends them, in the same transaction as the change).

``hash = SHA-256(prev_hash || canonical JSON of seq, ts, actor, action, subject,
details)``. Changing, removing or reordering any event breaks every hash after it, so
``verify`` names the first event that does not match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def event_hash(
    prev_hash: str, seq: int, ts: str, actor: str, action: str, subject: str, details: str
) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
        }
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True)
class Verification:
    checked: int  # events known good: the chain up to and including ``head``
    first_bad: int | None = None
    reason: str = ""
    head: tuple[int, str] | None = None  # (seq, hash) of the last verified event
    hashed: int = 0  # events re-hashed by this verification
    checkpoint: int | None = None  # the size of the signed checkpoint the store matched

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def verify(rows: Iterable[dict[str, Any]], after: tuple[int, str] = (0, GENESIS)) -> Verification:
    """Check events given in sequence order, continuing from ``after`` = (seq, hash)."""
    seq, prev = after
    for r in rows:
        if r["seq"] != seq + 1:
            return Verification(seq, seq + 1, f"event {seq + 1} is missing (found seq {r['seq']})",
                                (seq, prev), seq - after[0])  # fmt: skip
        if r["prev_hash"] != prev:
            return Verification(seq, seq + 1, f"event {seq + 1} does not link to event {seq}",
                                (seq, prev), seq - after[0])  # fmt: skip
        expected = event_hash(
            prev, r["seq"], r["ts"], r["actor"], r["action"], r["subject"], r["details"]
        )
        if r["hash"] != expected:
            return Verification(seq, seq + 1, f"event {seq + 1} ({r['action']} {r['subject']}) was altered",
                                (seq, prev), seq - after[0])  # fmt: skip
        seq, prev = seq + 1, r["hash"]
    return Verification(seq, head=(seq, prev), hashed=seq - after[0])
