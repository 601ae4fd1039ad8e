"""Pipelines declared in the workspace and their runs: every step's state persisted and
audited, approval, retries with backoff, cancellation, triggers, the CLI and the API.

One home per module (600 rows of the credit data, a linear spec with a 2-trial search),
so a whole run takes a few seconds."""

import json
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from appliance import demo
from appliance.auth import Actor
from appliance.core import Appliance
from appliance.errors import BadInput, CheckFailed, NotFound
from appliance.features.workspace import parse
from tests.conftest import ACTOR, Falaj, admin_client

INPUTS = "[age, income, employment_years, loan_amount, debt_to_income]"
WORKSPACE = f"""
tables:
  loans: {{entity: customer_id, event_time: event_time}}
views:
  applicant:
    table: loans
    columns: {INPUTS}
training:
  credit:
    table: loans
    label: default
    features: {INPUTS}
    search: {{strategy: random, trials: 2, seed: 1}}
  challenger:
    model: credit
    table: loans
    label: default
    features: {INPUTS}
    params: {{C: 0.5}}
    gates: {{champion: null}}
pipelines:
  retrain:
    description: retrain on the latest labels
    schedule: {{cron: "0 3 * * *"}}
    steps:
      - validate: {{table: loans, min_rows: 100, max_quarantined: 0.1}}
      - training_set: {{table: loans, label: default, features: ["applicant:*"]}}
      - train: {{spec: credit}}
      - evaluate
      - gates
      - register
      - approve
  ship:
    steps:
      - train: {{spec: challenger}}
      - evaluate
      - gates
      - register
      - release: {{strategy: canary, percent: 20, policy: {{min_requests: 1000}}}}
      - decide: {{timeout: 1h}}
  search_only:
    steps: [{{train: {{spec: credit}}}}]
  gate:
    steps:
      - validate: {{table: loans}}
      - approve: {{name: sign_off}}
  flaky:
    steps:
      - validate: {{table: late_table, retries: 2, backoff: 0.05}}
  strict:
    steps:
      - validate: {{table: loans, min_rows: 1000000, retries: 3}}
  watch:
    on_new_data: {{table: loans, rows: 100}}
    on_drift: {{model: credit}}
    steps: [approve]
  fresh:
    on_new_data: {{table: loans, freshness: 400d}}
    steps: [approve]
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("pipelines") / "home"


@pytest.fixture(scope="module")
def app(home):
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    (home / "falaj.yaml").write_text(WORKSPACE)
    app.views.apply(home / "falaj.yaml", ACTOR)
    app.ingestion.ingest(demo.credit_risk(600, seed=3), "loans", "customer_id", "event_time", ACTOR)
    yield app
    app.close()


@pytest.fixture
def svc(app):
    return app.scheduler.pipelines


def events_of(app, run_id):
    rows = app.control.query(
        "SELECT actor, action, subject, details FROM audit_events "
        "WHERE subject = ? OR subject LIKE ? ORDER BY seq",
        (run_id, run_id + "/%"),
    )
    return [(r["action"], r["subject"].partition("/")[2], json.loads(r["details"])) for r in rows]


def test_a_run_goes_step_by_step_and_waits_for_approval(app, svc, home):
    run = svc.start("retrain", ACTOR)
    assert run["status"] == "queued" and [s["status"] for s in run["steps"]] == ["pending"] * 7
    run = svc.advance(run["id"], ACTOR, wait=True)
    rid = run["id"]
    steps = {s["name"]: s for s in run["steps"]}
    assert run["status"] == "waiting"
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 6 + ["waiting"]
    assert all(s["attempts"] == 1 and s["duration_s"] >= 0 for s in run["steps"])
    assert steps["validate"]["output"]["rows"] == 600
    assert steps["validate"]["output"]["quarantined_share"] == 0.0
    ts = steps["training_set"]["output"]
    assert ts["rows"] == 600 and len(ts["features"]) == 5
    # the train step keeps the search's choice; evaluate and register fit with it
    train = steps["train"]["output"]
    assert train["best"]["trials"] == 2 and "C" in train["params"]
    assert app.control.run(train["search"])["status"] == "completed"
    evaluated = steps["evaluate"]["output"]
    registered = steps["register"]["output"]
    assert evaluated["gates_passed"] is True and steps["gates"]["output"]["passed"] is True
    assert registered["same_as_evaluated"] is True and registered["adopted"] is False
    assert registered["holdout"]["roc_auc"] == evaluated["holdout"]["roc_auc"] > 0.6
    version = app.control.model_version("credit", registered["version"])
    assert version["created_by"] == f"scheduler:{rid}"  # what a resumed register adopts
    lineage_set = app.registry.version("credit", registered["version"], ACTOR)
    assert lineage_set["status"] == "ready"
    assert steps["approve"]["message"].startswith("waiting for approval")
    # the plaintext training set lived only until the model it trained was registered
    assert not (home / "tmp" / "pipelines" / rid / "training_set.parquet").exists()

    svc.approve(rid, Actor("user", "amira", "ml-engineer"), note="metrics reviewed")
    run = svc.advance(rid, ACTOR)
    assert run["status"] == "succeeded" and run["finished_at"] and run["error"] is None
    assert run["steps"][-1]["output"] == {"approved": True, "by": "user:amira",
                                          "note": "metrics reviewed"}  # fmt: skip
    assert not (home / "tmp" / "pipelines" / rid).exists()
    ev = events_of(app, rid)
    assert ev[0][:2] == ("pipeline.run.start", "")
    per_step = [(a, s) for a, s, _ in ev if s]
    for name in ("validate", "training_set", "train", "evaluate", "gates", "register"):
        assert per_step.count(("pipeline.step.start", name)) == 1
        assert per_step.count(("pipeline.step.succeed", name)) == 1
    assert ("pipeline.step.wait", "approve") in per_step
    assert ("pipeline.step.approve", "approve") in per_step
    assert ev[-1][:2] == ("pipeline.run.succeed", "")
    assert app.audit.verify(ACTOR, full=True).ok


def test_a_release_step_starts_a_canary_and_decide_waits_for_its_outcome(svc, app):
    app.serving.deploy("credit", 1, ACTOR)
    run = svc.advance(svc.start("ship", ACTOR)["id"], ACTOR, wait=True)
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 5 + ["waiting"]
    release = run["steps"][4]["output"]
    assert release["version"] == 2 and release["strategy"] == "canary"
    assert release["percent"] == 20 and release["policy"]["min_requests"] == 1000
    active = app.releases.status("credit", ACTOR)["release"]
    assert active["id"] == release["release_id"] and active["candidate_version"] == 2
    assert "waiting for release" in run["steps"][5]["message"]
    assert svc.advance(run["id"], ACTOR)["status"] == "waiting"  # no decision yet
    app.releases.promote("credit", Actor("user", "amira", "ml-engineer"))
    run = svc.advance(run["id"], ACTOR)
    assert run["status"] == "succeeded"
    assert run["steps"][5]["output"]["decision"] == "promoted"
    assert app.releases.status("credit", ACTOR)["live_version"] == 2


def test_a_rejected_approval_fails_the_run(svc, app):
    run = svc.advance(svc.start("gate", ACTOR)["id"], ACTOR, wait=True)
    assert [s["status"] for s in run["steps"]] == ["succeeded", "waiting"]
    with pytest.raises(CheckFailed, match="no step waiting for approval"):
        svc.approve(svc.start("strict", ACTOR)["id"], ACTOR)  # queued: nothing waits yet
    svc.cancel(svc.runs(ACTOR, "strict")[0]["id"], ACTOR)
    run = svc.approve(run["id"], Actor("user", "omar", "ml-engineer"), reject=True, note="not now")
    assert run["status"] == "failed" and run["error"] == "sign_off: rejected by user:omar"
    assert run["steps"][1]["status"] == "failed"
    assert ("pipeline.step.reject", "sign_off") in [e[:2] for e in events_of(app, run["id"])]


def test_a_failing_step_is_retried_with_backoff_then_fails(svc, app):
    run = svc.advance(svc.start("flaky", ACTOR)["id"], ACTOR, wait=True)
    (step,) = run["steps"]
    assert run["status"] == "failed" and step["status"] == "failed" and step["attempts"] == 3
    assert "late_table" in step["error"] and "no data yet" in step["error"]
    retries = [d for a, _, d in events_of(app, run["id"]) if a == "pipeline.step.retry"]
    assert [d["attempt"] for d in retries] == [1, 2]
    assert [d["delay_s"] for d in retries] == [0.05, 0.1]  # backoff x 2^(attempt-1)
    assert all("late_table" in d["error"] and d["retry_at"] for d in retries)


def test_a_failed_check_is_not_retried(svc):
    run = svc.advance(svc.start("strict", ACTOR)["id"], ACTOR, wait=True)
    (step,) = run["steps"]
    assert run["status"] == "failed" and step["attempts"] == 1  # retries: 3, but a check
    assert "600 rows, fewer than min_rows 1000000" in step["error"]


def test_one_active_run_per_pipeline_and_cancel(svc, app):
    run = svc.start("gate", ACTOR)
    with pytest.raises(CheckFailed, match=f"run {run['id']} is still queued"):
        svc.start("gate", ACTOR)
    run = svc.cancel(run["id"], Actor("user", "amira", "ml-engineer"))
    assert run["status"] == "cancelled" and {s["status"] for s in run["steps"]} == {"skipped"}
    with pytest.raises(CheckFailed, match="is cancelled already"):
        svc.cancel(run["id"], ACTOR)
    assert svc.advance(run["id"], ACTOR)["status"] == "cancelled"  # nothing runs
    with pytest.raises(NotFound, match="no pipeline 'nope'.*retrain"):
        svc.start("nope", ACTOR)
    with pytest.raises(NotFound, match="no pipeline run 'r1'"):
        svc.get("r1", ACTOR)


def test_a_step_cut_short_by_a_stopping_process_runs_again(app, svc, monkeypatch):
    real = app.training.run

    def stopped_mid_search(spec, actor, progress=None, **kw):
        svc.stopping.set()  # SIGTERM arrived: the next progress report gives up the step
        progress(1, 2)

    monkeypatch.setattr(app.training, "run", stopped_mid_search)
    try:
        run = svc.advance(svc.start("search_only", ACTOR)["id"], ACTOR)
    finally:
        svc.stopping.clear()
    (step,) = run["steps"]
    assert run["status"] == "running" and run["owner"] is None  # any process may take it
    assert step["status"] == "pending" and step["message"] == "interrupted: the process stopped"
    assert ("pipeline.step.interrupt", "train") in [e[:2] for e in events_of(app, run["id"])]
    monkeypatch.setattr(app.training, "run", real)
    run = svc.advance(run["id"], ACTOR)
    assert run["status"] == "succeeded" and run["steps"][0]["attempts"] == 2


class Alerts:
    def __init__(self, alerts):
        self._alerts = alerts

    def alerts(self, actor, model=None):
        return [a for a in self._alerts if model in (None, a["model"])]


def test_new_rows_and_a_new_drift_alert_start_runs(svc, app):
    assert svc.check_triggers(ACTOR) == []  # the first look sets the watermark
    assert app.control.trigger_state("watch") == {"rows": 600}
    more = demo.credit_risk(150, seed=11)
    app.ingestion.ingest(more, "loans", "customer_id", "event_time", ACTOR)
    (run,) = svc.check_triggers(ACTOR)
    assert run["pipeline"] == "watch" and run["trigger"] == {"kind": "new_data", "table": "loans",
                                                             "new_rows": 150}  # fmt: skip
    assert svc.check_triggers(ACTOR) == []  # one run at a time
    svc.cancel(run["id"], ACTOR)
    saved = app.__dict__.get("monitoring")
    app.__dict__["monitoring"] = Alerts([
        {"id": 7, "model": "credit", "kind": "feature_drift", "status": "open"},
        {"id": 8, "model": "other", "kind": "prediction_drift", "status": "open"},
        {"id": 9, "model": "credit", "kind": "latency_p99", "status": "open"},
    ])  # fmt: skip
    try:
        (run,) = svc.check_triggers(ACTOR)
        assert run["trigger"] == {"kind": "drift", "model": "credit", "alerts": ["7"]}
        svc.cancel(run["id"], ACTOR)
        assert svc.check_triggers(ACTOR) == []  # an alert starts one run, once
    finally:
        if saved is None:
            app.__dict__.pop("monitoring", None)
        else:
            app.__dict__["monitoring"] = saved
    # freshness: a batch whose newest event is 400 days past the last one's
    later = demo.credit_risk(50, seed=12)
    i = later.schema.get_field_index("event_time")
    shifted = pc.add(later["event_time"], pa.scalar(timedelta(days=800), pa.duration("us")))
    app.ingestion.ingest(later.set_column(i, "event_time", shifted), "loans", "customer_id",
                         "event_time", ACTOR)  # fmt: skip
    (run,) = svc.check_triggers(ACTOR)
    assert run["pipeline"] == "fresh" and run["trigger"]["kind"] == "new_data"
    assert run["trigger"]["newer_by_s"] >= 400 * 86400
    svc.cancel(run["id"], ACTOR)


def test_a_pipelines_schedule_queues_a_run_as_the_scheduler(app, svc):
    from appliance.scheduler import jobs

    jobs.bind(app)
    try:
        run_id = jobs.scheduled_pipeline("gate")
        assert jobs.scheduled_pipeline("gate") is None  # one active run: the next is skipped
    finally:
        jobs.bind(None)
    run = svc.get(run_id, ACTOR)
    assert run["trigger"] == {"kind": "schedule"} and run["created_by"] == "scheduler:falaj"
    svc.cancel(run_id, ACTOR)


def test_the_api_and_the_pages(app, svc):
    c = admin_client(app)
    listed = c.get("/api/v1/pipelines").get_json()
    names = ["retrain", "ship", "search_only", "gate", "flaky", "strict", "watch", "fresh"]
    assert [p["name"] for p in listed] == names
    retrain = listed[0]
    assert retrain["model"] == "credit" and retrain["triggers"] == ["cron 0 3 * * *"]
    assert retrain["last_run"]["status"] == "succeeded"
    r = c.post("/api/v1/pipelines/gate/runs")
    assert r.status_code == 201 and r.get_json()["status"] == "queued"
    rid = r.get_json()["id"]
    assert c.post("/api/v1/pipelines/gate/runs").status_code == 409
    assert c.post("/api/v1/pipelines/nope/runs").status_code == 404
    svc.advance(rid, ACTOR)
    bad = c.post(f"/api/v1/pipelines/runs/{rid}/approve", json={"reject": "yes"})
    assert bad.status_code == 400 and '"reject"' in bad.get_json()["error"]["message"]
    ok = c.post(f"/api/v1/pipelines/runs/{rid}/approve", json={"note": "fine"})
    assert ok.status_code == 200 and ok.get_json()["steps"][1]["status"] == "succeeded"
    assert c.get(f"/api/v1/pipelines/runs/{rid}").get_json()["id"] == rid
    assert c.get("/api/v1/pipelines/runs/r0").status_code == 404
    runs = c.get("/api/v1/pipelines/runs?pipeline=gate").get_json()
    assert runs[0]["id"] == rid and all(r["pipeline"] == "gate" for r in runs)
    assert c.get("/api/v1/jobs").get_json() == []  # no scheduler has run on this home
    page = c.get("/pipelines").get_data(as_text=True)
    assert "retrain" in page and "validate → training_set → train" in page
    svc.advance(rid, ACTOR)
    run_page = c.get(f"/pipelines/runs/{rid}").get_data(as_text=True)
    assert '<svg class="timeline"' in run_page and run_page.count('<rect class="step') == 2
    form = c.post("/pipelines/gate/run")
    assert form.status_code == 302 and "/pipelines/runs/" in form.headers["Location"]
    svc.cancel(svc.runs(ACTOR, "gate")[0]["id"], ACTOR)


BAD = {
    "steps: [fly]": "pipelines: p: steps[0]: 'fly' is not a step",
    "steps: [evaluate]": "pipelines: p: steps[0]: evaluate: needs a train step before it",
    "steps: [{train: {spec: nope}}]": "steps[0]: train: spec: 'nope' is not a training spec",
    "steps: [{validate: {table: t, min_rows: -1}}]": "validate: min_rows: expected an integer",
    "steps: [{validate: {table: t, colour: red}}]": "validate: unknown key 'colour'",
    "steps: [{approve: {timeout: soon}}]": "approve: timeout: 'soon' is not a duration",
    "steps: [approve, approve]": "the step name 'approve' is used twice",
    "steps: [approve]\n    schedule: {cron: '61 * * * *'}": "schedule: cron: '61 * * * *'",
    "steps: [approve]\n    on_new_data: {table: t}": "on_new_data: give table and one of rows",
    "steps: []": "p: steps: expected a non-empty list",
    "steps: [{release: {strategy: yolo}}]": "release: strategy: expected one of",
    "steps: [{release: {policy: {min_requests: 0}}}]": "release: policy.min_requests: expected",
}


@pytest.mark.parametrize("body, message", BAD.items(), ids=range(len(BAD)))
def test_pipeline_declarations_are_checked_naming_the_key(body, message):
    with pytest.raises(BadInput, match=None) as exc:
        parse(f"pipelines:\n  p:\n    {body}\n", "falaj.yaml")
    assert exc.value.message.startswith("falaj.yaml: pipelines: p")
    assert message in exc.value.message


def test_the_cli(tmp_path):
    import pyarrow.csv as pacsv

    credit_csv = tmp_path / "credit.csv"
    pacsv.write_csv(demo.credit_risk(300, seed=3), credit_csv)
    falaj = Falaj(tmp_path / "cli")
    falaj.ok("init")
    falaj.ok("ingest", credit_csv, "--table", "loans", "--entity", "customer_id",
             "--timestamp", "event_time")  # fmt: skip
    ws = tmp_path / "ws.yaml"
    ws.write_text(WORKSPACE.replace("{spec: challenger}", "{spec: challengr}"))
    bad = falaj("apply", "--workspace", ws)  # falaj apply checks the pipelines too
    assert (
        bad.exit_code == 2
        and "ws.yaml: pipelines: ship: steps[0]: train: spec: 'challengr' is not a training spec"
        in bad.stderr
    )
    (tmp_path / "cli" / "falaj.yaml").write_text(WORKSPACE)
    listed = json.loads(falaj.ok("pipelines", "list", "--json").stdout)
    assert [p["name"] for p in listed][:2] == ["retrain", "ship"]
    r = falaj.ok("pipelines", "run", "gate", "--wait")
    assert "waiting for approval" in r.stdout and "sign_off" in r.stdout
    rid = r.stdout.split()[1]
    status = json.loads(falaj.ok("pipelines", "status", rid, "--json").stdout)
    assert status["status"] == "waiting" and status["steps"][0]["output"]["rows"] == 300
    falaj.ok("pipelines", "approve", rid, "--note", "ok")
    assert "queued" in falaj.ok("pipelines", "status").stdout  # approved: the next advance ends it
    failed = falaj("pipelines", "run", "strict", "--wait")
    assert failed.exit_code == 1 and "fewer than min_rows" in failed.stdout
    missing = falaj("pipelines", "run", "nope")
    assert missing.exit_code == 2 and "no pipeline 'nope'" in missing.stderr
    assert falaj("pipelines", "approve", "r0").exit_code == 2
    assert json.loads(falaj.ok("jobs", "--json").stdout) == []


def test_a_runs_holder_is_one_process_not_whichever_reuses_its_pid():
    import socket

    from appliance.scheduler.pipelines import me, owner_alive

    holder = me()
    pid_host, _, started = holder.rpartition("/")
    assert owner_alive(holder) is True
    assert owner_alive(f"{pid_host}/{int(started) + 1}") is False  # the pid, a later process
    assert owner_alive(f"999999999@{socket.gethostname()}/1") is False
    assert owner_alive("1@another-host/1") is True  # not ours to judge
