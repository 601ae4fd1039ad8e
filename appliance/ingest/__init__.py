"""Ingest: a file, a database table or an in-memory frame into a feature table, all rows
or none, checked against the table's contract, audited.

    app.ingestion.ingest("tx.parquet", "transactions", "customer_id", "event_time", actor)
    app.ingestion.ingest(df, "transactions", None, None, actor)  # keys from the workspace
    app.ingestion.ingest("shop.sqlite", "orders", "id", "ts", actor, from_table="orders")

Sources are listed in ``ingest.sources``, contracts in ``ingest.contracts``. When the
workspace declares the table (``falaj apply``), its entity, event-time and created-time
columns are the defaults, and a different one given is refused.

Every row gets a ``_seq`` (unique and increasing across the store, in ingest order),
``_batch_id`` and ``_ingested_at``. Under a contract with policy ``quarantine``, rows
that break it go to the quarantine with their reasons while the others land; every
input row is one or the other. Every ingest stores a quality report keyed by its batch.

Commit point: the ``data.ingest`` audit event. The rows, their ``_ingests`` record, the
quarantined rows and the quality report commit first in features.duckdb, in one
transaction, tagged with the batch id; the audit event that names the batch commits
second in control.db. A crash between the two leaves a batch with no event, which
``reconcile`` (run whenever the appliance opens) removes, with its report and its
quarantined rows, and audits. Releases and drops of quarantined rows are reconciled
here too (see ``ingest.quarantine``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from appliance import faults
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import BadInput
from appliance.ingest import landing, sources
from appliance.ingest.contracts import TableSpec
from appliance.ingest.validate import Progress, check_batches, make_plan
from appliance.names import check_name
from appliance.stores import ControlStore, FeatureStore
from appliance.stores.staging import Staging

AUDITED_BATCHES = ("data.ingest", "data.quarantine.release")  # events that name a batch


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class IngestService:
    def __init__(self, features: FeatureStore, control: ControlStore) -> None:
        self.features = features
        self.control = control
        # compliance.shredding's hook over checked batches: seals personal columns,
        # quarantines rows of subjects who withdrew consent (set by the Appliance)
        self.protect: Any = None

    def table_spec(self, table: str) -> TableSpec | None:
        """The workspace's declaration of a table, or None."""
        spec = self.control.table_spec(table)
        if spec is None:
            return None
        return TableSpec.from_dict(table, spec, f"workspace table {table!r}")

    def _keys(
        self, table: str, spec: TableSpec | None, entity: str | None, timestamp: str | None,
        created: str | None,
    ) -> tuple[str, str, str | None]:  # fmt: skip
        """The entity, event-time and created-time columns: given, declared or stored."""
        known = self.features.table_keys(table)
        stored_created = self.features.created_column(table) if known else None
        if spec is not None:
            for flag, given, declared in (("--entity", entity, spec.entity),
                                          ("--timestamp", timestamp, spec.event_time),
                                          ("--created", created, spec.created_time)):  # fmt: skip
                if given is not None and given != declared:
                    raise BadInput(f"{flag} {given!r} contradicts the workspace, which declares "
                                   f"table {table!r} with {declared!r}")  # fmt: skip
            entity, timestamp, created = spec.entity, spec.event_time, spec.created_time
        elif known is not None:
            entity = entity or known[0]
            timestamp = timestamp or known[1]
            created = created or stored_created
        if entity is None or timestamp is None:
            raise BadInput(f"table {table!r} is new and not declared in the workspace: give "
                           "its entity and timestamp columns (--entity, --timestamp)")  # fmt: skip
        if known is not None and known != (entity, timestamp):
            raise BadInput(
                f"table {table!r} has entity {known[0]!r} and timestamp {known[1]!r}, "
                f"not {entity!r} and {timestamp!r}"
            )
        if known is not None and created != stored_created:
            raise BadInput(
                f"table {table!r} has created-time column {stored_created!r}, not {created!r}"
            )
        return entity, timestamp, created

    def ingest(
        self,
        source: Any,
        table: str,
        entity: str | None = None,
        timestamp: str | None = None,
        actor: Actor | None = None,
        label: str | None = None,
        *,
        created: str | None = None,
        from_table: str | None = None,
        progress: Progress | None = None,
        correction: bool = False,
    ) -> dict[str, Any]:
        """Append a file (CSV, Parquet, NDJSON, Arrow IPC, a table of a SQLite or DuckDB
        file named by ``from_table``) or an in-memory frame (pyarrow, pandas, Polars;
        named ``label`` in errors) to a table: the rows that pass its contract land, the
        others are refused or quarantined, all in one transaction. ``progress(done,
        total, unit)`` is called as the source is read. A ``correction`` (a data subject's
        rectification) may repeat a stored (entity, event time) under a unique key: its
        later created time and ``_seq`` make it the version reads take."""
        if actor is None:
            raise TypeError("ingest() needs the acting principal (actor)")
        require(actor, "data.ingest")
        check_name("table", table)
        spec = self.table_spec(table)
        entity, timestamp, created = self._keys(table, spec, entity, timestamp, created)
        src = sources.open_source(source, from_table=from_table, label=label)
        where = src.where
        existing = self.features.column_types(table)
        personal = _personal(table, spec, existing)
        if personal and existing is not None:  # checked as text, sealed after the checks
            existing = {c: "VARCHAR" if c in personal else t for c, t in existing.items()}
        contract = spec.contract if spec else None
        batch_id = uuid.uuid4().hex
        now = now_utc()
        with Staging() as staging:
            plan = make_plan(src, entity, timestamp, created, existing, contract, now,
                             staging, progress)  # fmt: skip
            plan.types.update({c: "VARCHAR" for c in personal if c in plan.types})
            plan.unique = plan.unique and not correction
            with self.features.bulk_transaction() as tx:
                if existing is None:
                    types = {c: "BLOB" if c in personal else t for c, t in plan.types.items()}
                    tx.create_table(table, types, entity, timestamp, now, created)
                checked = check_batches(src, plan, staging, progress)
                if self.protect is not None:
                    checked = self.protect(table, entity, personal, checked)
                landed = landing.land_batches(tx, plan, checked, table, batch_id, where, now)
                if landed.rows_in == 0:
                    raise BadInput(f"{where}: has no rows")
                landing.settle_duplicates(tx, plan, table, batch_id, landed, where, now)
                newest = tx.newest_event(table, timestamp, batch_id)
                report = landed.report(plan, batch_id, table, "ingest", where, now, newest)
                tx.record_ingest(batch_id, table, where, landed.landed, now, actor)
                tx.record_report(report)
                total = tx.row_count(table)
        faults.point("ingest.data_committed")
        details = {"file": where, "rows": landed.landed, "batch": batch_id,
                   "created": existing is None, "rows_in": landed.rows_in,
                   "quarantined": landed.quarantined}  # fmt: skip
        try:
            with self.control.transaction() as tx:
                tx.append_audit(actor, "data.ingest", table, details)
        except BaseException:
            self._undo(batch_id)
            raise
        return {
            "table": table,
            "rows": landed.landed,
            "rows_in": landed.rows_in,
            "quarantined": landed.quarantined,
            "total_rows": total,
            "batch": batch_id,
            "columns": plan.types,
            "report": _public(report),
        }

    def quality_reports(
        self, actor: Actor, table: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Quality reports, newest first: rows in, landed, quarantined, count per rule,
        the newest event time and how old it was at ingest."""
        require(actor, "data.read")
        if table is not None:
            check_name("table", table)
        return [_public(r) for r in self.features.quality_reports(table, limit)]

    def _undo(self, batch_id: str) -> str | None:
        with self.features.transaction() as tx:
            return tx.undo_ingest(batch_id)

    def reconcile(self) -> list[str]:
        """Settle quarantine releases and drops a crash left pending, then remove ingest
        batches whose audit event never committed; audit each removal."""
        from appliance.ingest.quarantine import Quarantine

        Quarantine(self.features, self.control).reconcile()
        # Events commit only after their batch, so equal counts mean nothing to settle:
        # two counts instead of reading every batch and event, at every open.
        events = sum(self.control.audit_action_count(a) for a in AUDITED_BATCHES)
        if self.features.change_counts()["ingests"] == events:
            return []
        audited = {d.get("batch") for a in AUDITED_BATCHES for d in self.control.audit_details(a)}
        undone = []
        for batch in self.features.ingest_batches():
            if batch["batch_id"] in audited:
                continue
            table = self._undo(batch["batch_id"])
            with self.control.transaction() as tx:
                tx.append_audit(
                    SYSTEM, "reconcile.rollback", table or batch["table_name"],
                    {"change": "data.ingest", "batch": batch["batch_id"], "rows": batch["rows"]},
                )  # fmt: skip
            undone.append(batch["batch_id"])
        return undone


def _personal(table: str, spec: TableSpec | None, existing: dict[str, str] | None
              ) -> tuple[str, ...]:  # fmt: skip
    """The table's personal columns; a table stored before they were declared is refused
    (its values are plaintext: they cannot be shredded)."""
    personal = spec.personal if spec else ()
    for c in personal if existing is not None else ():
        if c in existing and existing[c] != "BLOB":
            raise BadInput(f"table {table!r}: column {c!r} is declared personal but is stored "
                           f"as plaintext {existing[c]}; declare personal columns before a "
                           "table's first ingest (or ingest into a new table)")  # fmt: skip
    return personal


def _public(report: dict[str, Any]) -> dict[str, Any]:
    out = dict(report)
    out["batch"] = out.pop("batch_id")
    out["table"] = out.pop("table_name")
    return out
