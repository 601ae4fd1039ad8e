"""Landing checked rows in a feature table, inside one features.duckdb transaction:
numbering them (``_seq``), tagging them with their batch, keeping the rows that broke a
rule in the quarantine, settling the uniqueness of (entity, event time) and writing the
batch's quality report. Shared by ingest and by a quarantine release."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from appliance.errors import BadInput
from appliance.ingest.validate import Checked, Plan, row_where
from appliance.stores.features import FeaturesTx
from appliance.stores.staging import ROW

QUARANTINE_SCHEMA = pa.schema([
    ("id", pa.int64()), ("batch_id", pa.string()), ("table_name", pa.string()),
    ("source", pa.string()), ("row_number", pa.int64()), ("quarantined_at", pa.timestamp("us")),
    ("row_values", pa.string()), ("reasons", pa.string()), ("op_id", pa.string()),
])  # fmt: skip


@dataclass
class Landed:
    rows_in: int = 0
    landed: int = 0
    quarantined: int = 0
    seq0: int | None = None  # the _seq of row 1
    counts: Counter[str] = field(default_factory=Counter)
    row_seqs: dict[int, int] = field(default_factory=dict)  # row -> _seq, if asked

    def report(
        self, plan: Plan, batch_id: str, table: str, kind: str, source: str, at: datetime,
        newest: datetime | None,
    ) -> dict[str, Any]:  # fmt: skip
        return {
            "batch_id": batch_id, "table_name": table, "kind": kind, "source": source,
            "reported_at": at, "policy": plan.policy, "rows_in": self.rows_in,
            "rows_landed": self.landed, "rows_quarantined": self.quarantined,
            "rules": dict(sorted(self.counts.items())), "newest_event": newest,
            "freshness_seconds": (at - newest).total_seconds() if newest else None,
        }  # fmt: skip


def land_batches(
    tx: FeaturesTx,
    plan: Plan,
    checked: Iterable[Checked],
    table: str,
    batch_id: str,
    source: str,
    at: datetime,
    keep_seqs: bool = False,
) -> Landed:
    """Append each checked batch's good rows and quarantine its bad ones."""
    out = Landed()
    for ch in checked:
        first = tx.reserve_seq(ch.rows)
        if out.seq0 is None:
            out.seq0 = first - ch.first_row + 1
        offset = first - ch.first_row
        out.rows_in += ch.rows
        n = ch.landed.num_rows
        if n:
            rows_col = ch.landed.column(ROW)
            seq = pc.add(rows_col, pa.scalar(offset, pa.int64()))
            if keep_seqs:
                out.row_seqs.update(zip(rows_col.to_pylist(), seq.to_pylist(), strict=True))
            rows = (
                ch.landed.drop_columns([ROW])
                .append_column(
                    "_batch_id", pa.array(np.full(n, batch_id, dtype=object), pa.string())
                )
                .append_column("_ingested_at", pa.array(np.full(n, at), pa.timestamp("us")))
                .append_column("_seq", seq)
            )
            tx.append(table, rows)
            out.landed += n
        if ch.failed:
            tx.quarantine_rows(pa.table({
                "id": [f["row"] + offset for f in ch.failed],
                "batch_id": [batch_id] * len(ch.failed),
                "table_name": [table] * len(ch.failed),
                "source": [source] * len(ch.failed),
                "row_number": [f["row"] for f in ch.failed],
                "quarantined_at": [at] * len(ch.failed),
                "row_values": [json.dumps(f["values"]) for f in ch.failed],
                "reasons": [json.dumps(f["reasons"]) for f in ch.failed],
                "op_id": [None] * len(ch.failed),
            }, schema=QUARANTINE_SCHEMA))  # fmt: skip
            out.quarantined += len(ch.failed)
            out.counts.update(ch.counts)
    return out


def settle_duplicates(
    tx: FeaturesTx, plan: Plan, table: str, batch_id: str, landed: Landed, source: str,
    at: datetime,
) -> int:  # fmt: skip
    """Under a unique key, the batch's rows whose (entity, event time) an earlier row
    has: refused (policy refuse), or moved to the quarantine. Returns how many."""
    if not plan.unique or not landed.landed:
        return 0
    n = tx.find_duplicates(table, plan.entity, plan.timestamp, batch_id)
    try:
        if not n:
            return 0
        key = f"{plan.entity}, {plan.timestamp}"
        if plan.policy == "refuse":
            d = tx.duplicates(limit=1)[0]
            row = d["_seq"] - landed.seq0 + 1
            seen = (f"repeats {row_where(d['first_seq'] - landed.seq0 + 1, plan.lines)}"
                    if d["first_seq"] >= landed.seq0 else "is already stored")  # fmt: skip
            raise BadInput(
                f"{plan.where}: {row_where(row, plan.lines)}, column {plan.entity!r}: "
                f"({key}) = ({d['entity']}, {d['event_time']}) {seen} (contract: unique_key)"
            )
        rule = f"unique_key:{plan.entity}"
        tx.quarantine_duplicates(table, list(plan.types), key, rule, landed.seq0, source, at)
    finally:
        tx.drop_duplicates()
    landed.landed -= n
    landed.quarantined += n
    landed.counts[rule] += n
    return n
