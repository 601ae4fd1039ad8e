"""The scheduler: jobs kept in control.db as JSON, one process per home, and a pipeline
run that a real `falaj run` killed with SIGKILL resumes from its last completed step
when `falaj run` starts again; the Pipelines page in a real browser."""

import json
import signal
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from appliance import demo
from appliance.core import Appliance
from tests.conftest import ACTOR, Falaj
from tests.test_browser import browser, login  # noqa: F401 -- the module's Chromium fixture

INPUTS = "[age, income, employment_years, loan_amount, debt_to_income]"
WORKSPACE = f"""
training:
  credit:
    table: loans
    label: default
    features: {INPUTS}
pipelines:
  retrain:
    schedule: {{cron: "0 3 * * *"}}
    steps:
      - validate: {{table: loans, min_rows: 100}}
      - train: {{spec: credit}}
      - evaluate
      - gates
      - register
  review:
    steps:
      - validate: {{table: loans}}
      - approve
  signoff:
    schedule: {{interval: 1d}}
    steps: [{{approve: {{name: sign_off}}}}]
"""


def make_home(home, rows=600):
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    (home / "falaj.yaml").write_text(WORKSPACE)
    app.ingestion.ingest(demo.credit_risk(rows, seed=3), "loans", "customer_id", "event_time",
                         ACTOR)  # fmt: skip
    app.close()


def test_jobs_are_kept_as_json_and_one_process_runs_them(home):
    make_home(home)
    first = Appliance.open({"home": str(home), "scheduler_tick": 3600.0})
    second = Appliance.open({"home": str(home)})
    said = []
    try:
        assert first.scheduler.start(said.append) is True
        jobs = {j["id"]: j for j in first.scheduler.jobs(ACTOR)}
        assert {"system:pipelines", "pipeline:retrain"} <= set(jobs)
        for service, job in [("releases", "system:releases"), ("monitoring", "system:monitoring"),
                             ("decision_log", "system:decisions")]:  # fmt: skip
            assert (job in jobs) == hasattr(Appliance, service)
        nightly = jobs["pipeline:retrain"]
        assert nightly["trigger"] == "cron 0 3 * * *" and nightly["args"] == ["retrain"]
        assert nightly["func"] == "appliance.scheduler.jobs:scheduled_pipeline"
        when = datetime.fromisoformat(nightly["next_run_time"])
        assert (when.hour, when.minute) == (3, 0) and when > datetime.now(UTC)
        # what control.db holds is JSON, no pickle
        rows = first.control.query("SELECT * FROM scheduler_jobs WHERE id = 'pipeline:retrain'")
        assert json.loads(rows[0]["trigger"])["fields"]["hour"] == "3"
        assert json.loads(rows[0]["args"]) == ["retrain"]
        # a second `falaj run` on the home runs no jobs
        assert second.scheduler.start(said.append) is False
        assert said[-1].startswith("scheduler: another process (a `falaj run`) runs the jobs")
        stores = {"control.db", "control.db-wal", "control.db-shm", "features.duckdb",
                  "features.duckdb.wal"}  # fmt: skip
        left = {p.name for p in home.iterdir()} - stores - {"tmp"}
        assert left == {"artifacts", "falaj.yaml", "keys"}  # no lock file
        before = {j["id"]: j["next_run_time"] for j in first.scheduler.jobs(ACTOR)}
        first.scheduler.stop()
        with first.control.transaction() as tx:  # the box was off a day when it was due
            tx.conn.execute("UPDATE scheduler_jobs SET next_run_time = ? "
                            "WHERE id = 'pipeline:signoff'", (time.time() - 86400,))  # fmt: skip
        assert second.scheduler.start(said.append) is True  # the lock went with the stop
        for _ in range(200):  # the missed run happens once, at once
            missed = second.scheduler.pipelines.runs(ACTOR, "signoff")
            if missed and missed[0]["status"] == "waiting":
                break
            time.sleep(0.05)
        assert len(missed) == 1 and missed[0]["trigger"] == {"kind": "schedule"}
        assert missed[0]["created_by"] == "scheduler:falaj" and missed[0]["status"] == "waiting"
        # an unchanged job keeps its stored next run time; the changed tick is replaced
        after = {j["id"]: j["next_run_time"] for j in second.scheduler.jobs(ACTOR)}
        assert after["pipeline:retrain"] == before["pipeline:retrain"]
        next_signoff = datetime.fromisoformat(after["pipeline:signoff"])
        assert next_signoff > datetime.now(UTC)  # and its next run is a day on
        # a schedule applied while it runs is registered (the tick looks at the file)
        assert second.scheduler.resync() is False
        ws = home / "falaj.yaml"
        ws.write_text(ws.read_text().replace("interval: 1d", "cron: '15 4 * * *'"))
        second.scheduler.resync()  # (or the tick did it already)
        jobs = {j["id"]: j for j in second.scheduler.jobs(ACTOR)}
        assert jobs["pipeline:signoff"]["trigger"] == "cron 15 4 * * *"
        assert after["system:pipelines"] != before["system:pipelines"]
        second.scheduler.stop()
        added = first.control.audit_find("scheduler.job.add", "pipeline:retrain")
        assert len(added) == 1 and added[0]["actor"] == "scheduler:falaj"
        assert first.control.audit_find("scheduler.job.add", "system:pipelines") == []
    finally:
        first.scheduler.stop()
        second.scheduler.stop()
        first.close()
        second.close()


def wait_for(server, run_id, statuses, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, run = server.request("GET", f"/api/v1/pipelines/runs/{run_id}")
        assert code == 200, run
        if run["status"] in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {run['status']}:\n{server.log.read_text()}")


def test_a_run_killed_by_sigkill_resumes_from_its_last_completed_step(
    home, start_server, monkeypatch
):
    make_home(home)
    monkeypatch.setenv("FALAJ_SCHEDULER_TICK", "0.2")
    monkeypatch.setenv("FALAJ_CHECK_ON_START", "false")
    # killed once the register step's version is committed, before the step is
    monkeypatch.setenv("FALAJ_FAULT", "pipeline.registered")
    server = start_server(home)
    code, run = server.request("POST", "/api/v1/pipelines/retrain/runs")
    assert code == 201
    assert server.proc.wait(timeout=120) == -signal.SIGKILL
    monkeypatch.delenv("FALAJ_FAULT")

    app = Appliance.open({"home": str(home)})
    try:
        seen = app.scheduler.pipelines.get(run["id"], ACTOR)
        assert seen["status"] == "running" and seen["interrupted"] is True
        assert [s["status"] for s in seen["steps"]] == ["succeeded"] * 4 + ["running"]
        (version,) = app.control.model_versions("credit")  # committed before the kill
        assert version["created_by"] == f"scheduler:{run['id']}"
    finally:
        app.close()

    server = start_server(home)  # falaj run again: the scheduler resumes the run
    done = wait_for(server, run["id"], ("succeeded", "failed"))
    assert done["status"] == "succeeded", done
    steps = {s["name"]: s for s in done["steps"]}
    assert [steps[n]["attempts"] for n in ("validate", "train", "evaluate", "gates")] == [1] * 4
    assert steps["register"]["attempts"] == 2
    assert steps["register"]["output"]["adopted"] is True  # the same version, not a second
    assert steps["register"]["output"]["version"] == 1
    # the job states reach /metrics (Prometheus' own parser reads it)
    from prometheus_client.parser import text_string_to_metric_families

    req = urllib.request.Request(server.url + "/metrics", headers=server.headers())
    with urllib.request.urlopen(req, timeout=10) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    states = {s.labels["state"]: s.value for s in families["falaj_job_state"].samples
              if s.labels["job"] == "system:pipelines"}  # fmt: skip
    assert sum(states.values()) == 1.0 and {k for k, v in states.items() if v} <= {
        "running", "succeeded"}  # fmt: skip
    # `falaj pipelines run --wait` beside it: `falaj run` runs the steps, the CLI follows
    follow = Falaj(home)("pipelines", "run", "review", "--wait")
    assert follow.exit_code == 0, follow.output
    assert "runs it; following" in follow.stderr and "approve: waiting" in follow.stderr
    assert "waiting for approval" in follow.stdout
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0  # stops cleanly, the scheduler with it

    app = Appliance.open({"home": str(home)})
    try:
        assert [v["version"] for v in app.control.model_versions("credit")] == [1]
        resumed = app.control.audit_find("pipeline.run.resume", run["id"])
        assert len(resumed) == 1 and resumed[0]["details"]["interrupted"] == ["register"]
        assert app.audit.verify(ACTOR, full=True).ok
        jobs = {j["id"]: j for j in app.scheduler.jobs(ACTOR)}
        assert jobs["system:pipelines"]["last_state"] == "succeeded"
    finally:
        app.close()


@pytest.mark.browser
def test_the_pipelines_page(home, start_server, browser, monkeypatch):  # noqa: F811
    home.mkdir()
    (home / "falaj.yaml").write_text(WORKSPACE)  # no data: `falaj run` creates the home
    monkeypatch.setenv("FALAJ_SCHEDULER_TICK", "0.2")
    monkeypatch.setenv("FALAJ_CHECK_ON_START", "false")
    server = start_server(home)
    page = browser.new_page()
    login(page, server)
    page.goto(server.url + "/")
    page.click("#nav-pipelines")
    assert "validate → approve" in page.locator("#pipeline-review").inner_text()
    assert "every 86400s" in page.locator("#pipeline-signoff").inner_text()
    assert "cron 0 3 * * *" in page.locator("#jobs").inner_text()
    page.click("#pipeline-signoff button.run")
    assert "started run" in page.locator("#done").inner_text()
    for _ in range(100):  # the scheduler takes the run; the page shows where it is
        page.reload()
        if page.locator("#approve").count():
            break
        time.sleep(0.2)
    assert "waiting for approval" in page.locator("#step-sign_off").inner_text()
    assert page.locator("#timeline svg rect.step.waiting").count() == 1
    page.fill("input[name=note]", "looks right")
    page.click("#approve")
    assert page.locator("#done").inner_text() == "approved"
    for _ in range(100):
        if "succeeded" in page.locator("#run-status").inner_text():
            break
        time.sleep(0.2)
        page.reload()
    assert page.locator("#run-status").inner_text() == "succeeded"
    assert "looks right" not in page.locator("#steps").inner_text()  # the note is audited
