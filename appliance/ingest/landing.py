"""Landing checked rows in a feature table, inside one features.duckdb transaction:
numbering them (``_seq``), tagging them with their batch, keeping the rows that broke a
rule in the quarantine, settling the uniqueness of (entity, event time) and writing the
batch's quality report. Shared by ingest and by a quarantine release."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
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


# Rows per INSERT statement. DuckDB writes the full row groups of one large INSERT
# straight to the file; many small INSERTs in one transaction would instead keep every
# row in transaction-local storage (spilled, but with pinned memory growing with it).
CHUNK_ROWS = 1 << 20


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
    """Append each checked batch's good rows and quarantine its bad ones. Batches stream
    into one INSERT per ``CHUNK_ROWS`` input rows; row N gets ``_seq`` seq0 + N - 1 (the
    numbers are reserved once the count is known: this transaction holds the writer)."""
    out = Landed()
    out.seq0 = tx.reserve_seq(0)
    offset = out.seq0 - 1
    it = iter(checked)
    while (ch := next(it, None)) is not None:
        failed: list[dict[str, Any]] = []
        errors: list[BaseException] = []

        def stream(
            ch: Checked | None,
            failed: list[dict[str, Any]] = failed,
            errors: list[BaseException] = errors,
        ) -> Iterator[pa.RecordBatch]:
            """This chunk's landing rows; pulled by DuckDB while the INSERT runs, so an
            error is kept for after it (DuckDB would only see a failed stream)."""
            rows_in = 0
            try:
                while ch is not None:
                    out.rows_in += ch.rows
                    rows_in += ch.rows
                    failed.extend(ch.failed)
                    out.counts.update(ch.counts)
                    if ch.landed.num_rows:
                        yield from _with_identity(ch, out, offset, batch_id, at, keep_seqs)
                    if rows_in >= CHUNK_ROWS:
                        return
                    ch = next(it, None)
            except BaseException as exc:  # noqa: BLE001 -- re-raised after the INSERT
                errors.append(exc)

        schema = _schema(ch)
        tx.append_stream(table, schema, stream(ch))
        if errors:
            raise errors[0]
        if failed:
            _quarantine(tx, failed, offset, batch_id, table, source, at)
            out.quarantined += len(failed)
    tx.reserve_seq(out.rows_in)
    return out


def _schema(ch: Checked) -> pa.Schema:
    return (
        ch.landed.schema.remove(ch.landed.schema.get_field_index(ROW))
        .append(pa.field("_batch_id", pa.string()))
        .append(pa.field("_ingested_at", pa.timestamp("us")))
        .append(pa.field("_seq", pa.int64()))
    )


def _with_identity(
    ch: Checked, out: Landed, offset: int, batch_id: str, at: datetime, keep_seqs: bool
) -> Iterator[pa.RecordBatch]:
    n = ch.landed.num_rows
    rows_col = ch.landed.column(ROW)
    seq = pc.add(rows_col, pa.scalar(offset, pa.int64()))
    if keep_seqs:
        out.row_seqs.update(zip(rows_col.to_pylist(), seq.to_pylist(), strict=True))
    rows = (
        ch.landed.drop_columns([ROW])
        .append_column("_batch_id", pa.array(np.full(n, batch_id, dtype=object), pa.string()))
        .append_column("_ingested_at", pa.array(np.full(n, at), pa.timestamp("us")))
        .append_column("_seq", seq)
    )
    out.landed += n
    yield from rows.to_batches()


def _quarantine(
    tx: FeaturesTx, failed: list[dict[str, Any]], offset: int, batch_id: str, table: str,
    source: str, at: datetime,
) -> None:  # fmt: skip
    n = len(failed)
    tx.quarantine_rows(pa.table({
        "id": [f["row"] + offset for f in failed],
        "batch_id": [batch_id] * n,
        "table_name": [table] * n,
        "source": [source] * n,
        "row_number": [f["row"] for f in failed],
        "quarantined_at": [at] * n,
        "row_values": [json.dumps(f["values"]) for f in failed],
        "reasons": [json.dumps(f["reasons"]) for f in failed],
        "op_id": [None] * n,
    }, schema=QUARANTINE_SCHEMA))  # fmt: skip


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
