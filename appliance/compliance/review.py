"""The human-review queue: an objection to an automated decision (``subjects.object``)
opens an item naming the decision; a reviewer with ``review.decide`` records the
outcome, ``uphold`` (the decision stands) or ``overturn``, with a note. Deciding closes
the objection's request; both are one audit event (``review.decide``)."""

from __future__ import annotations

from typing import Any

from appliance.auth import Actor, require
from appliance.errors import BadInput, FalajError, NotFound
from appliance.stores import ControlStore
from appliance.stores.control import now

OUTCOMES = {"uphold": "upheld", "overturn": "overturned"}
MAX_NOTE = 2000


class AlreadyDecided(FalajError):
    status = 409


class ReviewQueue:
    def __init__(self, control: ControlStore) -> None:
        self.control = control

    def list(self, actor: Actor, status: str | None = None, limit: int = 200) -> list[dict]:
        require(actor, "review.read")
        if status not in (None, "", "open", "upheld", "overturned"):
            raise BadInput(f"status {status!r}: expected open, upheld or overturned")
        return self.control.reviews(status or None, limit=limit)

    def show(self, review_id: Any, actor: Actor) -> dict[str, Any]:
        require(actor, "review.read")
        row = self.control.review(_id(review_id))
        if row is None:
            raise NotFound(f"no review {review_id}")
        return row

    def decide(self, review_id: Any, outcome: Any, note: Any, actor: Actor) -> dict[str, Any]:
        require(actor, "review.decide")
        rid = _id(review_id)
        if outcome not in OUTCOMES:
            raise BadInput(f"outcome {str(outcome)[:40]!r}: expected uphold or overturn")
        note = "" if note is None else str(note).strip()
        if len(note) > MAX_NOTE:
            raise BadInput(f"note: longer than {MAX_NOTE} characters")
        at = now()
        with self.control.transaction() as tx:
            row = tx.review_for_update(rid)
            if row is None:
                raise NotFound(f"no review {rid}")
            if row["status"] != "open":
                raise AlreadyDecided(f"review {rid} was already decided ({row['status']} by "
                                     f"{row['decided_by']} at {row['decided_at']})")  # fmt: skip
            tx.decide_review(rid, OUTCOMES[outcome], note, at, str(actor))
            tx.set_request_status(row["request_id"], "closed")
            tx.append_audit(actor, "review.decide", row["subject"],
                            {"review": rid, "decision": row["decision_id"],
                             "outcome": OUTCOMES[outcome], "request": row["request_id"]})  # fmt: skip
        return row | {"status": OUTCOMES[outcome], "note": note, "decided_at": at,
                      "decided_by": str(actor)}  # fmt: skip


def _id(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise BadInput(f"review id {str(value)[:40]!r}: expected a number") from None
    if n < 1 or isinstance(value, bool):
        raise BadInput(f"review id {value!r}: expected a positive number")
    return n
