"""control.db: the index of the audit chain's signed checkpoints.

A mixin pair like ``runs.py``: ``AuditTx`` joins ``ControlTx``, ``AuditReads`` joins
``ControlStore``. The checkpoints themselves live outside the store, one signed JSON
line each in ``audit/checkpoints.log`` (``appliance.audit.checkpoints``); this table
repeats each line under its line number, so a log file cut short, swapped or removed
is noticed, and the dashboard lists them without reading the file. Append-only, like
the chain.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0012_audit_proofs",
        """
        CREATE TABLE audit_checkpoints (
            line_no INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('checkpoint', 'rotation')),
            size INTEGER,
            root TEXT,
            at TEXT NOT NULL,
            key_id TEXT NOT NULL,
            line TEXT NOT NULL
        );
        CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
            BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
        CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
            BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END
        """,
    ),
]


class AuditTx:
    conn: Any

    def add_checkpoint(self, line_no: int, record: dict[str, Any], line: str) -> None:
        self.conn.execute(
            "INSERT INTO audit_checkpoints (line_no, kind, size, root, at, key_id, line) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (line_no, record["kind"], record.get("size"), record.get("root"), record["time"],
             record["key_id"], line),
        )  # fmt: skip


class AuditReads:
    query: Any  # ControlStore's
    conn: Any
    _lock: Any
    _guard: Any

    def checkpoint_lines(self) -> list[dict[str, Any]]:
        """Every indexed line, oldest first: line_no, kind and the line's record."""
        rows = self.query("SELECT line_no, line FROM audit_checkpoints ORDER BY line_no")
        return [{"line_no": r["line_no"], "line": r["line"]} | json.loads(r["line"]) for r in rows]

    def checkpoint_line(self, line_no: int) -> dict[str, Any]:
        """One indexed line: line_no and its text."""
        rows = self.query(
            "SELECT line_no, line FROM audit_checkpoints WHERE line_no = ?", (line_no,)
        )
        return rows[0]

    def checkpoints(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest checkpoints (not rotations), newest first."""
        rows = self.query(
            "SELECT line_no, line FROM audit_checkpoints WHERE kind = 'checkpoint' "
            "ORDER BY line_no DESC LIMIT ?",
            (limit,),
        )
        return [{"line_no": r["line_no"]} | json.loads(r["line"]) for r in rows]

    def checkpoint_count(self) -> int:
        return self.query("SELECT count(*) AS n FROM audit_checkpoints")[0]["n"]

    def audit_hashes(self, after: int = 0, upto: int | None = None) -> list[tuple[int, str]]:
        """(seq, hash) of the events after ``after`` up to ``upto``, oldest first."""
        with self._lock, self._guard():  # plain tuples: the tree reads every event's hash
            cur = self.conn.cursor()
            cur.row_factory = None
            return cur.execute(
                "SELECT seq, hash FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq",
                (after, upto if upto is not None else 2**62),
            ).fetchall()

    def audit_rows(self) -> int:
        """The events the table itself holds: read from its own pages, not from an index
        (``count(*)`` would count ``audit_by_action``'s entries, which an older copy of a
        table page spliced into the file leaves in place)."""
        return self.query("SELECT count(*) AS n FROM audit_events NOT INDEXED")[0]["n"]

    def audit_rows_between(self, after: int, upto: int) -> int:
        """The table's rows with ``after`` < seq <= ``upto`` (a range of its own pages)."""
        return self.query(
            "SELECT count(*) AS n FROM audit_events NOT INDEXED WHERE seq > ? AND seq <= ?",
            (after, upto),
        )[0]["n"]

    def audit_max_seq(self) -> int:
        return self.query("SELECT coalesce(max(seq), 0) AS n FROM audit_events")[0]["n"]

    def audit_first_gap(self) -> int:
        """The first sequence number missing below the last event (0: none)."""
        rows = self.query(
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM audit_events WHERE seq = 1) THEN 1 "
            "ELSE (SELECT min(a.seq) + 1 FROM audit_events a NOT INDEXED WHERE NOT EXISTS "
            "(SELECT 1 FROM audit_events b WHERE b.seq = a.seq + 1)) END AS gap"
        )
        return rows[0]["gap"] or 0
