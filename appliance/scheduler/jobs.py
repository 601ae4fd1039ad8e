"""The callables scheduled jobs name (``appliance.scheduler.jobs:tick`` ...): a job is
stored as this textual reference and JSON arguments, so these are plain module-level
functions over the one Appliance the running scheduler is bound to."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from appliance.auth import Actor
from appliance.errors import FalajError

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("falaj.scheduler")

SCHEDULER = Actor("scheduler", "falaj")
_app: Appliance | None = None


def bind(app: Appliance | None) -> None:
    """The Appliance jobs run against in this process (None: jobs do nothing)."""
    global _app
    _app = app


def tick() -> None:
    """Start the runs triggers call for, then have every run no live process holds
    advanced (by the pipelines' worker thread)."""
    app = _app
    if app is None:
        return
    try:
        app.scheduler.resync()  # a schedule applied since the start
        app.scheduler.pipelines.check_triggers(SCHEDULER)
    except FalajError as exc:  # a workspace that does not parse: say why, go on
        log.warning("pipelines: triggers not checked: %s", exc.message)
    except Exception:  # a trigger that cannot be read must not stop runs advancing
        log.exception("pipelines: checking the triggers failed")
    app.scheduler.pipelines.kick(SCHEDULER)  # in its own thread: a long step holds no tick


def scheduled_pipeline(name: str) -> Any:
    """A pipeline's cron or interval schedule fired: queue a run (none while one is
    active) and advance it."""
    app = _app
    if app is None:
        return None
    if app.control.pipeline_runs(name, active=True, limit=1):
        log.warning("pipeline %s: its schedule fired while a run is active; skipped", name)
        return None
    run = app.scheduler.pipelines.start(name, SCHEDULER, {"kind": "schedule"})
    app.scheduler.wake()
    return run["id"]


def system(name: str) -> Any:
    """One of the layers' periodic jobs (monitoring pass, release policy, retention)."""
    from appliance.scheduler import SYSTEM_JOBS

    app = _app
    if app is None:
        return None
    service, method, _ = SYSTEM_JOBS[name]
    fn = getattr(getattr(app, service), method)
    return fn(SCHEDULER)
