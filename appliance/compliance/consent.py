"""The consent registry: who agreed to what, on which legal basis, and when they took
it back.

    app.consent.give("100405", "model-training", "consent", actor)
    app.consent.withdraw("100405", "model-training", actor)

A subject is an entity id (as text). Each record has a purpose, a legal basis (the
PDPL's and GDPR's six), and given and withdrawn times; giving consent again after a
withdrawal is a new record, so the history stays. Every change is one audit event.

What a withdrawal does, by purpose:

- ``model-training``: the subject's spine rows are left out of training sets built
  from then on (the count is in the set's record), and their new rows go to the
  quarantine at ingest (rule ``consent``);
- ``automated-decision``: predictions keyed by the subject (the request key, an entity
  id in the request) are refused with ``ConsentWithdrawn`` (409).

The serving path asks ``check`` on every request: an in-memory set, refreshed when this
process changes consent, or when control.db changed elsewhere (another process's
``falaj consent withdraw``), looked at most once a second.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from appliance.auth import Actor, require
from appliance.errors import BadInput, FalajError, NotFound
from appliance.stores import ControlStore
from appliance.stores.control import now

TRAINING = "model-training"
DECISIONS = "automated-decision"
PURPOSES = {
    TRAINING: "training and evaluating models on the subject's rows",
    DECISIONS: "automated decisions (predictions) about the subject",
    "monitoring": "drift and quality monitoring over the subject's decisions",
    "analytics": "aggregate reporting",
}
BASES = ("consent", "contract", "legal-obligation", "vital-interest", "public-task",
         "legitimate-interest")  # fmt: skip
PURPOSE_RE = re.compile(r"[a-z][a-z0-9-]{1,62}")
MAX_SUBJECT = 200


class ConsentWithdrawn(FalajError):
    """New processing for a subject who withdrew consent for it."""

    status = 409
    exit_code = 1


def check_subject(subject: Any, where: str = "subject") -> str:
    if isinstance(subject, bool) or not isinstance(subject, str | int):
        raise BadInput(f"{where}: expected an entity id (text or a number)")
    text = str(subject).strip()
    if not text or len(text) > MAX_SUBJECT or any(ord(ch) < 32 for ch in text):
        raise BadInput(f"{where}: {str(subject)[:60]!r} is not an entity id (1-{MAX_SUBJECT} "
                       "printable characters)")  # fmt: skip
    return text


def check_purpose(purpose: Any) -> str:
    if not isinstance(purpose, str) or not PURPOSE_RE.fullmatch(purpose):
        raise BadInput(f"purpose {str(purpose)[:60]!r}: expected lower-case words joined by "
                       f"'-' (like {', '.join(PURPOSES)})")  # fmt: skip
    return purpose


def check_basis(basis: Any) -> str:
    if basis not in BASES:
        raise BadInput(f"legal basis {str(basis)[:60]!r}: expected one of {', '.join(BASES)}")
    return basis


class ConsentRegistry:
    recheck_s = 1.0

    def __init__(self, control: ControlStore) -> None:
        self.control = control
        self._lock = threading.Lock()
        self._withdrawn: dict[str, set[str]] | None = None
        self._version: int | None = None
        self._checked = 0.0
        self._columns: tuple[str, ...] | None = None

    # -- changes -----------------------------------------------------------------

    def give(self, subject: Any, purpose: Any, basis: Any, actor: Actor) -> dict[str, Any]:
        """Record consent given (a new record; one already open for the purpose is kept
        and returned unchanged)."""
        require(actor, "consent.manage")
        subject, purpose, basis = check_subject(subject), check_purpose(purpose), check_basis(basis)
        with self.control.transaction() as tx:
            open_ = tx.open_consent(subject, purpose)
            if open_ is not None:
                return open_ | {"changed": False}
            at = now()
            id_ = tx.give_consent(subject, purpose, basis, at, str(actor))
            tx.append_audit(actor, "consent.give", subject,
                            {"purpose": purpose, "basis": basis, "consent_id": id_})  # fmt: skip
        self._changed()
        return {"id": id_, "subject": subject, "purpose": purpose, "basis": basis,
                "given_at": at, "given_by": str(actor), "withdrawn_at": None,
                "changed": True}  # fmt: skip

    def withdraw(
        self, subject: Any, purpose: Any, actor: Actor, basis: Any = None
    ) -> dict[str, Any]:
        """Record consent withdrawn. A subject with no open record gets a withdrawn one
        (the objection is recorded even when no consent was registered)."""
        require(actor, "consent.manage")
        subject, purpose = check_subject(subject), check_purpose(purpose)
        basis = check_basis(basis) if basis is not None else "consent"
        with self.control.transaction() as tx:
            open_ = tx.open_consent(subject, purpose)
            at = now()
            if open_ is None:
                id_ = tx.give_consent(subject, purpose, basis, at, str(actor))
                given = {"given_at": at, "basis": basis}
            else:
                id_, given = open_["id"], {"given_at": open_["given_at"], "basis": open_["basis"]}
            tx.withdraw_consent(id_, at, str(actor))
            tx.append_audit(actor, "consent.withdraw", subject,
                            {"purpose": purpose, "consent_id": id_})  # fmt: skip
        self._changed()
        return {"id": id_, "subject": subject, "purpose": purpose, "withdrawn_at": at,
                "withdrawn_by": str(actor), "changed": True} | given  # fmt: skip

    # -- reads -------------------------------------------------------------------

    def list(
        self, actor: Actor, subject: Any = None, purpose: Any = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        require(actor, "consent.read")
        subject = None if subject in (None, "") else check_subject(subject)
        purpose = None if purpose in (None, "") else check_purpose(purpose)
        return self.control.consent_records(subject, purpose, limit)

    def status(self, subject: Any, actor: Actor) -> dict[str, str]:
        """purpose -> "given" | "withdrawn" for the subject's latest records."""
        require(actor, "consent.read")
        subject = check_subject(subject)
        out: dict[str, str] = {}
        for r in self.control.consent_records(subject):  # newest first
            out.setdefault(r["purpose"], "withdrawn" if r["withdrawn_at"] else "given")
        return out

    def withdrawn(self) -> dict[str, set[str]]:
        """purpose -> subjects whose consent for it is withdrawn (cached)."""
        now_ = time.monotonic()
        if self._withdrawn is not None and now_ - self._checked < self.recheck_s:
            return self._withdrawn
        with self._lock:
            version = self.control.data_version()
            if self._withdrawn is None or version != self._version:
                self._withdrawn = self.control.withdrawn_subjects()
                self._columns = None
                self._version = version
            self._checked = now_
            return self._withdrawn

    def check(self, subjects: Iterable[Any], purpose: str = DECISIONS) -> None:
        """Refuse processing for ``purpose`` of any subject who withdrew it (the hot
        path: a set lookup per subject)."""
        blocked = self.withdrawn().get(purpose)
        if not blocked:
            return
        for s in subjects:
            if s is not None and str(s) in blocked:
                raise ConsentWithdrawn(
                    f"consent withdrawn: subject {str(s)!r} withdrew consent for {purpose}; "
                    "no new decisions are made about them (see falaj consent list)"
                )

    def guard(self, key: str | None, items: Any) -> None:
        """Serving's hook: refuse a prediction whose request key, or an entity id in its
        records or entities, names a subject who withdrew consent for automated decisions."""
        blocked = self.withdrawn().get(DECISIONS)
        if not blocked:
            return
        subjects: list[Any] = [key]
        if isinstance(items, list):
            columns = self._entity_columns()
            for item in items:
                if isinstance(item, dict):
                    subjects.extend(item.get(c) for c in columns)
        self.check(subjects, DECISIONS)

    def _entity_columns(self) -> tuple[str, ...]:
        if self._columns is None:
            cols = {e["join_key"] for e in self.control.entities().values()}
            cols |= {s["entity"] for s in self.control.table_specs().values() if s.get("entity")}
            self._columns = tuple(sorted(cols))
        return self._columns

    def _changed(self) -> None:
        with self._lock:
            self._withdrawn = None

    def require_subject_known(self, subject: str) -> None:
        if not self.control.consent_records(subject, limit=1):
            raise NotFound(f"subject {subject!r}: no consent records")
