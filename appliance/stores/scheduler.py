"""control.db: scheduled jobs, pipeline runs and their steps, and trigger watermarks.

A mixin pair like ``runs.py``: ``SchedulerTx`` joins ``ControlTx``, ``SchedulerReads``
joins ``ControlStore``. Jobs are kept as JSON (the callable's textual reference, its
arguments, the trigger's kind and fields, the next run time), never as pickles: what
APScheduler needs to rebuild a job is rebuilt from these columns.
"""

from __future__ import annotations

import json
from typing import Any

from appliance.stores import migrations

MIGRATIONS: list[migrations.Migration] = [
    migrations.Migration(
        "0009_scheduler",
        """
        CREATE TABLE scheduler_jobs (
            id TEXT PRIMARY KEY,
            func TEXT NOT NULL,
            args TEXT NOT NULL,
            trigger TEXT NOT NULL,
            options TEXT NOT NULL,
            next_run_time REAL,
            last_state TEXT,
            last_run_at TEXT,
            last_error TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX scheduler_jobs_by_next ON scheduler_jobs (next_run_time);
        CREATE TABLE pipeline_runs (
            id TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
            trigger TEXT NOT NULL,
            definition TEXT NOT NULL,
            owner TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            error TEXT
        );
        CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, created_at);
        CREATE INDEX pipeline_runs_by_status ON pipeline_runs (status);
        CREATE TABLE pipeline_steps (
            run_id TEXT NOT NULL REFERENCES pipeline_runs(id),
            idx INTEGER NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'running', 'succeeded', 'failed', 'waiting', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            started_at TEXT,
            finished_at TEXT,
            next_attempt_at TEXT,
            output TEXT NOT NULL DEFAULT '{}',
            progress REAL NOT NULL DEFAULT 0,
            message TEXT,
            error TEXT,
            PRIMARY KEY (run_id, idx)
        );
        CREATE TABLE pipeline_triggers (
            pipeline TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """,
    ),
]

JOB_COLUMNS = ("id", "func", "args", "trigger", "options", "next_run_time", "updated_at")
RUN_COLUMNS = ("id", "pipeline", "status", "trigger", "definition", "owner", "created_at",
               "created_by", "started_at", "finished_at", "error")  # fmt: skip
STEP_COLUMNS = ("run_id", "idx", "name", "kind", "status", "attempts", "started_at",
                "finished_at", "next_attempt_at", "output", "progress", "message", "error")  # fmt: skip
ACTIVE = ("queued", "running", "waiting")


def _job(row: dict[str, Any]) -> dict[str, Any]:
    for f in ("args", "trigger", "options"):
        row[f] = json.loads(row[f])
    return row


def _run(row: dict[str, Any]) -> dict[str, Any]:
    row["trigger"] = json.loads(row["trigger"])
    row["definition"] = json.loads(row["definition"])
    return row


def _step(row: dict[str, Any]) -> dict[str, Any]:
    row["output"] = json.loads(row["output"])
    return row


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, default=str)


class SchedulerTx:
    conn: Any

    # -- jobs --------------------------------------------------------------------

    def put_job(self, job: dict[str, Any]) -> None:
        """Insert or replace a job's definition and next run time (its last state stays)."""
        values = {c: job.get(c) for c in JOB_COLUMNS} | {
            f: _dumps(job[f]) for f in ("args", "trigger", "options")
        }
        self.conn.execute(
            f"INSERT INTO scheduler_jobs ({', '.join(JOB_COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in JOB_COLUMNS)}) ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in JOB_COLUMNS[1:]),
            values,
        )

    def job_exists(self, job_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM scheduler_jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None

    def job_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM scheduler_jobs ORDER BY id")]

    def delete_job(self, job_id: str) -> bool:
        cur = self.conn.execute("DELETE FROM scheduler_jobs WHERE id = ?", (job_id,))
        return cur.rowcount > 0

    def delete_all_jobs(self) -> None:
        self.conn.execute("DELETE FROM scheduler_jobs")

    def set_job_state(self, job_id: str, state: str, at: str, error: str | None) -> None:
        self.conn.execute(
            "UPDATE scheduler_jobs SET last_state = ?, last_run_at = ?, last_error = ? "
            "WHERE id = ?",
            (state, at, error, job_id),
        )

    # -- pipeline runs -----------------------------------------------------------

    def insert_pipeline_run(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        self.conn.execute(
            f"INSERT INTO pipeline_runs ({', '.join(RUN_COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in RUN_COLUMNS)})",
            {c: run.get(c) for c in RUN_COLUMNS}
            | {"trigger": _dumps(run["trigger"]), "definition": _dumps(run["definition"])},
        )
        for s in steps:
            self.conn.execute(
                "INSERT INTO pipeline_steps (run_id, idx, name, kind, status) "
                "VALUES (?, ?, ?, ?, 'pending')",
                (run["id"], s["idx"], s["name"], s["kind"]),
            )

    def update_pipeline_run(self, run_id: str, **changes: Any) -> None:
        bad = set(changes) - set(RUN_COLUMNS[2:])
        if bad:
            raise KeyError(f"pipeline_runs has no column {sorted(bad)[0]!r}")
        sets = ", ".join(f"{c} = ?" for c in changes)
        self.conn.execute(
            f"UPDATE pipeline_runs SET {sets} WHERE id = ?", (*changes.values(), run_id)
        )

    def update_pipeline_step(self, run_id: str, idx: int, **changes: Any) -> None:
        bad = set(changes) - set(STEP_COLUMNS[4:])
        if bad:
            raise KeyError(f"pipeline_steps has no column {sorted(bad)[0]!r}")
        if "output" in changes:
            changes["output"] = _dumps(changes["output"])
        sets = ", ".join(f"{c} = ?" for c in changes)
        self.conn.execute(
            f"UPDATE pipeline_steps SET {sets} WHERE run_id = ? AND idx = ?",
            (*changes.values(), run_id, idx),
        )

    def pipeline_run_row(self, run_id: str) -> dict[str, Any] | None:
        """The run as this transaction sees it (to claim it without a race)."""
        row = self.conn.execute("SELECT * FROM pipeline_runs WHERE id = ?", (run_id,)).fetchone()
        return _run(dict(row)) if row is not None else None

    def pipeline_step_rows(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT * FROM pipeline_steps WHERE run_id = ? ORDER BY idx", (run_id,)
        ).fetchall()
        return [_step(dict(r)) for r in rows]

    def skip_steps_after(self, run_id: str, idx: int, message: str) -> None:
        """Steps after ``idx`` not yet run are skipped (an earlier one failed)."""
        self.conn.execute(
            "UPDATE pipeline_steps SET status = 'skipped', message = ? "
            "WHERE run_id = ? AND idx > ? AND status IN ('pending', 'waiting')",
            (message, run_id, idx),
        )

    def put_trigger_state(self, pipeline: str, state: dict[str, Any], at: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO pipeline_triggers VALUES (?, ?, ?)",
            (pipeline, _dumps(state), at),
        )


class SchedulerReads:
    def query(self, sql: str, params: tuple | list = ()) -> list[dict[str, Any]]: ...

    def scheduler_jobs(self) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT * FROM scheduler_jobs ORDER BY next_run_time IS NULL, next_run_time, id"
        )
        return [_job(r) for r in rows]

    def scheduler_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM scheduler_jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def due_scheduler_jobs(self, timestamp: float) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT * FROM scheduler_jobs WHERE next_run_time <= ? ORDER BY next_run_time, id",
            (timestamp,),
        )
        return [_job(r) for r in rows]

    def next_scheduler_run_time(self) -> float | None:
        rows = self.query("SELECT min(next_run_time) AS t FROM scheduler_jobs")
        return rows[0]["t"]

    def pipeline_runs(
        self, pipeline: str | None = None, active: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Runs newest first, of one pipeline when named; only queued, running and
        waiting ones when ``active``."""
        where, args = [], []
        if pipeline is not None:
            where.append("pipeline = ?")
            args.append(pipeline)
        if active:
            where.append(f"status IN ({', '.join('?' * len(ACTIVE))})")
            args.extend(ACTIVE)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self.query(
            f"SELECT * FROM pipeline_runs {clause}ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [_run(r) for r in rows]

    def pipeline_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM pipeline_runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def pipeline_steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM pipeline_steps WHERE run_id = ? ORDER BY idx", (run_id,))
        return [_step(r) for r in rows]

    def trigger_state(self, pipeline: str) -> dict[str, Any] | None:
        rows = self.query("SELECT state FROM pipeline_triggers WHERE pipeline = ?", (pipeline,))
        return json.loads(rows[0]["state"]) if rows else None
