"""The scheduler: APScheduler 3 jobs, kept in control.db, and the pipelines they drive,
acting as the ``scheduler`` actor through the same services as the CLI.

``falaj run`` starts it (``Scheduler.start``) and stops it on SIGTERM. One process per
home runs jobs: the first to take an exclusive ``flock`` on the home folder itself (no
lock file to leave behind; the kernel drops the lock when the process dies, even by
SIGKILL); a second ``falaj run`` serves but schedules nothing. At start the scheduler registers its system jobs:

    system:pipelines     every ``scheduler_tick`` s: advance pipeline runs (retries,
                         approvals, release decisions, runs a dead process left), and
                         start runs that new data or a new drift alert call for
    system:monitoring    every ``monitor_every``: app.monitoring.run_pass
    system:releases      every ``release_check_every``: app.releases.evaluate
    system:decisions     daily: app.decision_log.prune (the retention setting)
    system:audit         every ``audit_checkpoint_every``: a signed audit checkpoint
    pipeline:NAME        a pipeline's schedule: {cron: ...} or {interval: ...}

Jobs whose trigger did not change keep their stored next run time across restarts, so
a nightly job missed while the box was off runs once when it is back (coalesced).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_type_hints

from appliance.auth import Actor, require
from appliance.durations import parse_duration
from appliance.scheduler.pipelines import PipelineService

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("falaj.scheduler")

SCHEDULER = Actor("scheduler", "falaj")
STOP_WAIT_S = 20.0  # for a running step to reach its next progress report or its end
JOBS_MODULE = "appliance.scheduler.jobs"
# system job -> (the Appliance's service, its method, the setting of its interval)
SYSTEM_JOBS = {
    "monitoring": ("monitoring", "run_pass", "monitor_every"),
    "releases": ("releases", "evaluate", "release_check_every"),
    "decisions": ("decision_log", "prune", None),
    "audit": ("audit", "scheduled_checkpoint", "audit_checkpoint_every"),
}


class Scheduler:
    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.pipelines = PipelineService(app)
        self._scheduler: Any = None
        self._workspace_stamp: tuple[int, int] | None = None
        self._lock_fd: int | None = None

    @property
    def running(self) -> bool:
        return self._scheduler is not None

    # -- start and stop -----------------------------------------------------------

    def start(self, say: Callable[[str], None] = log.info) -> bool:
        """Take the home's scheduler lock and start the jobs; False when the setting is
        off or another process holds the lock (it runs the jobs)."""
        if self.running:
            return True
        if not self.app.settings["scheduler"]:
            say("scheduler: off (the scheduler setting is false)")
            return False
        fd = os.open(self.app.home, os.O_RDONLY | os.O_DIRECTORY)
        for attempt in range(3):  # a CLI's look (held_elsewhere) holds it for a moment
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt < 2:
                    time.sleep(0.1)
                    continue
                os.close(fd)
                say(f"scheduler: another process (a `falaj run`) runs the jobs of "
                    f"{self.app.home}; this one runs none")  # fmt: skip
                return False
        self._lock_fd = fd
        try:
            self._start()
        except BaseException:
            self._unlock()
            raise
        say(f"scheduler: {len(self._scheduler.get_jobs())} jobs")
        return True

    def _start(self) -> None:
        from apscheduler.events import (
            EVENT_JOB_ERROR,
            EVENT_JOB_EXECUTED,
            EVENT_JOB_MAX_INSTANCES,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
        )
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        from appliance.scheduler import jobs
        from appliance.scheduler.jobstore import ControlJobStore

        self.pipelines.stopping.clear()
        sched = BackgroundScheduler(
            jobstores={"default": ControlJobStore(self.app.control, SCHEDULER)},
            executors={"default": ThreadPoolExecutor(4)},
            # a run missed while the box was off happens once when it is back, however late
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        sched.add_listener(self._on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED
                           | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)  # fmt: skip
        jobs.bind(self.app)
        sched.start(paused=True)
        self._scheduler = sched
        self._workspace_stamp = self._stamp()
        self._sync()
        sched.resume()
        self.wake()  # runs a crash left behind resume now, not a tick later

    def stop(self) -> None:
        """Stop taking jobs, let a running step stop at its next progress report (it
        runs again at the next start), wait for the jobs, release the lock."""
        if self._scheduler is None:
            return
        from appliance.scheduler import jobs

        self.pipelines.stopping.set()
        try:
            self._scheduler.shutdown(wait=True)
            if not self.pipelines.join(STOP_WAIT_S):
                log.warning("scheduler: a pipeline step still runs after %gs; it runs again "
                            "at the next start", STOP_WAIT_S)  # fmt: skip
        finally:
            self._scheduler = None
            jobs.bind(None)
            self._unlock()

    def held_elsewhere(self) -> bool:
        """Whether another process (a running `falaj run`) holds the home's scheduler."""
        if self._lock_fd is not None:
            return False
        fd = os.open(self.app.home, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # drops the shared lock if it was taken
        return False

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def wake(self) -> None:
        """Run the pipelines tick now (a run was queued or approved in this process)."""
        if self._scheduler is not None:
            with suppress(Exception):  # no tick job (stopping): the next start resumes
                self._scheduler.modify_job("system:pipelines", next_run_time=datetime.now(UTC))

    # -- the jobs -----------------------------------------------------------------

    def desired(self) -> dict[str, dict[str, Any]]:
        """The jobs this home should have: id -> func, args, trigger, description."""
        out = {"system:pipelines": {
            "func": f"{JOBS_MODULE}:tick", "args": [],
            "trigger": ("interval", float(self.app.settings["scheduler_tick"])),
            "description": "advance pipeline runs; new-data and drift triggers"}}  # fmt: skip
        for name, (service, method, setting) in SYSTEM_JOBS.items():
            if not self._offers(service, method):
                continue  # that layer is not in this build
            every = 86400.0 if setting is None else parse_duration(
                self.app.settings[setting], setting).total_seconds()  # fmt: skip
            out[f"system:{name}"] = {"func": f"{JOBS_MODULE}:system", "args": [name],
                                     "trigger": ("interval", every),
                                     "description": f"{service}.{method}"}  # fmt: skip
        for p in self.pipelines.definitions().values():
            if p.schedule:
                trig = (("cron", p.schedule["cron"]) if "cron" in p.schedule
                        else ("interval", p.schedule["interval_s"]))  # fmt: skip
                out[f"pipeline:{p.name}"] = {"func": f"{JOBS_MODULE}:scheduled_pipeline",
                                             "args": [p.name], "trigger": trig,
                                             "description": f"run pipeline {p.name}"}  # fmt: skip
        return out

    def _stamp(self) -> tuple[int, int] | None:
        from appliance.features.views import WORKSPACE_FILE

        try:
            st = (self.app.home / WORKSPACE_FILE).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def resync(self) -> bool:
        """Register the jobs again when the workspace file changed (a pipeline's schedule
        applied beside a running `falaj run`); the tick calls it. True when it did."""
        if self._scheduler is None:
            return False
        stamp = self._stamp()
        if stamp == self._workspace_stamp:
            return False
        self._workspace_stamp = stamp  # a file that does not parse is reported once
        self._sync()
        return True

    def _offers(self, service: str, method: str) -> bool:
        """Whether the Appliance has the service and it the method, read from the
        service's declared type so that nothing opens a store to find out."""
        prop = getattr(type(self.app), service, None)
        if prop is None:
            return False
        try:
            cls = get_type_hints(prop.func)["return"]
        except Exception:  # undeclared: ask the service itself
            return callable(getattr(getattr(self.app, service), method, None))
        return callable(getattr(cls, method, None))

    def _sync(self) -> None:
        """Add new jobs, replace changed ones, remove those no longer declared; an
        unchanged job keeps its stored next run time."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        sched = self._scheduler
        desired = self.desired()
        stored = {j["id"]: j for j in self.app.control.scheduler_jobs()}
        for job_id in stored.keys() - desired.keys():
            sched.remove_job(job_id)
        for job_id, d in desired.items():
            kind, value = d["trigger"]
            name = f"{d['description']} ({kind} {value:g}s)" if kind == "interval" else (
                f"{d['description']} (cron {value})")  # fmt: skip
            old = stored.get(job_id)
            if old is not None and old["options"].get("name") == name and old["func"] == d["func"]:
                continue
            trigger = (IntervalTrigger(seconds=value, timezone=UTC) if kind == "interval"
                       else CronTrigger.from_crontab(value, timezone=UTC))  # fmt: skip
            if old is not None:
                sched.remove_job(job_id)
            sched.add_job(d["func"], trigger, args=d["args"], id=job_id, name=name)

    def _on_event(self, event: Any) -> None:
        from apscheduler.events import (
            EVENT_JOB_ERROR,
            EVENT_JOB_EXECUTED,
            EVENT_JOB_MISSED,
            EVENT_JOB_SUBMITTED,
        )

        state = {EVENT_JOB_SUBMITTED: "running", EVENT_JOB_EXECUTED: "succeeded",
                 EVENT_JOB_ERROR: "failed", EVENT_JOB_MISSED: "missed"}.get(event.code, "skipped")  # fmt: skip
        metrics = getattr(self.app, "metrics", None)
        if metrics is not None and hasattr(metrics, "set_job_state"):
            metrics.set_job_state(event.job_id, state)
        if state == "running":
            return  # the end is recorded; a start every tick would only churn the store
        error = None
        if getattr(event, "exception", None) is not None:
            exc = event.exception
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        try:
            with self.app.control.transaction() as tx:
                tx.set_job_state(event.job_id, state,
                                 datetime.now(UTC).isoformat(timespec="seconds"), error)  # fmt: skip
        except Exception:
            log.exception("scheduler: cannot record the state of job %s", event.job_id)

    def jobs(self, actor: Actor) -> list[dict[str, Any]]:
        """Scheduled jobs with their trigger, next run time and last state (from
        control.db: the same whichever process asks)."""
        require(actor, "pipeline.read")
        out = []
        for j in self.app.control.scheduler_jobs():
            nrt = j["next_run_time"]
            out.append({"id": j["id"], "name": j["options"].get("name"), "func": j["func"],
                        "args": j["args"], "trigger": _trigger_text(j["trigger"]),
                        "next_run_time": None if nrt is None else
                        datetime.fromtimestamp(nrt, UTC).isoformat(timespec="seconds"),
                        "last_state": j["last_state"], "last_run_at": j["last_run_at"],
                        "last_error": j["last_error"]})  # fmt: skip
        return out


def _trigger_text(t: dict[str, Any]) -> str:
    if t["kind"] == "interval":
        return f"every {t['seconds']:g}s"
    if t["kind"] == "cron":
        f = t["fields"]
        return "cron " + " ".join(str(f.get(k, "*")) for k in
                                  ("minute", "hour", "day", "month", "day_of_week"))  # fmt: skip
    return f"once at {t.get('run_date')}"
