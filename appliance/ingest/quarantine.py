"""Quarantined rows: those that broke a contract whose policy is ``quarantine``, kept
with their original values (as text) and every reason until released into their table
or dropped, each step audited.

    app.quarantine.list(actor, table="transactions")
    app.quarantine.show("3f2a…", actor)              # a batch id, or a row id (its number)
    app.quarantine.release([17, 18], actor)           # re-checked against today's contract
    app.quarantine.release("3f2a…", actor, force=True)
    app.quarantine.drop("3f2a…", actor)

A row's id is the ``_seq`` number it was given at ingest. A release re-checks the rows
against the table's current contract: the rows that pass land in one transaction, as a
new ingest batch with its own quality report; the others stay. ``force`` skips the
contract's rules and lands every row whose values convert to the table's types (and
that has its entity and event time); the rest stay, and the result says why.

Commit order, as for ingest: the data change (rows landed, the taken rows marked with an
operation id) commits first in features.duckdb; the audit event
(``data.quarantine.release`` or ``data.quarantine.drop``) second in control.db; then
the marked rows are deleted. ``reconcile`` finishes an operation whose event committed
and undoes one whose event did not.
"""

from __future__ import annotations

import builtins
import re
import uuid
from collections import Counter
from typing import Any

import pyarrow as pa

from appliance import faults
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import BadInput, NotFound
from appliance.ingest import landing, now_utc
from appliance.ingest.contracts import TableSpec, build_checks
from appliance.ingest.validate import Checked, Plan, check_batch
from appliance.stores import ControlStore, FeatureStore
from appliance.stores.staging import Staging, is_numeric

BATCH_RE = re.compile(r"^[0-9a-f]{32}$")
SHOWN = 20  # rows still failing listed in a release's result


class _NothingToRelease(Exception):
    pass


class Quarantine:
    def __init__(self, features: FeatureStore, control: ControlStore) -> None:
        self.features = features
        self.control = control

    # -- reading ---------------------------------------------------------------

    def list(
        self, actor: Actor, table: str | None = None, batch: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Per ingest batch with held rows: table, source, time, rows, and how many rows
        break each rule."""
        require(actor, "data.read")
        return [
            {"batch": b["batch_id"], "table": b["table_name"], "source": b["source"],
             "quarantined_at": b["quarantined_at"], "rows": b["rows"],
             "ids": [b["first_id"], b["last_id"]], "rules": b["rules"]}
            for b in self.features.quarantine_batches(table, batch)
        ]  # fmt: skip

    def show(self, batch_or_id: Any, actor: Actor, limit: int | None = None) -> dict[str, Any]:
        """The held rows of a batch (or the rows with these ids): values and reasons;
        the first ``limit`` rows if given (``total`` says how many there are)."""
        require(actor, "data.read")
        rows = self._select(batch_or_id, limit)
        ids, batch = _parse_ref(batch_or_id)
        total = len(rows) if limit is None else self.features.quarantined_count(ids, batch)
        return {
            "table": rows[0]["table_name"],
            "batches": sorted({r["batch_id"] for r in rows}),
            "total": total,
            "rows": [_row(r) for r in rows],
        }

    def _select(self, ref: Any, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        ids, batch = _parse_ref(ref)
        rows = self.features.quarantined(ids=ids, batch=batch, limit=limit)
        if not rows:
            raise NotFound(f"quarantine: no held rows for {ref!r}")
        if ids is not None:
            missing = sorted(set(ids) - {r["id"] for r in rows})
            if missing:
                raise NotFound(f"quarantine: no held row with id {missing[0]}")
        tables = sorted({r["table_name"] for r in rows})
        if len(tables) > 1:
            raise BadInput(f"quarantine: the rows belong to several tables ({', '.join(tables)}); "
                           "release or drop one table's rows at a time")  # fmt: skip
        return rows

    # -- release and drop ------------------------------------------------------

    def release(self, ids_or_batch: Any, actor: Actor, force: bool = False) -> dict[str, Any]:
        """Re-check held rows against the table's current contract; land those that
        pass (all of them that convert, with ``force``) as one new batch."""
        require(actor, "data.quarantine")
        rows = self._select(ids_or_batch)
        table = rows[0]["table_name"]
        types = self.features.column_types(table)
        keys = self.features.table_keys(table)
        if types is None or keys is None:
            raise BadInput(f"quarantine: table {table!r} no longer exists; drop its rows")
        entity, timestamp = keys
        raw = self.control.table_spec(table)
        spec = TableSpec.from_dict(table, raw, f"workspace table {table!r}") if raw else None
        if spec is not None and spec.personal:
            raise BadInput(f"quarantine: table {table!r} has personal columns, which held rows "
                           "do not keep (they read [personal: withheld]); drop these rows and "
                           "ingest them again")  # fmt: skip
        contract = None if force or spec is None else spec.contract
        now = now_utc()
        where = f"quarantine of {table}"
        plan = Plan(where, types, entity, timestamp, self.features.created_column(table),
                    build_checks(contract, types, entity, timestamp, now, where, is_numeric),
                    "quarantine", bool(contract and contract.unique_key), False)  # fmt: skip
        text = pa.table({c: pa.array([r["row_values"].get(c) for r in rows], pa.string())
                         for c in types})  # fmt: skip
        with Staging() as staging:
            checked = check_batch(text, 1, True, plan, staging)
        failing = {f["row"]: f["reasons"] for f in checked.failed}
        batch_id, op_id = uuid.uuid4().hex, uuid.uuid4().hex
        passing = Checked(1, text.num_rows, checked.landed)  # numbers for every position
        try:
            with self.features.transaction() as tx:
                landed = landing.land_batches(tx, plan, [passing], table, batch_id, where, now,
                                              keep_seqs=True)  # fmt: skip
                if plan.unique and landed.landed:
                    tx.find_duplicates(table, entity, timestamp, batch_id)
                    dups = tx.duplicates()
                    tx.drop_duplicates()
                    if dups:
                        tx.remove_rows(table, [d["_seq"] for d in dups])
                        back = {s: r for r, s in landed.row_seqs.items()}
                        for d in dups:
                            failing[back[d["_seq"]]] = [{
                                "rule": f"unique_key:{entity}",
                                "message": f"{entity}, {timestamp}: ({d['entity']}, "
                                           f"{d['event_time']}) is already stored",
                            }]  # fmt: skip
                        landed.landed -= len(dups)
                        landed.counts[f"unique_key:{entity}"] += len(dups)
                released = [r["id"] for i, r in enumerate(rows, start=1) if i not in failing]
                if not released:
                    raise _NothingToRelease
                landed.rows_in = len(released)
                landed.counts = Counter()
                newest = tx.newest_event(table, timestamp, batch_id)
                report = landed.report(plan, batch_id, table, "release", where, now, newest)
                tx.record_ingest(batch_id, table, where, len(released), now, actor)
                tx.record_report(report)
                tx.start_quarantine_op(op_id, "release", table, released, batch_id, now)
                total = tx.row_count(table)
        except _NothingToRelease:
            released, total, batch_id = [], self.features.row_count(table), None
        kept = [{"id": r["id"], "reasons": [x["message"] for x in failing[i]]}
                for i, r in enumerate(rows, start=1) if i in failing]  # fmt: skip
        result = {"table": table, "released": len(released), "kept": len(kept),
                  "batch": batch_id, "force": force, "total_rows": total,
                  "still_failing": kept[:SHOWN]}  # fmt: skip
        if not released:
            return result  # nothing changed: nothing to audit
        faults.point("quarantine.data_committed")
        details = {"op": op_id, "batch": batch_id, "rows": len(released),
                   "kept": len(kept), "force": force, "ids": _span(released)}  # fmt: skip
        self._audit(actor, "data.quarantine.release", table, details, op_id)
        return result

    def drop(self, ids_or_batch: Any, actor: Actor) -> dict[str, Any]:
        """Delete held rows for good."""
        require(actor, "data.quarantine")
        rows = self._select(ids_or_batch)
        table = rows[0]["table_name"]
        ids = [r["id"] for r in rows]
        op_id = uuid.uuid4().hex
        with self.features.transaction() as tx:
            tx.start_quarantine_op(op_id, "drop", table, ids, None, now_utc())
        faults.point("quarantine.data_committed")
        details = {"op": op_id, "rows": len(ids), "ids": _span(ids),
                   "batches": sorted({r["batch_id"] for r in rows})}  # fmt: skip
        self._audit(actor, "data.quarantine.drop", table, details, op_id)
        return {"table": table, "dropped": len(ids)}

    def _audit(
        self, actor: Actor, action: str, table: str, details: dict[str, Any], op_id: str
    ) -> None:
        try:
            with self.control.transaction() as tx:
                tx.append_audit(actor, action, table, details)
        except BaseException:
            self._undo(op_id, details.get("batch"))
            raise
        with self.features.transaction() as tx:
            tx.finish_quarantine_op(op_id)

    def _undo(self, op_id: str, batch_id: str | None) -> None:
        with self.features.transaction() as tx:
            if batch_id:
                tx.undo_ingest(batch_id)
            tx.undo_quarantine_op(op_id)

    def reconcile(self) -> builtins.list[str]:
        """Finish the releases and drops whose event committed; undo (and audit) those
        whose event did not. The operations settled."""
        settled = []
        for op in self.features.quarantine_ops():
            action = f"data.quarantine.{op['action']}"
            events = self.control.audit_find(action, op["table_name"])
            if any(e["details"].get("op") == op["op_id"] for e in events):
                with self.features.transaction() as tx:
                    tx.finish_quarantine_op(op["op_id"])
            else:
                self._undo(op["op_id"], op["batch_id"])
                with self.control.transaction() as tx:
                    tx.append_audit(SYSTEM, "reconcile.rollback", op["table_name"],
                                    {"change": action, "op": op["op_id"],
                                     "rows": op["rows"]})  # fmt: skip
            settled.append(op["op_id"])
        return settled


def _parse_ref(ref: Any) -> tuple[builtins.list[int] | None, str | None]:
    """Row ids (an int, a list of ints, '17', '17,18') or a batch id."""
    if isinstance(ref, bool):
        raise BadInput(f"quarantine: {ref!r} is not a row id or a batch id")
    if isinstance(ref, int):
        return [ref], None
    if isinstance(ref, list | tuple | set):
        if not ref or not all(isinstance(i, int) and not isinstance(i, bool) for i in ref):
            raise BadInput(f"quarantine: {ref!r} is not a list of row ids")
        return sorted(set(ref)), None
    if isinstance(ref, str):
        text = ref.strip()
        if re.fullmatch(r"\d+(\s*,\s*\d+)*", text):
            return sorted({int(i) for i in text.split(",")}), None
        if BATCH_RE.match(text):
            return None, text
    raise BadInput(f"quarantine: {ref!r} is not a row id (a number) or a batch id "
                   "(32 hex digits; see `falaj quarantine list`)")  # fmt: skip


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r["id"], "batch": r["batch_id"], "row": r["row_number"],
            "values": r["row_values"], "reasons": [x["message"] for x in r["reasons"]],
            "rules": [x["rule"] for x in r["reasons"]]}  # fmt: skip


def _span(ids: builtins.list[int]) -> builtins.list[int] | dict[str, int]:
    """Ids for an audit event: listed when few, else their range and count."""
    return ids if len(ids) <= 50 else {"first": min(ids), "last": max(ids), "count": len(ids)}
