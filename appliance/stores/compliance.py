"""control.db: the consent registry, per-subject keys, data-subject requests and the
human-review queue; and the few features.duckdb statements compliance needs (a subject's
rows, dropping their online rows).

A mixin pair like ``releases.py``: ``ComplianceTx`` joins ``ControlTx``,
``ComplianceReads`` joins ``ControlStore``. Consent is a history: giving consent after a
withdrawal is a new record, so every record keeps its given and withdrawn times. A
subject's key row is deleted on erasure (crypto-shredding): the ciphertext in
features.duckdb stays, unreadable.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from appliance.stores import migrations
from appliance.stores.results import arrow_table
from appliance.stores.sqltext import ident

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0013_compliance",
        """
        CREATE TABLE consent (
            id INTEGER PRIMARY KEY,
            subject TEXT NOT NULL,
            purpose TEXT NOT NULL,
            basis TEXT NOT NULL,
            given_at TEXT NOT NULL,
            given_by TEXT NOT NULL,
            withdrawn_at TEXT,
            withdrawn_by TEXT
        );
        CREATE UNIQUE INDEX consent_one_open ON consent (subject, purpose)
            WHERE withdrawn_at IS NULL;
        CREATE INDEX consent_by_subject ON consent (subject, purpose, id);
        CREATE TABLE subject_keys (
            subject TEXT PRIMARY KEY,
            key BLOB NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE subject_erasures (
            subject TEXT PRIMARY KEY,
            erased_at TEXT NOT NULL,
            erased_by TEXT NOT NULL
        );
        CREATE TABLE subject_requests (
            id INTEGER PRIMARY KEY,
            subject TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('export', 'rectify', 'erase', 'object')),
            status TEXT NOT NULL CHECK (status IN ('done', 'open', 'closed')),
            requested_at TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX subject_requests_by_subject ON subject_requests (subject, id);
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            request_id INTEGER NOT NULL REFERENCES subject_requests(id),
            subject TEXT NOT NULL,
            decision_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'upheld', 'overturned')),
            opened_at TEXT NOT NULL,
            opened_by TEXT NOT NULL,
            decided_at TEXT,
            decided_by TEXT,
            note TEXT
        );
        CREATE INDEX reviews_by_status ON reviews (status, id)
        """,
    ),
]


def _request(row: dict[str, Any]) -> dict[str, Any]:
    row["details"] = json.loads(row["details"])
    return row


class ComplianceTx:
    conn: Any

    # -- consent -----------------------------------------------------------------

    def open_consent(self, subject: str, purpose: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM consent WHERE subject = ? AND purpose = ? AND withdrawn_at IS NULL",
            (subject, purpose),
        ).fetchone()
        return dict(row) if row is not None else None

    def give_consent(self, subject: str, purpose: str, basis: str, at: str, by: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO consent (subject, purpose, basis, given_at, given_by) "
            "VALUES (?, ?, ?, ?, ?)",
            (subject, purpose, basis, at, by),
        )
        return int(cur.lastrowid)

    def withdraw_consent(self, consent_id: int, at: str, by: str) -> None:
        self.conn.execute(
            "UPDATE consent SET withdrawn_at = ?, withdrawn_by = ? WHERE id = ?",
            (at, by, consent_id),
        )

    # -- per-subject keys ----------------------------------------------------------

    def subject_keys_for(self, subjects: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for i in range(0, len(subjects), 500):
            chunk = subjects[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            for r in self.conn.execute(
                f"SELECT subject, key FROM subject_keys WHERE subject IN ({marks})", chunk
            ):
                out[r[0]] = bytes(r[1])
        return out

    def add_subject_keys(self, keys: dict[str, bytes], at: str) -> None:
        self.conn.executemany(
            "INSERT INTO subject_keys VALUES (?, ?, ?)", [(s, k, at) for s, k in keys.items()]
        )

    def shred_subject_key(self, subject: str, at: str, by: str) -> bool:
        """Delete the subject's key and record the erasure; whether a key was there."""
        cur = self.conn.execute("DELETE FROM subject_keys WHERE subject = ?", (subject,))
        self.conn.execute(
            "INSERT INTO subject_erasures VALUES (?, ?, ?) ON CONFLICT (subject) DO UPDATE "
            "SET erased_at = excluded.erased_at, erased_by = excluded.erased_by",
            (subject, at, by),
        )
        return cur.rowcount > 0

    # -- requests and reviews --------------------------------------------------------

    def add_subject_request(
        self, subject: str, kind: str, status: str, at: str, by: str, details: dict[str, Any]
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO subject_requests (subject, kind, status, requested_at, requested_by, "
            "details) VALUES (?, ?, ?, ?, ?, ?)",
            (subject, kind, status, at, by, json.dumps(details, default=str)),
        )
        return int(cur.lastrowid)

    def set_request_status(self, request_id: int, status: str) -> None:
        self.conn.execute(
            "UPDATE subject_requests SET status = ? WHERE id = ?", (status, request_id)
        )

    def open_review(
        self, request_id: int, subject: str, decision_id: str, reason: str, at: str, by: str
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO reviews (request_id, subject, decision_id, reason, status, opened_at, "
            "opened_by) VALUES (?, ?, ?, ?, 'open', ?, ?)",
            (request_id, subject, decision_id, reason, at, by),
        )
        return int(cur.lastrowid)

    def review_for_update(self, review_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM reviews WHERE id = ?", (review_id,)).fetchone()
        return dict(row) if row is not None else None

    def decide_review(self, review_id: int, status: str, note: str, at: str, by: str) -> None:
        self.conn.execute(
            "UPDATE reviews SET status = ?, note = ?, decided_at = ?, decided_by = ? WHERE id = ?",
            (status, note, at, by, review_id),
        )


class ComplianceReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def consent_records(
        self, subject: str | None = None, purpose: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Consent records newest first, of one subject and/or purpose when named."""
        where, params = [], []
        for col, value in (("subject", subject), ("purpose", purpose)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return self.query(
            f"SELECT * FROM consent {clause}ORDER BY id DESC LIMIT ?", (*params, limit)
        )

    def withdrawn_subjects(self) -> dict[str, set[str]]:
        """purpose -> subjects whose latest record for it is withdrawn."""
        rows = self.query(
            "SELECT c.subject, c.purpose FROM consent c WHERE c.withdrawn_at IS NOT NULL "
            "AND c.id = (SELECT max(id) FROM consent d WHERE d.subject = c.subject "
            "AND d.purpose = c.purpose)"
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r["purpose"], set()).add(r["subject"])
        return out

    def consent_purposes(self) -> list[dict[str, Any]]:
        """Each purpose with its legal bases and how many subjects gave or withdrew."""
        return self.query(
            "SELECT purpose, group_concat(DISTINCT basis) AS bases, "
            "count(DISTINCT subject) AS subjects, "
            "sum(withdrawn_at IS NULL) AS open_records FROM consent GROUP BY purpose "
            "ORDER BY purpose"
        )

    def subject_key_rows(self, subjects: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for i in range(0, len(subjects), 500):
            chunk = subjects[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            for r in self.query(
                f"SELECT subject, key FROM subject_keys WHERE subject IN ({marks})", chunk
            ):
                out[r["subject"]] = bytes(r["key"])
        return out

    def subject_erasure(self, subject: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM subject_erasures WHERE subject = ?", (subject,))
        return rows[0] if rows else None

    def subject_requests(
        self, subject: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        if subject is None:
            rows = self.query("SELECT * FROM subject_requests ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.query(
                "SELECT * FROM subject_requests WHERE subject = ? ORDER BY id DESC LIMIT ?",
                (subject, limit),
            )
        return [_request(r) for r in rows]

    def reviews(
        self, status: str | None = None, subject: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        where, params = [], []
        for col, value in (("status", status), ("subject", subject)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return self.query(f"SELECT * FROM reviews {clause}ORDER BY id DESC LIMIT ?",
                          (*params, limit))  # fmt: skip

    def review(self, review_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM reviews WHERE id = ?", (review_id,))
        return rows[0] if rows else None


# -- features.duckdb -----------------------------------------------------------------
# Functions over a FeatureStore (reads) or FeaturesTx (writes): the only SQL compliance
# runs there.


def subject_rows(features: Any, table: str, entity: str, subject: str) -> pa.Table:
    """Every stored row of a subject in one table (internal columns too), in ingest order."""
    with features._reading() as cur:
        return arrow_table(cur.execute(
            f"SELECT * FROM {ident(table)} WHERE CAST({ident(entity)} AS VARCHAR) = ? "
            "ORDER BY _seq",
            [subject],
        ))  # fmt: skip


def subject_decisions(features: Any, subject: str) -> list[dict[str, Any]]:
    """Logged decisions whose request key is the subject, oldest first."""
    return features.query(
        "SELECT ts, request_id, row_in_request, model, version, variant, output, "
        "input_fingerprint FROM _predictions WHERE request_key = ? ORDER BY ts, request_id, "
        "row_in_request",
        [subject],
    )


def subject_online_rows(features: Any, subject: str) -> list[dict[str, Any]]:
    """The subject's row in every materialized online table: (view ref, row)."""
    out = []
    for v in features.online_views():
        rows = features.query(
            f"SELECT * FROM {ident(v['table_name'])} "
            f"WHERE CAST({ident(v['entity_col'])} AS VARCHAR) = ?",
            [subject],
        )
        out.extend({"view": v["ref"], "row": r} for r in rows)
    return out


def drop_subject_online(tx: Any, subject: str) -> int:
    """Delete the subject's rows from every online table and raise the online counter (so
    servers reload); how many rows went."""
    views = tx.conn.execute("SELECT view, version, table_name, entity_col FROM _online_views")
    views = views.fetchall()
    dropped = 0
    for _view, _version, table, entity in views:
        n = tx.conn.execute(
            f"SELECT count(*) FROM {ident(table)} WHERE CAST({ident(entity)} AS VARCHAR) = ?",
            [subject],
        ).fetchone()[0]
        if n:
            tx.conn.execute(
                f"DELETE FROM {ident(table)} WHERE CAST({ident(entity)} AS VARCHAR) = ?", [subject]
            )
            dropped += n
    if dropped:
        tx.conn.execute(
            "UPDATE _online_views SET counter = counter + 1 "
            "WHERE counter = (SELECT max(counter) FROM _online_views)"
        )
    return dropped
