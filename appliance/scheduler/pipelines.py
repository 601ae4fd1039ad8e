"""Pipeline runs: a workspace pipeline's steps run one after the other, each step's state
(status, attempts, start and end, output, progress, error) persisted in control.db with
an audit event in the same transaction, so a run killed at any point resumes from its
last completed step. Fault points (``appliance.faults``, for the kill -9 tests):
``pipeline.step_started``, ``pipeline.step_committed``, ``pipeline.registered``.

A run is advanced by whoever holds it: ``falaj pipelines run NAME --wait`` in the CLI's
process, else the scheduler's tick in ``falaj run``. The holder is recorded on the run
(``owner``: pid@host); a run whose holder died is taken over, its interrupted step run
again (steps are written to be run again: a register step adopts the version its run
already registered, a release step the release it already started).

Step boundaries are resume points. ``train`` runs the search and keeps the chosen
parameters; ``evaluate`` fits with them (seeded) and keeps the hold-out metrics and
the gates' verdict; ``gates`` decides on that verdict; ``register`` fits again (the
same seed and parameters give the same model) and registers it. ``approve`` waits for a
person; ``decide`` for the release's automatic promotion or rollback. A failed step
is retried ``retries`` times, ``backoff`` × 2^(attempt-1) apart; a failed check (a gate,
a data-quality rule, a rejection) is not retried.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import faults
from appliance.auth import Actor, Forbidden, require
from appliance.errors import BadInput, CheckFailed, FalajError, NotFound, Unavailable
from appliance.scheduler.specs import Pipeline, Step

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("falaj.pipelines")

ACTIVE = ("queued", "running", "waiting")
DONE = ("succeeded", "skipped")


class Waiting(Exception):
    """A step that waits (for a person, a release's decision); not a failure."""

    def __init__(self, message: str, output: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.output = message, output or {}


class Interrupted(BaseException):
    """The process is stopping: the step goes back to pending, to run again."""


def _started(pid: int) -> str:
    """When the process started (clock ticks since boot, from /proc): with the pid, it
    names one process, not whichever reuses its pid after a reboot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def me() -> str:
    """This process as a run's holder: ``pid@host/start``."""
    return f"{os.getpid()}@{socket.gethostname()}/{_started(os.getpid())}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named ``pid@host/start`` still runs (another host's: assumed
    so); a pid now held by a later process is not it."""
    if not owner:
        return False
    pid, _, rest = owner.partition("@")
    host, _, started = rest.partition("/")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return not started or started == "?" or _started(int(pid)) == started


def plain(value: Any) -> Any:
    """JSON-safe: NumPy scalars as numbers, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def run_actor(run_id: str) -> Actor:
    """The scheduler acting for one run: what it registers names the run."""
    return Actor("scheduler", run_id)


@dataclasses.dataclass
class StepContext:
    service: PipelineService
    run: dict[str, Any]
    pipeline: Pipeline
    step: Step
    row: dict[str, Any]
    outputs: dict[str, dict[str, Any]]  # kind -> output of the succeeded steps before
    actor: Actor
    polling: bool = False  # a waiting step checked again

    @property
    def app(self) -> Appliance:
        return self.service.app

    @property
    def where(self) -> str:
        return f"pipeline {self.pipeline.name}: {self.step.name}"

    @property
    def scratch(self) -> Path:
        path = self.app.home / "tmp" / "pipelines" / self.run["id"]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def progress(self, fraction: float, message: str) -> None:
        self.service._progress(self.run["id"], self.step, fraction, message)

    def spec(self, with_params: bool) -> Any:
        """The train step's spec as the run recorded it, on the run's training set,
        with the searched params when ``with_params``."""
        from appliance.training.specs import parse_specs

        name = next(s.args["spec"] for s in self.pipeline.steps if s.kind == "train")
        spec = parse_specs({name: self.pipeline.training[name]}, f"{self.pipeline.where}: "
                           "training")[name]  # fmt: skip
        if "training_set" in self.outputs:
            spec = dataclasses.replace(spec, table=None,
                                       training_set=self.outputs["training_set"]["id"])  # fmt: skip
        if with_params:
            spec = dataclasses.replace(spec, params=self.outputs["train"]["params"], search=None)
        return spec

    def elapsed(self) -> float:
        started = self.row.get("started_at")
        return 0.0 if not started else (datetime.now(UTC) - _parse_time(started)).total_seconds()


# -- the steps ---------------------------------------------------------------------


def step_validate(ctx: StepContext) -> dict[str, Any]:
    a, app = ctx.step.args, ctx.app
    table = a["table"]
    if app.features.table_keys(table) is None:
        raise NotFound(f"{ctx.where}: table {table!r} has no data yet")
    rows = app.features.row_count(table)
    reports = app.ingestion.quality_reports(ctx.actor, table, limit=1)
    last = reports[0] if reports else None
    problems = []
    if "min_rows" in a and rows < a["min_rows"]:
        problems.append(f"{rows} rows, fewer than min_rows {a['min_rows']}")
    share = None
    if last is not None and last.get("rows_in"):
        share = last["rows_quarantined"] / last["rows_in"]
        if "max_quarantined" in a and share > a["max_quarantined"]:
            problems.append(f"its last batch had {share:.1%} of rows quarantined, more than "
                            f"max_quarantined {a['max_quarantined']:.1%}")  # fmt: skip
    newest = None
    if last is not None and last.get("newest_event") is not None:
        newest = last["newest_event"]
        if isinstance(newest, datetime) and "max_age_s" in a:
            at = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
            age = (datetime.now(UTC) - at).total_seconds()
            if age > a["max_age_s"]:
                problems.append(f"its newest event is {age / 86400:.1f} days old, older than "
                                f"max_age {a['max_age_s'] / 86400:g} days")  # fmt: skip
    if problems:
        raise CheckFailed(f"{ctx.where}: table {table}: {'; '.join(problems)}")
    return {"table": table, "rows": rows, "last_batch": last["batch"] if last else None,
            "quarantined_share": share, "newest_event": str(newest) if newest else None}  # fmt: skip


def step_training_set(ctx: StepContext) -> dict[str, Any]:
    a, app = ctx.step.args, ctx.app
    keys = app.features.table_keys(a["table"])
    if keys is None:
        raise NotFound(f"{ctx.where}: table {a['table']!r} has no data yet")
    entity, ts = keys
    rows = app.features.labelled_rows(a["table"], a["label"], ts, entity)
    cols = [entity, ts, a["label"], *a["keep"]]
    missing = [c for c in cols if c not in rows.column_names]
    if missing:
        raise BadInput(f"{ctx.where}: table {a['table']} has no column {missing[0]!r}")
    spine = rows.select(cols).rename_columns([entity, "event_timestamp", *cols[2:]])
    out = ctx.scratch / "training_set.parquet"
    ctx.progress(0.1, f"joining {spine.num_rows} labelled rows point in time")
    record = app.training_sets.build(spine, a["features"], ctx.actor, out=out)
    return {"id": record["id"], "rows": record["rows"], "fingerprint": record["fingerprint"],
            "features": record["features"]}  # fmt: skip


def step_train(ctx: StepContext) -> dict[str, Any]:
    spec = ctx.spec(with_params=False)

    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 0.0, f"search: {done} of {total} trials")

    r = ctx.app.training.run(spec, ctx.actor, progress, until="search")
    return plain({"model": r["name"], "family": r["family"], "params": r["params"],
                  "search": r["search"], "best": r.get("best")})  # fmt: skip


def step_evaluate(ctx: StepContext) -> dict[str, Any]:
    ctx.progress(0.1, "fitting with the chosen parameters")
    r = ctx.app.training.run(ctx.spec(with_params=True), ctx.actor, until="evaluate")
    holdout = {k: v for k, v in r["metrics"]["holdout"].items() if isinstance(v, int | float)}
    return plain({"model": r["name"], "holdout": holdout, "gates": r["metrics"]["gates"],
                  "gates_passed": r["gates_passed"]})  # fmt: skip


def step_gates(ctx: StepContext) -> dict[str, Any]:
    from appliance.training.gates import failed_gates

    verdict = ctx.outputs["evaluate"]["gates"]
    failed = failed_gates(verdict)
    if failed:
        raise CheckFailed(f"{ctx.where}: the candidate was rejected by its gates: "
                          f"{', '.join(failed)}")  # fmt: skip
    return {"passed": True, "gates": [g["gate"] for g in verdict.get("results", [])]}


def step_register(ctx: StepContext) -> dict[str, Any]:
    app = ctx.app
    spec = ctx.spec(with_params=True)
    mine = [v for v in app.control.model_versions(spec.model_name)
            if v["created_by"] == str(ctx.actor)]  # fmt: skip
    if mine:  # registered before a crash cut this step short: the same version, not another
        v = mine[-1]
        out = {"version": v["version"], "status": v["status"], "adopted": True,
               "holdout": {k: x for k, x in v["metrics"]["holdout"].items()
                           if isinstance(x, int | float)}}  # fmt: skip
    else:
        ctx.progress(0.1, "fitting and registering")
        r = app.training.run(spec, ctx.actor)
        faults.point("pipeline.registered")  # the version committed, this step not yet
        out = {"version": r["version"], "status": r["status"], "run": r["run"], "adopted": False,
               "holdout": {k: x for k, x in r["metrics"]["holdout"].items()
                           if isinstance(x, int | float)}}  # fmt: skip
    out["model"] = spec.model_name
    evaluated = ctx.outputs.get("evaluate", {}).get("holdout")
    if evaluated:
        out["same_as_evaluated"] = all(
            math.isclose(out["holdout"].get(k, math.nan), v, rel_tol=1e-9, abs_tol=1e-12)
            for k, v in evaluated.items() if v is not None
        )  # fmt: skip
    # The set's file is plaintext: no step reads it after this one (its record rebuilds it).
    (ctx.scratch / "training_set.parquet").unlink(missing_ok=True)
    if out["status"] != "ready" and any(s.kind == "gates" for s in ctx.pipeline.steps):
        raise CheckFailed(f"{ctx.where}: {spec.model_name}@{out['version']} was registered "
                          "as rejected by its gates")  # fmt: skip
    return plain(out)


def _releases(ctx: StepContext) -> Any:
    releases = getattr(ctx.app, "releases", None)
    if releases is None:
        raise Unavailable(f"{ctx.where}: releases are not available in this build")
    return releases


def step_release(ctx: StepContext) -> dict[str, Any]:
    a, reg = ctx.step.args, ctx.outputs["register"]
    name, version = reg["model"], reg["version"]
    if a["strategy"] == "blue-green":
        d = ctx.app.serving.deploy(name, version, ctx.actor)
        return plain({"model": name, "version": version, "strategy": "blue-green",
                      "slot": d.get("slot")})  # fmt: skip
    releases = _releases(ctx)
    status = releases.status(name, ctx.actor)
    active = status.get("release")
    if not (active and active.get("candidate_version") == version):
        kwargs = {k: a[k] for k in ("percent", "policy") if k in a}
        status = releases.start(name, version, a["strategy"], ctx.actor, **kwargs)
        active = status.get("release") or {}
    return plain({"model": name, "version": version, "strategy": a["strategy"],
                  "release_id": active.get("id"), "percent": active.get("percent"),
                  "policy": active.get("policy")})  # fmt: skip


def step_approve(ctx: StepContext) -> dict[str, Any]:
    timeout = ctx.step.args.get("timeout_s")
    if ctx.polling and timeout is not None and ctx.elapsed() > timeout:
        raise CheckFailed(f"{ctx.where}: nobody approved within {timeout:g}s")
    raise Waiting(f"waiting for approval: falaj pipelines approve {ctx.run['id']} [--reject]")


def step_decide(ctx: StepContext) -> dict[str, Any]:
    rel = ctx.outputs["release"]
    if rel.get("strategy") == "blue-green":
        return {"decision": "promoted", "detail": "a blue/green switch needs no decision"}
    status = _releases(ctx).status(rel["model"], ctx.actor)
    found = [r for r in [status.get("release"), *status.get("history", [])]
             if r and r.get("id") == rel["release_id"]]  # fmt: skip
    state = found[0]["status"] if found else "unknown"
    if state == "promoted":
        return plain({"decision": "promoted", "release_id": rel["release_id"],
                      "reason": found[0].get("reason")})  # fmt: skip
    if state in ("rolled_back", "aborted", "failed"):
        raise CheckFailed(f"{ctx.where}: release {rel['release_id']} of {rel['model']}@"
                          f"{rel['version']} was {state.replace('_', ' ')}: "
                          f"{found[0].get('reason') or 'no reason given'}")  # fmt: skip
    timeout = ctx.step.args["timeout_s"]
    if ctx.elapsed() > timeout:
        raise CheckFailed(f"{ctx.where}: release {rel['release_id']} was not decided within "
                          f"{timeout:g}s (it stays {state}: promote or roll it back by hand)")  # fmt: skip
    raise Waiting(f"waiting for release {rel['release_id']} to be promoted or rolled back "
                  f"(now {state})")  # fmt: skip


HANDLERS: dict[str, Callable[[StepContext], dict[str, Any]]] = {
    "validate": step_validate,
    "training_set": step_training_set,
    "train": step_train,
    "evaluate": step_evaluate,
    "gates": step_gates,
    "register": step_register,
    "release": step_release,
    "approve": step_approve,
    "decide": step_decide,
}


class PipelineService:
    """Pipelines declared in the workspace, their runs and the steps of each."""

    def __init__(self, app: Appliance) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._advancing = threading.Lock()
        self._kick_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._again = False
        self._progress_at: dict[tuple[str, int], float] = {}

    @property
    def control(self) -> Any:
        return self.app.control

    # -- declared pipelines -------------------------------------------------------

    def definitions(self) -> dict[str, Pipeline]:
        from appliance.features.views import WORKSPACE_FILE
        from appliance.features.workspace import load

        path = self.app.home / WORKSPACE_FILE
        return load(path).pipelines if path.exists() else {}

    def definition(self, name: str) -> Pipeline:
        pipelines = self.definitions()
        if name not in pipelines:
            raise NotFound(f"no pipeline {name!r} in the workspace "
                           f"(pipelines: {', '.join(pipelines) or 'none'})")  # fmt: skip
        return pipelines[name]

    def list(self, actor: Actor) -> list[dict[str, Any]]:
        """Every declared pipeline: its steps, triggers and latest run."""
        require(actor, "pipeline.read")
        out = []
        for p in self.definitions().values():
            last = self.control.pipeline_runs(p.name, limit=1)
            out.append({"name": p.name, "description": p.description, "model": p.model,
                        "steps": [{"name": s.name, "kind": s.kind} for s in p.steps],
                        "triggers": p.triggers(),
                        "last_run": self._summary(last[0]) if last else None})  # fmt: skip
        return out

    # -- runs ---------------------------------------------------------------------

    def start(self, name: str, actor: Actor, trigger: dict[str, Any] | None = None) -> dict:
        """Queue a run of ``name`` (refused while one is active); audited."""
        require(actor, "pipeline.run")
        pipeline = self.definition(name)
        active = self.control.pipeline_runs(name, active=True, limit=1)
        if active:
            raise CheckFailed(f"pipeline {name}: run {active[0]['id']} is still "
                              f"{active[0]['status']}; wait for it or cancel it "
                              f"(falaj pipelines cancel {active[0]['id']})")  # fmt: skip
        run_id = f"r{time.strftime('%Y%m%d')}-{uuid.uuid4().hex[:8]}"
        trigger = trigger or {"kind": "manual"}
        run = {"id": run_id, "pipeline": name, "status": "queued", "trigger": trigger,
               "definition": pipeline.to_dict(), "created_at": _now_us(),
               "created_by": str(actor)}  # fmt: skip
        steps = [{"idx": i, "name": s.name, "kind": s.kind} for i, s in enumerate(pipeline.steps)]
        with self.control.transaction() as tx:
            tx.insert_pipeline_run(run, steps)
            tx.append_audit(actor, "pipeline.run.start", run_id,
                            {"pipeline": name, "trigger": trigger,
                             "steps": [s["name"] for s in steps]})  # fmt: skip
        self.app.scheduler.wake()  # a scheduler in this process takes it now
        return self.get(run_id, actor)

    def runs(self, actor: Actor, pipeline: str | None = None, limit: int = 50) -> list[dict]:
        require(actor, "pipeline.read")
        return [self._summary(r) for r in self.control.pipeline_runs(pipeline, limit=limit)]

    def get(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """A run with its steps (durations in seconds)."""
        require(actor, "pipeline.read")
        run = self.control.pipeline_run(run_id)
        if run is None:
            raise NotFound(f"no pipeline run {run_id!r} (see `falaj pipelines status`)")
        out = self._summary(run)
        out["steps"] = [_step_view(s) for s in self.control.pipeline_steps(run_id)]
        return out

    def _summary(self, run: dict[str, Any]) -> dict[str, Any]:
        out = {k: run[k] for k in ("id", "pipeline", "status", "trigger", "created_at",
                                   "created_by", "started_at", "finished_at", "error")}  # fmt: skip
        out["owner"] = run["owner"]
        out["interrupted"] = (
            run["status"] in ACTIVE and bool(run["owner"]) and not owner_alive(run["owner"])
        )
        out["duration_s"] = _duration(run["started_at"], run["finished_at"])
        return out

    def approve(self, run_id: str, actor: Actor, reject: bool = False, note: str = "") -> dict:
        """Approve (or reject) the run's waiting approval step; audited."""
        require(actor, "pipeline.approve")
        run = self.get(run_id, actor)
        step = next((s for s in run["steps"] if s["kind"] == "approve"
                     and s["status"] == "waiting"), None)  # fmt: skip
        if step is None:
            raise CheckFailed(f"pipeline run {run_id} is {run['status']} and has no step "
                              "waiting for approval")  # fmt: skip
        at = _now_us()
        out = {"approved": not reject, "by": str(actor), "note": note}
        with self.control.transaction() as tx:
            if tx.pipeline_step_rows(run_id)[step["idx"]]["status"] != "waiting":
                raise CheckFailed(f"pipeline run {run_id}: {step['name']} was decided already")
            if reject:
                tx.update_pipeline_step(run_id, step["idx"], status="failed", finished_at=at,
                                        output=out, error=f"rejected by {actor}", progress=1.0,
                                        message="rejected")  # fmt: skip
                self._fail_rest(tx, run_id, step["idx"])
                tx.update_pipeline_run(run_id, status="failed", finished_at=at,
                                       error=f"{step['name']}: rejected by {actor}")  # fmt: skip
            else:
                tx.update_pipeline_step(run_id, step["idx"], status="succeeded", finished_at=at,
                                        output=out, progress=1.0, message=f"approved by {actor}")  # fmt: skip
                tx.update_pipeline_run(run_id, status="queued")
            tx.append_audit(actor, "pipeline.step.reject" if reject else "pipeline.step.approve",
                            f"{run_id}/{step['name']}", {"note": note})  # fmt: skip
        if reject:
            self._cleanup(run_id)
        self.app.scheduler.wake()
        return self.get(run_id, actor)

    def cancel(self, run_id: str, actor: Actor) -> dict[str, Any]:
        """Stop a run: its unfinished steps are skipped (a step running now ends first)."""
        require(actor, "pipeline.run")
        run = self.get(run_id, actor)
        if run["status"] not in ACTIVE:
            raise CheckFailed(f"pipeline run {run_id} is {run['status']} already")
        at = _now_us()
        with self.control.transaction() as tx:
            now_status = tx.pipeline_run_row(run_id)["status"]
            if now_status not in ACTIVE:
                raise CheckFailed(f"pipeline run {run_id} is {now_status} already")
            for s in run["steps"]:
                if s["status"] not in ("succeeded", "failed", "skipped"):
                    tx.update_pipeline_step(run_id, s["idx"], status="skipped", finished_at=at,
                                            message=f"cancelled by {actor}")  # fmt: skip
            tx.update_pipeline_run(run_id, status="cancelled", finished_at=at,
                                   error=f"cancelled by {actor}")  # fmt: skip
            tx.append_audit(actor, "pipeline.run.cancel", run_id, {"pipeline": run["pipeline"]})
        self._cleanup(run_id)
        return self.get(run_id, actor)

    # -- advancing runs -----------------------------------------------------------

    def advance(self, run_id: str, actor: Actor, wait: bool = False,
                say: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
        """Run the run's steps in this process until it ends or waits (for a person, a
        release's decision); with ``wait``, sleep through retry backoffs too."""
        require(actor, "pipeline.run")
        while True:
            with self._advancing:
                claimed = self._claim(run_id)
                if claimed:
                    try:
                        self._advance(run_id, say)
                    finally:
                        self._unclaim(run_id)
            run = self.control.pipeline_run(run_id)
            if not (wait and claimed and run and run["status"] in ACTIVE):
                break
            due = self._retry_due(run_id)
            if due is None or self.stopping.is_set():
                break
            time.sleep(max(0.05, min(due, 60.0)))
        return self.get(run_id, actor)

    def follow(self, run_id: str, actor: Actor,
               say: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
        """Run it here to its end or its wait for a person (``falaj pipelines run
        --wait``); when a `falaj run` holds the home's scheduler, it runs there (it holds
        the feature store) and this only watches until it is no longer queued or running."""
        if not self.app.scheduler.held_elsewhere():
            return self.advance(run_id, actor, wait=True, say=say)
        if say:
            say("the scheduler of a running `falaj run` runs it; following")
        seen: dict[str, str] = {}
        while True:
            run = self.get(run_id, actor)
            for s in run["steps"]:
                if say and seen.get(s["name"]) != s["status"] and s["status"] != "pending":
                    say(f"{s['name']}: {s['status']}")
                seen[s["name"]] = s["status"]
            if run["status"] not in ("queued", "running"):
                return run
            time.sleep(0.5)

    def kick(self, actor: Actor) -> bool:
        """Advance the runs in a worker thread, so the scheduler's tick returns at once
        however long a step takes; a kick while it works makes it look again."""
        require(actor, "pipeline.run")
        with self._kick_lock:
            if self._worker is not None and self._worker.is_alive():
                self._again = True
                return False
            self._again = False
            self._worker = threading.Thread(target=self._work, args=(actor,),
                                            name="falaj-pipelines", daemon=True)  # fmt: skip
            self._worker.start()
            return True

    def _work(self, actor: Actor) -> None:
        while True:
            try:
                self.advance_all(actor)
            except Exception:  # a store that failed: the next tick tries again
                log.exception("pipelines: advancing the runs failed")
            with self._kick_lock:
                if not self._again or self.stopping.is_set():
                    self._worker = None
                    return
                self._again = False

    def join(self, timeout: float) -> bool:
        """Wait for the worker (stopping); False if a step still runs after ``timeout``
        (it is taken over, and run again, at the next start)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def advance_all(self, actor: Actor) -> list[str]:
        """Advance every active run no live process holds (the scheduler's tick)."""
        require(actor, "pipeline.run")
        advanced = []
        for run in self.control.pipeline_runs(active=True):
            if self.stopping.is_set():
                break
            if run["owner"] and run["owner"] != me() and owner_alive(run["owner"]):
                continue
            if run["status"] == "waiting" and not self._due(run):
                continue  # nothing to do until a person acts or a retry is due
            self.advance(run["id"], actor)
            advanced.append(run["id"])
        return advanced

    def _due(self, run: dict[str, Any]) -> bool:
        """Whether a waiting run has something to check: a retry that is due, a
        release's decision, an approval's timeout."""
        pipeline = Pipeline.from_dict(run["definition"])
        for s in self.control.pipeline_steps(run["id"]):
            if s["status"] != "waiting":
                continue
            if s["next_attempt_at"]:
                return _parse_time(s["next_attempt_at"]) <= datetime.now(UTC)
            step = pipeline.steps[s["idx"]]
            return step.kind == "decide" or step.args.get("timeout_s") is not None
        return True

    def _retry_due(self, run_id: str) -> float | None:
        """Seconds until the run's step waiting for a retry is due, else None."""
        for s in self.control.pipeline_steps(run_id):
            if s["status"] == "waiting" and s["next_attempt_at"]:
                return (_parse_time(s["next_attempt_at"]) - datetime.now(UTC)).total_seconds()
        return None

    def _claim(self, run_id: str) -> bool:
        """Hold the run in this process; a holder that died is taken over (its running
        step goes back to pending, audited). False when a live process holds it."""
        with self.control.transaction() as tx:
            run = tx.pipeline_run_row(run_id)
            if run is None or run["status"] not in ACTIVE:
                return False
            owner = run["owner"]
            if owner and owner != me() and owner_alive(owner):
                return False
            tx.update_pipeline_run(run_id, owner=me())
            if owner and owner != me():
                steps = [s for s in tx.pipeline_step_rows(run_id) if s["status"] == "running"]
                for s in steps:
                    tx.update_pipeline_step(run_id, s["idx"], status="pending",
                                            message=f"interrupted: process {owner} ended")  # fmt: skip
                tx.append_audit(run_actor(run_id), "pipeline.run.resume", run_id,
                                {"previous_owner": owner, "owner": me(),
                                 "interrupted": [s["name"] for s in steps]})  # fmt: skip
        return True

    def _unclaim(self, run_id: str) -> None:
        with self.control.transaction() as tx:
            run = tx.pipeline_run_row(run_id)
            if run is not None and run["owner"] == me():
                tx.update_pipeline_run(run_id, owner=None)

    def _advance(self, run_id: str, say: Callable[[str], None] | None) -> None:
        while not self.stopping.is_set():
            run = self.control.pipeline_run(run_id)
            if run is None or run["status"] not in ACTIVE:
                return
            pipeline = Pipeline.from_dict(run["definition"])
            rows = self.control.pipeline_steps(run_id)
            row = next((s for s in rows if s["status"] not in DONE), None)
            if row is None:
                self._finish(run, "succeeded", None)
                return
            outputs = {s["kind"]: s["output"] for s in rows if s["status"] == "succeeded"}
            step = pipeline.steps[row["idx"]]
            ctx = StepContext(self, run, pipeline, step, row, outputs, run_actor(run_id))
            if row["status"] == "failed":
                self._finish(run, "failed", f"{step.name}: {row['error']}")
                return
            if row["status"] == "waiting":
                if row["next_attempt_at"]:
                    if _parse_time(row["next_attempt_at"]) > datetime.now(UTC):
                        return  # a retry not due yet
                else:
                    ctx.polling = True
                    if not self._run_step(ctx, say):
                        return
                    continue
            if not self._run_step(ctx, say):
                return

    def _run_step(self, ctx: StepContext, say: Callable[[str], None] | None) -> bool:
        """Run (or poll) one step; True when the run may go on to the next."""
        run_id, step, row = ctx.run["id"], ctx.step, ctx.row
        subject = f"{run_id}/{step.name}"
        attempt = row["attempts"] + (0 if ctx.polling else 1)
        if not ctx.polling:
            at = _now_us()
            with self.control.transaction() as tx:
                tx.update_pipeline_step(run_id, row["idx"], status="running", attempts=attempt,
                                        started_at=row["started_at"] or at, finished_at=None,
                                        next_attempt_at=None, progress=0.0, error=None,
                                        message=f"attempt {attempt}")  # fmt: skip
                tx.update_pipeline_run(run_id, status="running",
                                       started_at=ctx.run["started_at"] or at)  # fmt: skip
                tx.append_audit(ctx.actor, "pipeline.step.start", subject,
                                {"kind": step.kind, "attempt": attempt})  # fmt: skip
            ctx.row = row = dict(row, started_at=row["started_at"] or at, attempts=attempt)
            if say:
                say(f"{step.name}: running (attempt {attempt})")
            faults.point("pipeline.step_started")
        try:
            output = HANDLERS[step.kind](ctx)
        except Waiting as w:
            if not ctx.polling:
                with self.control.transaction() as tx:
                    tx.update_pipeline_step(run_id, row["idx"], status="waiting",
                                            message=w.message, output=w.output)  # fmt: skip
                    tx.update_pipeline_run(run_id, status="waiting")
                    tx.append_audit(ctx.actor, "pipeline.step.wait", subject,
                                    {"kind": step.kind, "message": w.message})  # fmt: skip
                if say:
                    say(f"{step.name}: {w.message}")
            return False
        except Interrupted:
            with self.control.transaction() as tx:
                tx.update_pipeline_step(run_id, row["idx"], status="pending",
                                        message="interrupted: the process stopped")  # fmt: skip
                tx.append_audit(ctx.actor, "pipeline.step.interrupt", subject, {"attempt": attempt})
            return False
        except Exception as exc:
            self._failed(ctx, exc, attempt, say)
            return False
        with self.control.transaction() as tx:
            tx.update_pipeline_step(run_id, row["idx"], status="succeeded", finished_at=_now_us(),
                                    output=plain(output), progress=1.0, error=None,
                                    message="done")  # fmt: skip
            tx.append_audit(ctx.actor, "pipeline.step.succeed", subject,
                            {"kind": step.kind, "attempt": attempt,
                             "output": _brief(plain(output))})  # fmt: skip
        if say:
            say(f"{step.name}: succeeded")
        faults.point("pipeline.step_committed")
        return True

    def _failed(self, ctx: StepContext, exc: Exception, attempt: int,
                say: Callable[[str], None] | None) -> None:  # fmt: skip
        run_id, step, row = ctx.run["id"], ctx.step, ctx.row
        subject = f"{run_id}/{step.name}"
        if isinstance(exc, FalajError):
            error = exc.message
        else:
            log.exception("pipeline %s: step %s raised", ctx.pipeline.name, step.name)
            error = f"{type(exc).__name__}: {exc}"
        final = isinstance(exc, CheckFailed | Forbidden) or attempt > step.retries or ctx.polling
        at = _now_us()
        with self.control.transaction() as tx:
            if final:
                tx.update_pipeline_step(run_id, row["idx"], status="failed", finished_at=at,
                                        error=error, message=f"failed (attempt {attempt})")  # fmt: skip
                self._fail_rest(tx, run_id, row["idx"])
                tx.update_pipeline_run(run_id, status="failed", finished_at=at,
                                       error=f"{step.name}: {error}")  # fmt: skip
                tx.append_audit(ctx.actor, "pipeline.step.fail", subject,
                                {"kind": step.kind, "attempt": attempt, "error": error})  # fmt: skip
                tx.append_audit(ctx.actor, "pipeline.run.fail", run_id,
                                {"pipeline": ctx.pipeline.name, "step": step.name})  # fmt: skip
            else:
                delay = step.backoff_s * 2 ** (attempt - 1)
                due = (datetime.now(UTC) + timedelta(seconds=delay)).isoformat(
                    timespec="milliseconds"
                )
                tx.update_pipeline_step(run_id, row["idx"], status="waiting", error=error,
                                        next_attempt_at=due,
                                        message=f"retry {attempt} of {step.retries} in {delay:g}s")  # fmt: skip
                tx.update_pipeline_run(run_id, status="waiting")
                tx.append_audit(ctx.actor, "pipeline.step.retry", subject,
                                {"kind": step.kind, "attempt": attempt, "error": error,
                                 "delay_s": delay, "retry_at": due})  # fmt: skip
        if say:
            say(f"{step.name}: {'failed' if final else 'will retry'}: {error}")
        if final:
            self._cleanup(run_id)

    def _fail_rest(self, tx: Any, run_id: str, idx: int) -> None:
        tx.skip_steps_after(run_id, idx, "an earlier step failed")

    def _finish(self, run: dict[str, Any], status: str, error: str | None) -> None:
        with self.control.transaction() as tx:
            tx.update_pipeline_run(run["id"], status=status, finished_at=_now_us(), error=error)
            action = "pipeline.run.succeed" if status == "succeeded" else "pipeline.run.fail"
            tx.append_audit(run_actor(run["id"]), action, run["id"], {"pipeline": run["pipeline"]})
        self._cleanup(run["id"])

    def _cleanup(self, run_id: str) -> None:
        """The run's plaintext training set lives only while the run does."""
        scratch = self.app.home / "tmp" / "pipelines"
        shutil.rmtree(scratch / run_id, ignore_errors=True)
        with suppress(OSError):  # another run's scratch is still there
            scratch.rmdir()

    def _progress(self, run_id: str, step: Step, fraction: float, message: str) -> None:
        if self.stopping.is_set():
            raise Interrupted
        key = (run_id, step.name)
        t = time.monotonic()
        if t - self._progress_at.get(key, 0.0) < 0.5 and fraction < 1.0:
            return  # at most two writes a second
        self._progress_at[key] = t
        idx = next(i for i, s in enumerate(self.control.pipeline_steps(run_id))
                   if s["name"] == step.name)  # fmt: skip
        with self.control.transaction() as tx:
            tx.update_pipeline_step(run_id, idx, progress=max(0.0, min(1.0, fraction)),
                                    message=message)  # fmt: skip

    # -- triggers -----------------------------------------------------------------

    def check_triggers(self, actor: Actor) -> list[dict[str, Any]]:
        """Start the runs that new data or a new drift alert call for (the tick)."""
        require(actor, "pipeline.run")
        started = []
        for p in self.definitions().values():
            if not (p.on_new_data or p.on_drift):
                continue
            state = self.control.trigger_state(p.name) or {}
            new_state, trigger = dict(state), None
            if p.on_new_data:
                trigger = self._new_data(p, state, new_state, actor)
            if trigger is None and p.on_drift:
                trigger = self._drift(p, state, new_state, actor)
            busy = bool(self.control.pipeline_runs(p.name, active=True, limit=1))
            if trigger is not None and busy:
                continue  # counted again after the active run ends
            if trigger is not None:
                started.append(self.start(p.name, actor, trigger))
            if new_state != state:
                with self.control.transaction() as tx:
                    tx.put_trigger_state(p.name, new_state, _now_us())
        return started

    def _new_data(self, p: Pipeline, state: dict, new_state: dict, actor: Actor) -> dict | None:
        nd = p.on_new_data
        table = nd["table"]
        has = self.app.features.table_keys(table) is not None
        if "rows" in nd:
            rows = self.app.features.row_count(table) if has else 0
            if "rows" not in state:
                new_state["rows"] = rows  # the watermark starts at what is there now
                return None
            if rows - state["rows"] >= nd["rows"]:
                new_state["rows"] = rows
                return {"kind": "new_data", "table": table, "new_rows": rows - state["rows"]}
            return None
        reports = self.app.ingestion.quality_reports(actor, table, limit=1) if has else []
        newest = reports[0].get("newest_event") if reports else None
        if newest is None:
            return None
        stamp = newest.timestamp() if isinstance(newest, datetime) else None
        if stamp is None:
            return None
        if "newest" not in state:
            new_state["newest"] = stamp
            return None
        if stamp - state["newest"] >= nd["freshness_s"]:
            new_state["newest"] = stamp
            return {"kind": "new_data", "table": table, "newer_by_s": stamp - state["newest"]}
        return None

    def _drift(self, p: Pipeline, state: dict, new_state: dict, actor: Actor) -> dict | None:
        monitoring = getattr(self.app, "monitoring", None)
        if monitoring is None or not hasattr(monitoring, "alerts"):
            return None
        model = p.on_drift["model"]
        try:
            alerts = monitoring.alerts(actor, model=model)
        except TypeError:
            alerts = monitoring.alerts(actor)
        seen = set(state.get("alerts", []))
        fresh = [a for a in alerts
                 if a.get("model", model) == model and a.get("status", "open") == "open"
                 and "drift" in str(a.get("kind") or a.get("rule") or a.get("measure") or "drift")
                 and str(a.get("id")) not in seen]  # fmt: skip
        if not fresh:
            return None
        new_state["alerts"] = sorted(seen | {str(a.get("id")) for a in fresh})
        return {"kind": "drift", "model": model, "alerts": [str(a.get("id")) for a in fresh]}


def _now_us() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _duration(started: str | None, finished: str | None) -> float | None:
    if not started:
        return None
    end = _parse_time(finished) if finished else datetime.now(UTC)
    return round((end - _parse_time(started)).total_seconds(), 3)


def _step_view(s: dict[str, Any]) -> dict[str, Any]:
    out = {k: s[k] for k in ("idx", "name", "kind", "status", "attempts", "started_at",
                             "finished_at", "next_attempt_at", "progress", "message", "error",
                             "output")}  # fmt: skip
    out["duration_s"] = _duration(s["started_at"], s["finished_at"]) if s["status"] not in (
        "pending", "skipped") else None  # fmt: skip
    return out


def _brief(output: dict[str, Any]) -> dict[str, Any]:
    """What a step's audit event keeps of its output: the scalars."""
    return {k: v for k, v in output.items() if isinstance(v, str | int | float | bool) or v is None}
