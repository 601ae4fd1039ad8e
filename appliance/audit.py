"""The audit chain: append-only events in ``control.db``, each hashing its predecessor.

``hash = SHA-256(prev_hash || canonical JSON of seq, ts, actor, action, subject,
details)``. Changing, removing or reordering any event breaks every hash after it, so
``verify`` names the first event that does not match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, an API token, the scheduler or the CLI's local operator."""

    kind: str  # "user" | "token" | "cli" | "scheduler" | "system" | "api"
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


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


def append(
    conn: Any, actor: Actor | str, action: str, subject: str, details: dict[str, Any] | None = None
) -> int:
    """Append one event inside the caller's open transaction; returns its sequence number."""
    last = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    body = canonical_json(details or {})
    h = event_hash(prev, seq, ts, str(actor), action, subject, body)
    conn.execute(
        "INSERT INTO audit_events (seq, ts, actor, action, subject, details, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, ts, str(actor), action, subject, body, prev, h),
    )
    return seq


@dataclass(frozen=True)
class Verification:
    checked: int
    first_bad: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def verify(rows: list[dict[str, Any]]) -> Verification:
    """Check events given in sequence order."""
    prev = GENESIS
    for i, r in enumerate(rows, start=1):
        if r["seq"] != i:
            return Verification(i - 1, i, f"event {i} is missing (found seq {r['seq']})")
        if r["prev_hash"] != prev:
            return Verification(i - 1, i, f"event {i} does not link to event {i - 1}")
        expected = event_hash(
            prev, r["seq"], r["ts"], r["actor"], r["action"], r["subject"], r["details"]
        )
        if r["hash"] != expected:
            return Verification(i - 1, i, f"event {i} ({r['action']} {r['subject']}) was altered")
        prev = r["hash"]
    return Verification(len(rows))
