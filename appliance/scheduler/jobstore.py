"""APScheduler's job store over control.db, keeping jobs as JSON rather than pickles.

A job row holds what rebuilds it: the callable's textual reference (``module:name``),
its JSON arguments, the trigger's kind and fields, the job's options and its next run
time. Adding and removing a job is audited with the change; moving a job's next run
time after it ran is bookkeeping, not a change anyone made, and is not. Nor are the
system jobs (``system:...``), which the build and the settings fix, not a person: what
is audited is a pipeline's schedule, declared in the workspace, coming and going.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from appliance.auth import Actor
from appliance.stores.control import now

OPTIONS = ("name", "executor", "misfire_grace_time", "coalesce", "max_instances")


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def trigger_to_json(trigger: Any) -> dict[str, Any]:
    """The trigger as data: its kind and the fields that rebuild it."""
    if isinstance(trigger, CronTrigger):
        return {"kind": "cron", "timezone": str(trigger.timezone),
                "fields": {f.name: str(f) for f in trigger.fields if not f.is_default},
                "start_date": _iso(trigger.start_date), "end_date": _iso(trigger.end_date),
                "jitter": trigger.jitter}  # fmt: skip
    if isinstance(trigger, IntervalTrigger):
        return {"kind": "interval", "seconds": trigger.interval.total_seconds(),
                "timezone": str(trigger.timezone), "start_date": _iso(trigger.start_date),
                "end_date": _iso(trigger.end_date), "jitter": trigger.jitter}  # fmt: skip
    if isinstance(trigger, DateTrigger):
        return {"kind": "date", "run_date": _iso(trigger.run_date)}
    raise ValueError(f"a {type(trigger).__name__} cannot be stored (cron, interval or date)")


def trigger_from_json(d: dict[str, Any]) -> Any:
    if d["kind"] == "cron":
        return CronTrigger(**d["fields"], timezone=d["timezone"], start_date=_dt(d["start_date"]),
                           end_date=_dt(d["end_date"]), jitter=d["jitter"])  # fmt: skip
    if d["kind"] == "interval":
        return IntervalTrigger(seconds=d["seconds"], timezone=d["timezone"],
                               start_date=_dt(d["start_date"]), end_date=_dt(d["end_date"]),
                               jitter=d["jitter"])  # fmt: skip
    if d["kind"] == "date":
        return DateTrigger(run_date=_dt(d["run_date"]))
    raise ValueError(f"unknown trigger kind {d['kind']!r}")


def _timestamp(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


class ControlJobStore(BaseJobStore):
    """Scheduled jobs in control.db (table ``scheduler_jobs``)."""

    def __init__(self, control: Any, actor: Actor) -> None:
        super().__init__()
        self.control = control
        self.actor = actor

    # -- rows <-> jobs -------------------------------------------------------------

    def _row(self, job: Job) -> dict[str, Any]:
        if not job.func_ref or ":" not in job.func_ref:
            raise ValueError(f"job {job.id}: its callable needs a textual reference "
                             "(module:function)")  # fmt: skip
        if job.kwargs:
            raise ValueError(f"job {job.id}: keyword arguments are not stored; pass args")
        return {"id": job.id, "func": job.func_ref, "args": list(job.args),
                "trigger": trigger_to_json(job.trigger),
                "options": {k: getattr(job, k) for k in OPTIONS},
                "next_run_time": _timestamp(job.next_run_time), "updated_at": now()}  # fmt: skip

    def _job(self, row: dict[str, Any]) -> Job:
        nrt = row["next_run_time"]
        state = {"version": 1, "id": row["id"], "func": row["func"],
                 "trigger": trigger_from_json(row["trigger"]), "args": tuple(row["args"]),
                 "kwargs": {}, "next_run_time": None if nrt is None
                 else datetime.fromtimestamp(nrt, UTC)} | row["options"]  # fmt: skip
        job = Job.__new__(Job)
        job.__setstate__(state)
        job._scheduler = self._scheduler
        job._jobstore_alias = self._alias
        return job

    def _jobs(self, rows: list[dict[str, Any]]) -> list[Job]:
        jobs = []
        for row in rows:
            try:
                jobs.append(self._job(row))
            except Exception:  # a job whose callable is gone: say so, keep the others
                self._logger.exception("scheduler job %s cannot be rebuilt; skipped", row["id"])
        return jobs

    # -- BaseJobStore ---------------------------------------------------------------

    def lookup_job(self, job_id: str) -> Job | None:
        row = self.control.scheduler_job(job_id)
        return self._job(row) if row else None

    def get_due_jobs(self, now: datetime) -> list[Job]:
        return self._jobs(self.control.due_scheduler_jobs(now.timestamp()))

    def get_next_run_time(self) -> datetime | None:
        t = self.control.next_scheduler_run_time()
        return None if t is None else datetime.fromtimestamp(t, UTC)

    def get_all_jobs(self) -> list[Job]:
        jobs = self._jobs(self.control.scheduler_jobs())
        self._fix_paused_jobs_sorting(jobs)
        return jobs

    def add_job(self, job: Job) -> None:
        row = self._row(job)
        with self.control.transaction() as tx:
            if tx.job_exists(job.id):
                raise ConflictingIdError(job.id)
            tx.put_job(row)
            if not job.id.startswith("system:"):
                tx.append_audit(self.actor, "scheduler.job.add", job.id,
                                {"func": row["func"], "args": row["args"],
                                 "trigger": row["trigger"]})  # fmt: skip

    def update_job(self, job: Job) -> None:
        row = self._row(job)
        with self.control.transaction() as tx:
            if not tx.job_exists(job.id):
                raise JobLookupError(job.id)
            tx.put_job(row)

    def remove_job(self, job_id: str) -> None:
        with self.control.transaction() as tx:
            if not tx.delete_job(job_id):
                raise JobLookupError(job_id)
            if not job_id.startswith("system:"):
                tx.append_audit(self.actor, "scheduler.job.remove", job_id, {})

    def remove_all_jobs(self) -> None:
        with self.control.transaction() as tx:
            ids = [i for i in tx.job_ids() if not i.startswith("system:")]
            tx.delete_all_jobs()
            if ids:
                tx.append_audit(self.actor, "scheduler.job.remove", "*", {"jobs": ids})

    def shutdown(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({self.control.path})>"


def next_fire(trigger_json: dict[str, Any], after: datetime | None = None) -> datetime | None:
    """When a stored trigger fires next (for a job nobody runs yet)."""
    t = trigger_from_json(trigger_json)
    at = after or datetime.now(UTC)
    return t.get_next_fire_time(None, at + timedelta(0))
