"""The audit chain: reading and verifying it.

Events are appended by the store (``ControlTx.append_audit``) in the same transaction
as the change they record. Verification is incremental: the store keeps the last
verified head (seq, hash), so a page load re-hashes only newer events, after checking
that the head itself is still there unchanged (which also catches a chain cut at its
tail or rolled back to an older copy). ``full=True`` re-hashes everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.audit.chain import GENESIS, Verification, canonical_json, event_hash, verify
from appliance.auth import Actor, require

if TYPE_CHECKING:  # the store imports the chain's hashing: no import cycle at run time
    from appliance.stores import ControlStore

__all__ = ["AuditService", "Verification", "canonical_json", "event_hash", "verify"]

PAGE = 50_000  # events read per query while verifying


class AuditService:
    def __init__(self, control: ControlStore) -> None:
        self.control = control

    def verify(self, actor: Actor, full: bool = False) -> Verification:
        require(actor, "audit.read")
        start = (0, GENESIS) if full else (self.control.verified_head() or (0, GENESIS))
        if start[0]:
            row = self.control.audit_event(start[0])
            if row is None:
                last = self.control.audit_count()
                return Verification(0, last + 1, f"the chain ends at event {last}, but event "
                                    f"{start[0]} was verified before: events were removed")  # fmt: skip
            if row["hash"] != start[1]:
                return Verification(0, start[0], f"event {start[0]} changed since it was verified")
        result = Verification(start[0], head=start)
        while True:
            rows = self.control.audit_events(after=result.head[0], limit=PAGE)  # type: ignore[index]
            step = verify(rows, after=result.head)  # type: ignore[arg-type]
            result = Verification(step.checked, step.first_bad, step.reason, step.head,
                                  result.hashed + step.hashed)  # fmt: skip
            if not step.ok or len(rows) < PAGE:
                break
        if result.ok and result.head and result.head != start:
            with self.control.transaction() as tx:
                tx.set_verified_head(*result.head)
        return result

    def tail(self, n: int, actor: Actor) -> list[dict[str, Any]]:
        require(actor, "audit.read")
        return self.control.audit_tail(n)
