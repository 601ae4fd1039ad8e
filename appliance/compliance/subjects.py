"""Data-subject requests: export, rectify, erase, object (UAE PDPL, GDPR arts. 15-22).

    app.subjects.export("100405", actor)                       # one JSON document
    app.subjects.rectify("100405", "credit_contacts", {"email": "new@example.com"}, actor)
    app.subjects.erase("100405", actor)                        # crypto-shredding
    app.subjects.object("100405", REQUEST_ID, "I dispute it", actor)  # a review item

The subject is an entity id. Each request is a ``subject_requests`` row and one audit
event, written in the same control.db transaction:

- export: the subject's rows in every feature table whose entity column holds the id
  (personal columns decrypted, or ``[erased]``), their online features, the decisions
  logged with their id as request key, consent records, requests and reviews;
- rectify: feature tables are append-only event tables, so a correction is a new row:
  the subject's latest row (or the one at ``event_time``) with the corrected values and,
  when the table has one, a later created time; it is ingested (so contracts and
  sealing apply) and the online store re-materialized. The audit event names the
  columns and keyed digests of old and new values (HMAC under the subject's key): no
  plaintext, and after erasure the digests prove nothing about the values;
- erase: the subject's key is deleted (their personal columns become unreadable, the
  ciphertext and the audit chain stay as they are), their online rows are dropped, and
  consent for model training and automated decisions is recorded withdrawn;
- object: an objection to one logged decision opens a human-review item
  (``compliance.review``).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from appliance.auth import SYSTEM, Actor, require
from appliance.compliance.consent import DECISIONS, TRAINING, check_subject
from appliance.compliance.shredding import ERASED
from appliance.errors import BadInput, FalajError, NotFound
from appliance.ingest.validate import as_text
from appliance.names import check_name
from appliance.stores import compliance as store
from appliance.stores.control import now

MAX_REASON = 2000


class SubjectErased(FalajError):
    """A request that needs data an erasure made unreadable."""

    status = 409
    exit_code = 1


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return ERASED  # sealed values never leave as bytes
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _convert(value: Any, type_: str, where: str) -> Any:
    """A corrected value (text from the CLI or a form, or JSON) as the column's type."""
    if value is None:
        return None
    try:
        if type_ in ("BIGINT", "INTEGER"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if type_ == "DOUBLE":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if type_ == "BOOLEAN":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("true", "false", "1", "0"):
                raise ValueError
            return text in ("true", "1")
        if type_.startswith("TIMESTAMP"):
            return datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: {str(value)[:60]!r} is not a {type_} value") from None
    return str(value)


class SubjectRights:
    def __init__(self, app: Any) -> None:
        self.app = app  # the Appliance: these requests touch every layer's data

    @property
    def control(self):
        return self.app.control

    @property
    def features(self):
        return self.app.features

    # -- the tables that hold a subject ------------------------------------------------

    def _tables(self) -> list[dict[str, Any]]:
        """Every feature table: name, entity column, created column, personal columns."""
        out = []
        for t in self.features.tables():
            spec = self.app.ingestion.table_spec(t["table_name"])
            out.append({"table": t["table_name"], "entity": t["entity_col"],
                        "timestamp": t["timestamp_col"], "created": t["created_col"],
                        "personal": spec.personal if spec else ()})  # fmt: skip
        return out

    def _rows(self, t: dict[str, Any], subject: str, internal: bool = False) -> list[dict]:
        rows = store.subject_rows(self.features, t["table"], t["entity"], subject).to_pylist()
        rows = self.app.shredder.open_rows(t["table"], t["entity"], t["personal"], rows)
        if not internal:
            rows = [{k: v for k, v in r.items() if not k.startswith("_") or k == "_ingested_at"}
                    for r in rows]  # fmt: skip
        return rows

    # -- export --------------------------------------------------------------------

    def export(self, subject: Any, actor: Actor) -> dict[str, Any]:
        """Everything held about the subject, as one JSON-ready document."""
        require(actor, "subject.export")
        subject = check_subject(subject)
        tables = {}
        for t in self._tables():
            rows = self._rows(t, subject)
            if rows:
                tables[t["table"]] = {"entity_column": t["entity"],
                                      "personal_columns": list(t["personal"]),
                                      "rows": jsonable(rows)}  # fmt: skip
        self.app.decision_log.flush()
        decisions = store.subject_decisions(self.features, subject)
        online = store.subject_online_rows(self.features, subject)
        erasure = self.control.subject_erasure(subject)
        doc = {
            "subject": subject,
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "exported_by": str(actor),
            "erased": erasure,
            "tables": tables,
            "online_features": jsonable(online),
            "decisions": jsonable(decisions),
            "consent": self.control.consent_records(subject),
            "requests": self.control.subject_requests(subject),
            "reviews": self.control.reviews(subject=subject),
            "controller_note": "held on this appliance only (no recipients, no transfers)",
        }
        counts = {"tables": {k: len(v["rows"]) for k, v in tables.items()},
                  "decisions": len(decisions), "online": len(online)}  # fmt: skip
        with self.control.transaction() as tx:
            rid = tx.add_subject_request(subject, "export", "done", now(), str(actor), counts)
            tx.append_audit(actor, "subject.export", subject, counts | {"request": rid})
        return doc | {"request": rid}

    # -- rectify -------------------------------------------------------------------

    def rectify(
        self, subject: Any, table: str, changes: dict[str, Any], actor: Actor,
        event_time: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Append a corrected version of the subject's row (the latest, or the one at
        ``event_time``) to ``table`` and re-materialize its online views."""
        require(actor, "subject.rectify")
        subject = check_subject(subject)
        check_name("table", table)
        t = next((x for x in self._tables() if x["table"] == table), None)
        if t is None:
            raise NotFound(f"table {table!r}: no such feature table")
        if not isinstance(changes, dict) or not changes:
            raise BadInput("rectify: give at least one correction (COLUMN=VALUE)")
        types = self.features.column_types(table) or {}
        keys = {t["entity"]: "entity", t["timestamp"]: "event time"}
        if t["created"]:
            keys[t["created"]] = "created time"
        for c in changes:
            if c in keys:
                raise BadInput(f"rectify: {c!r} is the table's {keys[c]} column; a correction "
                               "changes values, not which row it is")  # fmt: skip
            if c not in types:
                raise BadInput(f"rectify: table {table!r} has no column {c!r} "
                               f"(columns: {', '.join(types)})")  # fmt: skip
        rows = self._rows(t, subject, internal=True)
        if event_time is not None:
            at = _convert(event_time, "TIMESTAMP", "rectify: event_time")
            rows = [r for r in rows if r[t["timestamp"]] == at]
        if not rows:
            where = f" at {event_time}" if event_time else ""
            raise NotFound(f"subject {subject!r}: no row in {table!r}{where}")
        latest = max(rows, key=lambda r: (r[t["timestamp"]], r.get(t["created"] or "", None)
                                          or datetime.min, r["_seq"]))  # fmt: skip
        if any(latest.get(c) == ERASED for c in t["personal"]):
            raise SubjectErased(f"subject {subject!r} was erased: their personal data can no "
                                "longer be read or corrected")  # fmt: skip
        plain = {"BLOB": "VARCHAR"}
        new = {c: latest[c] for c in types}
        for c, v in changes.items():
            new[c] = _convert(v, plain.get(types[c], types[c]), f"rectify: column {c!r}")
        if t["created"]:
            new[t["created"]] = datetime.now(UTC).replace(tzinfo=None)
        key = self.app.shredder.ensure_keys(table, [subject])[subject]
        digests = {c: {"old": _digest(key, table, c, latest[c]), "new": _digest(key, table, c, new[c])}
                   for c in changes}  # fmt: skip
        row_types = {c: _arrow(plain.get(types[c], types[c])) for c in types}
        frame = pa.table({c: pa.array([new[c]], row_types[c]) for c in types})
        # ingested by the appliance on the rectifier's behalf (the subject.rectify event
        # below names them and this batch): correcting needs no right to load data
        r = self.app.ingestion.ingest(frame, table, actor=SYSTEM,
                                      label=f"rectification of subject {subject}",
                                      correction=True)  # fmt: skip
        materialized = self._rematerialize(table, actor)
        details = {"table": table, "columns": sorted(changes), "digests": digests,
                   "batch": r["batch"], "event_time": as_text(latest[t["timestamp"]]),
                   "rematerialized": materialized}  # fmt: skip
        with self.control.transaction() as tx:
            rid = tx.add_subject_request(subject, "rectify", "done", now(), str(actor), details)
            tx.append_audit(actor, "subject.rectify", subject, details | {"request": rid})
        return {"subject": subject, "request": rid, "table": table, "batch": r["batch"],
                "rows": r["rows"], "quarantined": r["quarantined"],
                "columns": sorted(changes), "rematerialized": materialized}  # fmt: skip

    def _rematerialize(self, table: str, actor: Actor) -> list[str]:
        online = {v["view"] for v in self.features.online_views()}
        done = []
        for v in self.app.views.list(SYSTEM):
            if v["table"] == table and v["view"] in online:
                # the rectifier's own right to correct covers bringing the store up to date
                done.append(self.app.online.materialize(v["view"], SYSTEM)["view"])
        return done

    # -- erase ---------------------------------------------------------------------

    def erase(self, subject: Any, actor: Actor) -> dict[str, Any]:
        """Crypto-shred the subject: delete their key, drop their online rows, and record
        their consent for training and automated decisions withdrawn."""
        require(actor, "subject.erase")
        subject = check_subject(subject)
        with self.features.transaction() as ftx:
            dropped = store.drop_subject_online(ftx, subject)
        self.app.online._checked = 0.0  # noqa: SLF001 -- reload what this process holds now
        at = now()
        with self.control.transaction() as tx:
            had_key = tx.shred_subject_key(subject, at, str(actor))
            withdrawn = []
            for purpose in (TRAINING, DECISIONS):
                open_ = tx.open_consent(subject, purpose)
                id_ = open_["id"] if open_ else tx.give_consent(subject, purpose, "consent", at,
                                                               str(actor))  # fmt: skip
                tx.withdraw_consent(id_, at, str(actor))
                withdrawn.append(purpose)
            details = {"key_deleted": had_key, "online_rows_dropped": dropped,
                       "consent_withdrawn": withdrawn}  # fmt: skip
            rid = tx.add_subject_request(subject, "erase", "done", at, str(actor), details)
            tx.append_audit(actor, "subject.erase", subject, details | {"request": rid})
        self.app.consent._changed()  # noqa: SLF001
        return {"subject": subject, "request": rid, "erased_at": at} | details

    # -- object --------------------------------------------------------------------

    def object(self, subject: Any, decision_id: Any, reason: Any, actor: Actor) -> dict[str, Any]:
        """Record an objection to one automated decision; opens a human-review item."""
        require(actor, "subject.object")
        subject = check_subject(subject)
        if not isinstance(decision_id, str) or not decision_id.strip() or len(decision_id) > 100:
            raise BadInput("object: give the decision's request id (its receipt)")
        decision_id = decision_id.strip()
        reason = "" if reason is None else str(reason).strip()
        if len(reason) > MAX_REASON:
            raise BadInput(f"object: the reason is longer than {MAX_REASON} characters")
        self.app.decision_log.flush()
        rows = self.features.decisions(decision_id)
        if not rows:
            raise NotFound(f"no decision with request id {decision_id!r}")
        key = rows[0].get("request_key")
        if key is not None and key != subject:
            raise BadInput(f"object: decision {decision_id} is not about subject {subject!r}")
        at = now()
        with self.control.transaction() as tx:
            details = {"decision": decision_id, "model": rows[0]["model"],
                       "version": rows[0]["version"]}  # fmt: skip
            rid = tx.add_subject_request(subject, "object", "open", at, str(actor), details)
            review = tx.open_review(rid, subject, decision_id, reason, at, str(actor))
            tx.append_audit(actor, "subject.object", subject,
                            details | {"request": rid, "review": review})  # fmt: skip
        return {"subject": subject, "request": rid, "review": review, "status": "open"} | details

    def overview(self, subject: Any, actor: Actor) -> dict[str, Any]:
        """A subject at a glance for the dashboard (not a request: nothing is decrypted):
        consent per purpose, requests, reviews and their latest decisions."""
        require(actor, "consent.read")
        subject = check_subject(subject)
        self.app.decision_log.flush()
        decisions = store.subject_decisions(self.features, subject)
        return {
            "subject": subject,
            "consent": self.app.consent.status(subject, actor),
            "erased": self.control.subject_erasure(subject),
            "requests": self.control.subject_requests(subject, 20),
            "reviews": self.control.reviews(subject=subject, limit=20),
            "decisions": jsonable(decisions[-20:][::-1]),
            "decision_count": len(decisions),
        }

    def requests(self, actor: Actor, subject: Any = None, limit: int = 100) -> list[dict]:
        require(actor, "review.read")
        subject = None if subject in (None, "") else check_subject(subject)
        return self.control.subject_requests(subject, limit)


def _arrow(type_: str) -> pa.DataType:
    return {"BIGINT": pa.int64(), "INTEGER": pa.int64(), "DOUBLE": pa.float64(),
            "BOOLEAN": pa.bool_(), "VARCHAR": pa.string()}.get(type_) or (
        pa.timestamp("us") if type_.startswith("TIMESTAMP") else pa.string())  # fmt: skip


def _digest(key: bytes, table: str, column: str, value: Any) -> str:
    text = "\x1f".join((table, column, "null" if value is None else repr(as_text(value))))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]
