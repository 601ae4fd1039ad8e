"""features.duckdb: row identity, ingest quality reports and quarantined rows.

A mixin pair: ``QualityTx`` methods join ``FeaturesTx`` (they run inside its transaction,
through ``self.conn``); ``QualityReads`` methods join ``FeatureStore`` (through ``self.query``).
Its migrations are appended to the store's list, in the order the store names them.

- ``_row_seq`` holds the next ``_seq``: every row of every feature table gets one, unique
  and increasing across the store in ingest order, reserved inside the ingest's
  transaction (a rolled-back ingest gives its numbers back). A quarantined row keeps the
  number it was given as its quarantine id.
- ``_tables.created_col`` names a table's created-time column (None: the ingest time).
- ``_quality_reports``: one per ingest or release batch, in the same transaction as it.
- ``_quarantine``: rows that broke a ``quarantine`` contract, with their original values
  (JSON, as text) and every reason. A release or drop first marks its rows with an
  operation id (``_quarantine_ops`` holds it while pending), then its audit event
  commits, then the marked rows are deleted: ``reconcile`` finishes an audited operation
  and undoes one whose event never committed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pyarrow as pa

from appliance.stores import migrations
from appliance.stores.sqltext import ident, literal

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0003_quality",
        """
        ALTER TABLE _tables ADD COLUMN created_col TEXT;
        CREATE TABLE _row_seq (next_seq BIGINT NOT NULL);
        INSERT INTO _row_seq VALUES (1);
        CREATE TABLE _quality_reports (
            batch_id TEXT PRIMARY KEY,
            table_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            reported_at TIMESTAMP NOT NULL,
            policy TEXT,
            rows_in BIGINT NOT NULL,
            rows_landed BIGINT NOT NULL,
            rows_quarantined BIGINT NOT NULL,
            rules TEXT NOT NULL,
            newest_event TIMESTAMP,
            freshness_seconds DOUBLE
        );
        CREATE TABLE _quarantine (
            id BIGINT PRIMARY KEY,
            batch_id TEXT NOT NULL,
            table_name TEXT NOT NULL,
            source TEXT NOT NULL,
            row_number BIGINT NOT NULL,
            quarantined_at TIMESTAMP NOT NULL,
            row_values TEXT NOT NULL,
            reasons TEXT NOT NULL,
            op_id TEXT
        );
        CREATE TABLE _quarantine_ops (
            op_id TEXT PRIMARY KEY,
            action TEXT NOT NULL,
            table_name TEXT NOT NULL,
            batch_id TEXT,
            started_at TIMESTAMP NOT NULL,
            rows BIGINT NOT NULL
        )
        """,
    ),
]

REPORT_COLUMNS = ("batch_id", "table_name", "kind", "source", "reported_at", "policy", "rows_in",
                  "rows_landed", "rows_quarantined", "rules", "newest_event",
                  "freshness_seconds")  # fmt: skip


class QualityTx:
    conn: Any

    # -- row identity ----------------------------------------------------------

    def reserve_seq(self, n: int) -> int:
        """Reserve ``n`` consecutive ``_seq`` numbers; the first."""
        first = self.conn.execute("SELECT next_seq FROM _row_seq").fetchone()[0]
        self.conn.execute("UPDATE _row_seq SET next_seq = ?", [first + n])
        return first

    def number_rows(self, table: str) -> bool:
        """Give a table made before ``_seq`` existed the column, its rows numbered in
        their stored order; False (and nothing done) when it has it already."""
        cols = {
            r[0]
            for r in self.conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = ? AND table_catalog = current_database()",
                [table],
            ).fetchall()
        }
        if "_seq" in cols:
            return False
        q = ident(table)
        n = self.conn.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
        first = self.reserve_seq(n)
        self.conn.execute(f"ALTER TABLE {q} ADD COLUMN _seq BIGINT")
        self.conn.execute(
            f"UPDATE {q} SET _seq = s.n FROM (SELECT rowid AS r, ? - 1 + row_number() "
            f"OVER (ORDER BY rowid) AS n FROM {q}) s WHERE {q}.rowid = s.r",
            [first],
        )
        return True

    # -- uniqueness of (entity, event time) -------------------------------------

    def find_duplicates(self, table: str, entity: str, timestamp: str, batch_id: str) -> int:
        """Collect (in the temporary table ``_dups``) the rows of a batch whose entity and
        event time an earlier row (by ``_seq``: stored, or earlier in the batch) has;
        how many. ``first_seq`` and ``first_batch`` name that earlier row."""
        t, e, ts = ident(table), ident(entity), ident(timestamp)
        self.conn.execute(
            "CREATE OR REPLACE TEMP TABLE _dups AS SELECT _seq, first_seq, first_batch, "
            f"{e}::VARCHAR AS entity, {ts}::VARCHAR AS event_time FROM ("
            f"SELECT _seq, _batch_id, {e}, {ts}, "
            "first_value(_seq) OVER w AS first_seq, first_value(_batch_id) OVER w AS first_batch "
            f"FROM {t} SEMI JOIN (SELECT DISTINCT {e}, {ts} FROM {t} WHERE _batch_id = ?) k "
            f"USING ({e}, {ts}) WINDOW w AS (PARTITION BY {e}, {ts} ORDER BY _seq)) "
            "WHERE _batch_id = ? AND _seq > first_seq",
            [batch_id, batch_id],
        )
        return self.conn.execute("SELECT count(*) FROM temp._dups").fetchone()[0]

    def duplicates(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The rows ``find_duplicates`` collected, in ``_seq`` order."""
        cur = self.conn.execute(
            "SELECT * FROM temp._dups ORDER BY _seq" + (" LIMIT ?" if limit else ""),
            [limit] if limit else [],
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def quarantine_duplicates(
        self, table: str, columns: list[str], key: str, rule: str, seq0: int, source: str,
        at: datetime,
    ) -> int:  # fmt: skip
        """Move the collected duplicates from the table into the quarantine, each with
        its reason (``key`` names the key columns, ``rule`` the rule); how many. ``seq0`` is the ``_seq``
        of the input's row 1."""
        t = ident(table)
        # r.: a user column may be named like one of _dups' (entity, event_time)
        values = ", ".join(f"{literal(c)}, r.{ident(c)}::VARCHAR" for c in columns)
        self.conn.execute(
            "INSERT INTO _quarantine (id, batch_id, table_name, source, row_number, "
            "quarantined_at, row_values, reasons) "
            f"SELECT d._seq, r._batch_id, ?, ?, d._seq - ? + 1, ?, json_object({values})::VARCHAR, "
            "json_array(json_object('rule', ?, 'message', "
            "? || ': (' || d.entity || ', ' || d.event_time || ') ' || "
            "CASE WHEN d.first_seq >= ? THEN 'repeats row ' || (d.first_seq - ? + 1) "
            "ELSE 'is already stored (batch ' || d.first_batch || ')' END))::VARCHAR "
            f"FROM {t} r JOIN temp._dups d USING (_seq)",
            [table, source, seq0, at, rule, key, seq0, seq0],
        )
        n = self.conn.execute("SELECT count(*) FROM temp._dups").fetchone()[0]
        self.conn.execute(f"DELETE FROM {t} WHERE _seq IN (SELECT _seq FROM temp._dups)")
        return n

    def remove_rows(self, table: str, seqs: list[int]) -> None:
        self.conn.execute(
            f"DELETE FROM {ident(table)} WHERE _seq IN (SELECT unnest(?::BIGINT[]))", [seqs]
        )

    def drop_duplicates(self) -> None:
        self.conn.execute("DROP TABLE IF EXISTS temp._dups")

    def newest_event(self, table: str, timestamp: str, batch_id: str) -> datetime | None:
        return self.conn.execute(
            f"SELECT max({ident(timestamp)}) FROM {ident(table)} WHERE _batch_id = ?",
            [batch_id],
        ).fetchone()[0]

    # -- quality reports -------------------------------------------------------

    def record_report(self, report: dict[str, Any]) -> None:
        values = [report.get(c) for c in REPORT_COLUMNS]
        values[REPORT_COLUMNS.index("rules")] = json.dumps(report.get("rules") or {})
        marks = ", ".join("?" for _ in REPORT_COLUMNS)
        self.conn.execute(
            f"INSERT INTO _quality_reports ({', '.join(REPORT_COLUMNS)}) VALUES ({marks})",
            values,
        )

    # -- quarantine ------------------------------------------------------------

    def quarantine_rows(self, rows: pa.Table) -> None:
        """Insert quarantined rows: id, batch_id, table_name, source, row_number,
        quarantined_at, row_values (JSON), reasons (JSON), op_id (null), in that order."""
        # through a relation: a view registered in a transaction lives until its commit
        self.conn.from_arrow(rows).insert_into("_quarantine")

    def start_quarantine_op(
        self, op_id: str, action: str, table: str, ids: list[int], batch_id: str | None,
        at: datetime,
    ) -> None:  # fmt: skip
        """Mark rows as taken by a pending release or drop."""
        self.conn.execute(
            "INSERT INTO _quarantine_ops VALUES (?, ?, ?, ?, ?, ?)",
            [op_id, action, table, batch_id, at, len(ids)],
        )
        self.conn.execute(
            "UPDATE _quarantine SET op_id = ? WHERE id IN (SELECT unnest(?::BIGINT[]))",
            [op_id, ids],
        )

    def finish_quarantine_op(self, op_id: str) -> int:
        """Delete the rows an audited operation took; how many."""
        n = self.conn.execute(
            "SELECT count(*) FROM _quarantine WHERE op_id = ?", [op_id]
        ).fetchone()[0]
        self.conn.execute("DELETE FROM _quarantine WHERE op_id = ?", [op_id])
        self.conn.execute("DELETE FROM _quarantine_ops WHERE op_id = ?", [op_id])
        return n

    def undo_quarantine_op(self, op_id: str) -> None:
        """Give back the rows of an operation whose event never committed."""
        self.conn.execute("UPDATE _quarantine SET op_id = NULL WHERE op_id = ?", [op_id])
        self.conn.execute("DELETE FROM _quarantine_ops WHERE op_id = ?", [op_id])

    def forget_batch_quality(self, batch_id: str) -> None:
        """Remove a batch's report and the rows it quarantined (its ingest is undone)."""
        self.conn.execute("DELETE FROM _quality_reports WHERE batch_id = ?", [batch_id])
        self.conn.execute("DELETE FROM _quarantine WHERE batch_id = ?", [batch_id])


class QualityReads:
    def query(self, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]: ...

    def created_column(self, table: str) -> str | None:
        """The column holding a table's created time, or None (the ingest time)."""
        rows = self.query("SELECT created_col FROM _tables WHERE table_name = ?", [table])
        return rows[0]["created_col"] if rows else None

    def quality_reports(self, table: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, params = ("WHERE table_name = ?", [table]) if table else ("", [])
        rows = self.query(
            f"SELECT * FROM _quality_reports {where} ORDER BY reported_at DESC, batch_id LIMIT ?",
            [*params, limit],
        )
        for r in rows:
            r["rules"] = json.loads(r["rules"])
        return rows

    def quality_report(self, batch_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM _quality_reports WHERE batch_id = ?", [batch_id])
        if not rows:
            return None
        rows[0]["rules"] = json.loads(rows[0]["rules"])
        return rows[0]

    def quarantine_batches(
        self, table: str | None = None, batch: str | None = None
    ) -> list[dict[str, Any]]:
        """Per batch with held rows: table, source, time, rows, id range and how many
        rows break each rule (``rules``: rule -> rows)."""
        conds, params = ["op_id IS NULL"], []
        if table:
            conds.append("table_name = ?")
            params.append(table)
        if batch:
            conds.append("batch_id = ?")
            params.append(batch)
        where = " AND ".join(conds)
        batches = self.query(
            "SELECT batch_id, table_name, any_value(source) AS source, "
            "min(quarantined_at) AS quarantined_at, count(*) AS rows, "
            "min(id) AS first_id, max(id) AS last_id "
            f"FROM _quarantine WHERE {where} "
            "GROUP BY batch_id, table_name ORDER BY min(quarantined_at) DESC, batch_id",
            params,
        )
        counts = self.query(
            "SELECT batch_id, rule, count(DISTINCT id) AS n FROM (SELECT batch_id, id, "
            "unnest(json_extract_string(reasons, '$[*].rule')) AS rule "
            f"FROM _quarantine WHERE {where}) GROUP BY ALL ORDER BY rule",
            params,
        )
        for b in batches:
            b["rules"] = {c["rule"]: c["n"] for c in counts if c["batch_id"] == b["batch_id"]}
        return batches

    def quarantined(
        self, ids: list[int] | None = None, batch: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Held rows (by ids or batch), in id order, values and reasons decoded; the
        first ``limit`` of them if given."""
        if ids is not None:
            cond, params = "id IN (SELECT unnest(?::BIGINT[]))", [ids]
        else:
            cond, params = "batch_id = ?", [batch]
        if limit is not None:
            cond += " ORDER BY id LIMIT ?"
            params.append(limit)
        else:
            cond += " ORDER BY id"
        rows = self.query(f"SELECT * FROM _quarantine WHERE op_id IS NULL AND {cond}", params)
        for r in rows:
            r["row_values"] = json.loads(r["row_values"])
            r["reasons"] = json.loads(r["reasons"])
        return rows

    def quarantined_count(self, ids: list[int] | None = None, batch: str | None = None) -> int:
        if ids is not None:
            cond, params = "id IN (SELECT unnest(?::BIGINT[]))", [ids]
        else:
            cond, params = "batch_id = ?", [batch]
        return self.query(
            f"SELECT count(*) AS n FROM _quarantine WHERE op_id IS NULL AND {cond}", params
        )[0]["n"]

    def quarantine_ops(self) -> list[dict[str, Any]]:
        """Releases and drops still pending (only after a crash)."""
        return self.query("SELECT * FROM _quarantine_ops ORDER BY started_at")
