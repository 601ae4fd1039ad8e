"""Ingest: a file or an Arrow table into a feature table, all rows or none, audited.

Commit point: the ``data.ingest`` audit event. The rows and their ``_ingests`` record
commit first in features.duckdb, tagged with the batch id; the audit event that names
the batch commits second in control.db. A crash between the two leaves a batch with no
event, which ``reconcile`` (run whenever the appliance opens) removes and audits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from appliance import faults
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import BadInput
from appliance.ingest.validate import prepare
from appliance.names import check_name
from appliance.stores import ControlStore, FeatureStore


class IngestService:
    def __init__(self, features: FeatureStore, control: ControlStore) -> None:
        self.features = features
        self.control = control

    def ingest(
        self,
        source: str | Path | pa.Table,
        table: str,
        entity: str,
        timestamp: str,
        actor: Actor,
        label: str | None = None,
        *,
        created: str | None = None,
    ) -> dict[str, Any]:
        """Append a CSV/Parquet file or an Arrow table to a table, all rows or none."""
        require(actor, "data.ingest")
        check_name("table", table)
        existing = self.features.column_types(table)
        known_keys = self.features.table_keys(table)
        if existing is not None and created != self.features.created_column(table):
            raise BadInput(
                f"table {table!r} has created-time column "
                f"{self.features.created_column(table)!r}, not {created!r}"
            )
        if known_keys is not None and known_keys != (entity, timestamp):
            raise BadInput(
                f"table {table!r} has entity {known_keys[0]!r} and timestamp {known_keys[1]!r}, "
                f"not {entity!r} and {timestamp!r}"
            )
        if isinstance(source, pa.Table):
            where = label or "data"
            prepared = prepare(source, entity, timestamp, existing, label=where)
        else:
            where = str(Path(source).resolve())
            prepared = prepare(Path(source), entity, timestamp, existing)
        if created is not None and created not in prepared.types:
            raise BadInput(f"{where}: the created-time column {created!r} is missing")
        batch_id = uuid.uuid4().hex
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = prepared.table.append_column(
            "_batch_id", pa.array([batch_id] * prepared.rows, pa.string())
        ).append_column("_ingested_at", pa.array([now] * prepared.rows, pa.timestamp("us")))
        with self.features.transaction() as tx:
            if existing is None:
                tx.create_table(table, prepared.types, entity, timestamp, now, created)
            tx.append(table, rows)
            tx.record_ingest(batch_id, table, where, prepared.rows, now, actor)
            total = tx.row_count(table)
        faults.point("ingest.data_committed")
        details = {"file": where, "rows": prepared.rows, "batch": batch_id,
                   "created": existing is None}  # fmt: skip
        try:
            with self.control.transaction() as tx:
                tx.append_audit(actor, "data.ingest", table, details)
        except BaseException:
            self._undo(batch_id)
            raise
        return {
            "table": table,
            "rows": prepared.rows,
            "total_rows": total,
            "batch": batch_id,
            "columns": prepared.types,
        }

    def _undo(self, batch_id: str) -> str | None:
        with self.features.transaction() as tx:
            return tx.undo_ingest(batch_id)

    def reconcile(self) -> list[str]:
        """Remove ingest batches whose audit event never committed; audit each removal."""
        # Events commit only after their batch, so equal counts mean nothing to settle:
        # two counts instead of reading every batch and event, at every open.
        if self.features.change_counts()["ingests"] == self.control.audit_action_count(
            "data.ingest"
        ):
            return []
        audited = {d.get("batch") for d in self.control.audit_details("data.ingest")}
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
