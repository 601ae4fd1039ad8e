"""Releases: canary, shadow and A/B routing, promote and rollback by hand and by an
automatic policy, over real stores, the CLI, the API on a real server and the page."""

import json
import re
import shutil
import time
import urllib.error
import urllib.request

import pyarrow.csv as pacsv
import pytest

from appliance import demo
from appliance.core import Appliance
from appliance.serving import releases as releases_module
from appliance.serving.releases import BUCKETS, Policy, judge, sticky_bucket, takes_candidate
from tests.conftest import ACTOR, FEATURES, RECORD, Falaj, Server, admin_client
from tests.test_browser import browser, login  # noqa: F401 -- the module's Chromium

SHARE_TOLERANCE = 0.05  # |observed - P| over 600 keys: > 2.6 standard deviations (keys fixed: no flake) at P = 30%


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A home with credit@1 (every numeric input) live and credit@2 (five of them)
    registered; closed, so a server or a test's own appliance can open a copy."""
    base = tmp_path_factory.mktemp("releases")
    csv = base / "credit.csv"
    pacsv.write_csv(demo.credit_risk(1500, seed=3), csv)
    home = base / "home"
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    app.ingestion.ingest(csv, "loans", "customer_id", "event_time", ACTOR)
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES[:5]))
    rejected = app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES),
                                  gates={"calibration": {"ece": 0.0}})  # fmt: skip
    assert rejected["status"] == "rejected" and rejected["version"] == 3
    app.serving.deploy("credit", 1, ACTOR)
    app.close()
    return home


@pytest.fixture
def rel_home(prepared, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(prepared, home)
    return home


@pytest.fixture
def rapp(rel_home):
    app = Appliance.open({"home": str(rel_home), "decision_log": "async"})
    yield app
    app.close()


def audit_actions(app, prefix="release."):
    return [e for e in app.control.audit_tail(200) if e["action"].startswith(prefix)][::-1]


# -- routing ------------------------------------------------------------------------


def test_sticky_buckets_move_keys_one_way_as_the_share_rises():
    keys = [f"customer-{i}" for i in range(10000)]
    assert all(0 <= sticky_bucket("credit", k) < BUCKETS for k in keys[:100])
    previous = set()
    for percent in (1, 5, 20, 50, 100):
        taken = {k for k in keys if takes_candidate("credit", percent, k)}
        assert previous <= taken  # no key goes back to the baseline
        assert abs(len(taken) / len(keys) - percent / 100) < 0.02
        previous = taken
    assert not any(takes_candidate("credit", 0, k) for k in keys)


def test_canary_is_sticky_by_key_and_takes_its_share(rapp):
    r = rapp.releases.start("credit", 2, "canary", ACTOR, percent=30)
    assert r["release"]["candidate_version"] == 2 and r["release"]["candidate_slot"] == "green"
    got = {}
    for i in range(600):
        a = rapp.serving.predict("credit", [RECORD], ACTOR, key=f"c{i}")
        got[f"c{i}"] = (a["version"], a["variant"])
    assert {v for v, _ in got.values()} == {1, 2}
    assert all(var == ("candidate" if v == 2 else "baseline") for v, var in got.values())
    share = sum(v == 2 for v, _ in got.values()) / len(got)
    assert abs(share - 0.30) < SHARE_TOLERANCE
    for i in range(0, 600, 10):  # the same key, the same variant
        assert (
            rapp.serving.predict("credit", [RECORD], ACTOR, key=f"c{i}")["version"]
            == got[f"c{i}"][0]
        )
    report = rapp.releases.status("credit", ACTOR)["release"]["report"]
    assert report["baseline"]["requests"] + report["candidate"]["requests"] == 660
    assert report["candidate"]["errors"] == 0 and report["candidate"]["p99_ms"] > 0
    rapp.decision_log.flush()
    rows = rapp.features.query(
        "SELECT variant, version, count(*) AS n, bool_and(served) AS served FROM _predictions "
        "WHERE release_id = ? GROUP BY ALL ORDER BY variant",
        [r["release"]["id"]],
    )
    assert [(x["variant"], x["version"], x["served"]) for x in rows] == [
        ("baseline", 1, True), ("candidate", 2, True)]  # fmt: skip
    assert sum(x["n"] for x in rows) == 660


def test_a_release_keeps_its_counts_across_a_restart(rel_home):
    """Counts since the last evaluation are stored when the appliance closes (a stop of
    `falaj run` between two ``release_check_every`` runs lost them)."""
    app = Appliance.open({"home": str(rel_home), "decision_log": "async"})
    try:
        app.releases.start("credit", 2, "canary", ACTOR, percent=50)
        for i in range(40):
            app.serving.predict("credit", [RECORD], ACTOR, key=f"r{i}")
        before = app.releases.status("credit", ACTOR)["release"]["report"]
    finally:
        app.close()
    assert before["baseline"]["requests"] + before["candidate"]["requests"] == 40
    app = Appliance.open({"home": str(rel_home)})
    try:
        after = app.releases.status("credit", ACTOR)["release"]["report"]
        assert after == before
        assert app.serving.router.counters.held() == []
    finally:
        app.close()


def test_shadow_logs_the_candidate_and_never_returns_it(rapp):
    rid = rapp.releases.start("credit", 2, "shadow", ACTOR)["release"]["id"]
    answers = [rapp.serving.predict("credit", [RECORD], ACTOR, key=f"s{i}") for i in range(60)]
    assert {(a["version"], a["variant"]) for a in answers} == {(1, "baseline")}
    rapp.serving.router.wait_shadow()
    rapp.decision_log.flush()
    rows = rapp.features.query(
        "SELECT variant, version, served, count(*) AS n FROM _predictions WHERE release_id = ? "
        "GROUP BY ALL ORDER BY variant",
        [rid],
    )
    assert [(x["variant"], x["version"], x["served"], x["n"]) for x in rows] == [
        ("baseline", 1, True, 60), ("candidate", 2, False, 60)]  # fmt: skip
    served_ids = {a["request_id"] for a in answers}
    copies = rapp.features.query(
        "SELECT DISTINCT request_id FROM _predictions WHERE release_id = ? AND NOT served", [rid]
    )
    assert not served_ids & {c["request_id"] for c in copies}


def test_promote_and_rollback_switch_who_answers_and_are_audited(rapp):
    rapp.releases.start("credit", 2, "ab", ACTOR, percent=50)
    with pytest.raises(Exception, match="active ab release") as e:
        rapp.serving.deploy("credit", 2, ACTOR)
    assert e.value.status == 409
    p = rapp.releases.promote("credit", ACTOR)
    assert (p["live_version"], p["live_slot"]) == (2, "green")
    assert {rapp.serving.predict("credit", [RECORD], ACTOR, key=f"k{i}")["version"]
            for i in range(30)} == {2}  # fmt: skip
    assert rapp.serving.predict("credit", [RECORD], ACTOR)["variant"] == "live"
    # the old live version stays in the other slot: a release of it, then its rollback
    rapp.releases.start("credit", 1, "canary", ACTOR, percent=100)
    assert rapp.serving.predict("credit", [RECORD], ACTOR, key="x")["version"] == 1
    rb = rapp.releases.rollback("credit", ACTOR)
    assert rb["live_version"] == 2 and rapp.control.deployment("credit")["blue_version"] == 1
    assert {rapp.serving.predict("credit", [RECORD], ACTOR, key=f"k{i}")["version"]
            for i in range(30)} == {2}  # fmt: skip
    events = audit_actions(rapp)
    assert [e["action"] for e in events] == [
        "release.start", "release.promote", "release.start", "release.rollback"]  # fmt: skip
    assert events[1]["subject"] == "credit@2" and events[1]["details"]["live_slot"] == "green"
    assert events[3]["details"]["report"]["candidate"]["requests"] == 1
    history = rapp.releases.status("credit", ACTOR)["history"]
    assert [h["status"] for h in history] == ["rolled_back", "promoted"]


def test_bad_release_requests_name_what_is_wrong(rapp):
    cases = [
        (lambda: rapp.releases.start("nope", 2, "canary", ACTOR), 404, "not registered"),
        (lambda: rapp.releases.start("credit", 9, "canary", ACTOR), 404, "no version 9"),
        (lambda: rapp.releases.start("credit", 2, "canary", ACTOR, percent=101), 400, "outside 0-100"),
        (lambda: rapp.releases.start("credit", 2, "canary", ACTOR, percent=-1), 400, "outside 0-100"),
        (lambda: rapp.releases.start("credit", 2, "blue", ACTOR), 400, "strategy"),
        (lambda: rapp.releases.start("credit", 1, "canary", ACTOR), 400, "live version already"),
        (lambda: rapp.releases.start("credit", 2, "canary", ACTOR, policy={}), 400, "min_requests"),
        (lambda: rapp.releases.start("credit", 2, "canary", ACTOR, policy={"min_requests": 5, "max_error_rate": 2}), 400, "max_error_rate"),
        (lambda: rapp.releases.promote("credit", ACTOR), 409, "no active release"),
        (lambda: rapp.releases.rollback("nope", ACTOR), 404, "not registered"),
    ]  # fmt: skip
    for call, status, message in cases:
        with pytest.raises(Exception, match=message) as e:
            call()
        assert e.value.status == status, message
    with pytest.raises(
        Exception, match=r"credit@3 was rejected by its gates \(calibration\); use --force"
    ) as e:
        rapp.releases.start("credit", 3, "canary", ACTOR)
    assert e.value.status == 409
    rapp.releases.start("credit", 3, "canary", ACTOR, force=True)
    with pytest.raises(Exception, match="active canary release") as e:
        rapp.releases.start("credit", 2, "ab", ACTOR)
    assert e.value.status == 409
    [started] = audit_actions(rapp)
    assert started["subject"] == "credit@3" and started["details"]["forced"] is True
    assert started["details"]["failed_gates"] == ["calibration"]


# -- the automatic policy -----------------------------------------------------------------


def test_policy_judges_time_drift_and_live_metric_from_monitoring_evidence():
    policy = Policy.parse({"after": "10m", "max_psi": 0.2, "min_metric_delta": -0.01})
    assert policy.to_dict() == {"after_s": 600.0, "max_psi": 0.2, "min_metric_delta": -0.01,
                                "after": "10m"}  # fmt: skip
    assert Policy.parse(policy.to_dict()) == policy  # as stored, as read back
    ok = {"requests": 500, "errors": 0, "error_rate": 0.0, "p50_ms": 2.0, "p99_ms": 9.0}
    report = {"baseline": ok, "candidate": ok}
    # monitoring's shape: {variant: {"max_psi": ..., "metric": {"auc": ..., "labelled": n}}}
    evidence = {"baseline": {"max_psi": 0.01, "metric": {"auc": 0.80, "labelled": 300}},
                "candidate": {"max_psi": 0.05, "metric": {"auc": 0.82, "labelled": 300}}}  # fmt: skip
    assert judge(policy, report, 60, evidence)[0] == "wait"
    assert judge(policy, report, 601, evidence)[0] == "promote"
    drifted = evidence | {"candidate": {"max_psi": 0.4, "metric": {"auc": 0.82}}}
    decision, reasons = judge(policy, report, 60, drifted)
    assert decision == "rollback" and reasons[0] == "PSI 0.4000 > 0.2"
    worse = evidence | {"candidate": {"max_psi": 0.05, "metric": {"auc": 0.75}}}
    assert judge(policy, report, 601, worse) == ("rollback", ["live metric delta -0.0500 < -0.01"])
    unlabelled = {v: {"max_psi": 0.01, "metric": {"auc": None, "labelled": 0}} for v in evidence}
    decision, reasons = judge(policy, report, 601, unlabelled)
    assert decision == "promote" and "not judged" in reasons[-1]


def test_a_canary_that_fails_is_rolled_back_automatically_with_its_evidence(rapp, monkeypatch):
    rapp.releases.start("credit", 2, "canary", ACTOR, percent=50,
                        policy={"min_requests": 1000, "max_error_rate": 0.05})  # fmt: skip
    candidate = rapp.serving.server.loaded("credit").slots["green"].model

    def broken(X):
        raise RuntimeError("candidate is broken")

    monkeypatch.setattr(candidate, "predict_matrix", broken)
    answers = [rapp.serving.predict("credit", [RECORD], ACTOR, key=f"k{i}") for i in range(80)]
    assert {a["version"] for a in answers} == {1}  # the baseline answered every request
    assert rapp.releases.evaluate(ACTOR, "credit")[0]["decision"] == "rollback"
    event = audit_actions(rapp)[-1]
    assert event["action"] == "release.auto_rollback"
    report = event["details"]["report"]["candidate"]
    assert report["errors"] == report["requests"] > 20 and report["error_rate"] == 1.0
    assert "error rate 1.0000 > 0.05" in event["details"]["reasons"][0]
    assert event["details"]["policy"] == {"min_requests": 1000, "max_error_rate": 0.05}
    assert rapp.releases.status("credit", ACTOR)["release"] is None
    assert rapp.control.deployment("credit")["green_version"] is None  # as before the release


def test_status_reuses_recent_evidence_and_an_evaluation_computes_it_afresh(
    rapp, rel_home, monkeypatch
):
    """Evidence reads every decision of the release (about 1.3 s of CPU at 1M): a status
    reuses the last one while it is young for what it cost, saying when it was computed;
    an evaluation, which decides on it, computes it again."""
    rapp.releases.start("credit", 2, "canary", ACTOR, percent=50, policy={"min_requests": 1000})

    def predict(keys):
        for k in keys:
            rapp.serving.predict("credit", [RECORD], ACTOR, key=k)
        rapp.decision_log.flush()

    def evidence():
        return rapp.releases.status("credit", ACTOR)["release"]["evidence"]

    def requests(e):
        return e["baseline"]["requests"] + e["candidate"]["requests"]

    monkeypatch.setattr(releases_module, "EVIDENCE_REUSE", 0.0)  # cheap: never reused
    predict(f"e{i}" for i in range(20))
    first = evidence()
    assert requests(first) == 20 and first["as_of"].endswith("Z")
    monkeypatch.setattr(releases_module, "EVIDENCE_REUSE", 1e9)  # dear: reused, up to the cap
    predict(f"e{i}" for i in range(20, 30))
    assert evidence() == first
    assert rapp.releases.evaluate(ACTOR, "credit")[0]["decision"] == "wait"
    assert requests(evidence()) == 30  # what the evaluation computed
    monkeypatch.setattr(releases_module, "EVIDENCE_MAX_AGE_S", 0.0)  # past the cap
    predict(f"e{i}" for i in range(30, 35))
    assert requests(evidence()) == 35
    # ended by another process: this one forgets its evidence once it sees that
    release_id = rapp.releases.status("credit", ACTOR)["release"]["id"]
    assert release_id in rapp.releases._computed
    other = Appliance.open({"home": str(rel_home)})
    try:
        other.releases.rollback("credit", ACTOR)
    finally:
        other.close()
    rapp.releases.list(ACTOR)
    assert release_id not in rapp.releases._computed


def test_a_good_canary_waits_for_its_evidence_then_is_promoted(rapp, falaj_rel, rel_home):
    falaj_rel.ok("release", "start", "credit", "--version", "2", "--strategy", "canary",
                 "--percent", "50", "--auto", "--min-requests", "30", "--max-error-rate",
                 "0.05", "--max-p99-ms", "5000")  # fmt: skip
    for i in range(20):
        rapp.serving.predict("credit", [RECORD], ACTOR, key=f"k{i}")
    waited = rapp.releases.evaluate(ACTOR)[0]
    assert waited["decision"] == "wait"
    # the counts are stored with the release: another process (or a restart) reads them
    other = Appliance.open({"home": str(rel_home)})
    try:
        stored = other.control.active_releases()[0]["stats"]
    finally:
        other.close()
    assert stored["candidate"]["requests"] + stored["baseline"]["requests"] == 20
    assert stored["candidate"]["requests"] == waited["report"]["candidate"]["requests"]
    for i in range(20, 120):
        rapp.serving.predict("credit", [RECORD], ACTOR, key=f"k{i}")
    decided = rapp.releases.evaluate(ACTOR)
    assert decided[0]["decision"] == "promote"
    event = audit_actions(rapp)[-1]
    assert event["action"] == "release.auto_promote" and event["subject"] == "credit@2"
    assert event["details"]["report"]["candidate"]["requests"] >= 30
    assert event["details"]["report"]["candidate"]["error_rate"] == 0
    assert rapp.serving.predict("credit", [RECORD], ACTOR)["version"] == 2
    out = falaj_rel.ok("release", "status", "credit", "--json")
    status = json.loads(out.stdout)
    assert status["live_version"] == 2 and status["history"][0]["status"] == "promoted"


@pytest.fixture
def falaj_rel(rel_home):
    return Falaj(rel_home)


def test_cli_release_commands(falaj_rel):
    r = falaj_rel("release", "start", "credit", "--version", "2", "--strategy", "canary",
                  "--percent", "150")  # fmt: skip
    assert r.exit_code == 2 and "outside 0-100" in r.stderr
    r = falaj_rel("release", "start", "credit", "--version", "2", "--strategy", "canary",
                  "--max-psi", "0.2")  # fmt: skip
    assert r.exit_code == 2 and "add --auto" in r.stderr
    out = falaj_rel.ok("release", "start", "credit", "--version", "2", "--strategy", "shadow")
    assert "shadow of v2 (green) against v1 (blue), 100% copied" in out.stdout
    r = falaj_rel("release", "start", "credit", "--version", "2", "--strategy", "canary")
    assert r.exit_code == 1 and "active shadow release" in r.stderr
    listed = json.loads(falaj_rel.ok("release", "list", "--json").stdout)
    assert listed[0]["release"]["strategy"] == "shadow"
    assert "manual" in falaj_rel.ok("release", "evaluate").stdout
    assert "answers all traffic" in falaj_rel.ok("release", "rollback", "credit").stdout
    r = falaj_rel("release", "promote", "credit")
    assert r.exit_code == 1 and "no active release" in r.stderr


# -- over HTTP: a real server, and the dashboard ------------------------------------------


CREDENTIAL: dict[str, str] = {}  # the live server's admin token, once it answers


def call(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)  # fmt: skip
    req.add_header("Content-Type", "application/json")
    for k, v in (CREDENTIAL | (headers or {})).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def live(prepared, tmp_path_factory):
    """`falaj run` on a copy of the prepared home, shared by the HTTP and browser tests."""
    home = tmp_path_factory.mktemp("live") / "home"
    shutil.copytree(prepared, home)
    server = Server(home, "--decision-log", "async")
    server.home = home
    try:
        server.wait()
        CREDENTIAL.update(server.headers())
        yield server
    finally:
        server.stop()


def test_release_over_http_on_a_live_server(live):
    server, falaj_rel = live, Falaj(live.home)
    api = server.url + "/api/v1/models/credit/release"
    assert call(api, "POST", {"version": 2, "strategy": "canary", "percent": 150})[0] == 400
    assert call(api, "POST", {"version": 7, "strategy": "canary"})[0] == 404
    assert call(server.url + "/api/v1/models/nope/release")[0] == 404
    status, r = call(api, "POST", {"version": 2, "strategy": "canary", "percent": 40})
    assert status == 201 and r["release"]["strategy"] == "canary"
    assert call(api, "POST", {"version": 2, "strategy": "ab"})[0] == 409
    predict = server.url + "/api/v1/models/credit/predict"
    seen = {}
    for i in range(60):
        s, a = call(predict, "POST", {"records": [RECORD]}, {"X-Falaj-Key": f"u{i}"})
        assert s == 200
        seen[f"u{i}"] = a["version"]
        assert a["variant"] == ("candidate" if a["version"] == 2 else "baseline")
    assert {1, 2} == set(seen.values())
    for k in list(seen)[:20]:
        assert (
            call(predict, "POST", {"records": [RECORD]}, {"X-Falaj-Key": k})[1]["version"]
            == seen[k]
        )
    report = call(api)[1]["release"]["report"]
    assert report["baseline"]["requests"] + report["candidate"]["requests"] == 80
    # promoted from another process (the CLI): the server takes it up at its next look at
    # control.db (within milliseconds; a request does not wait for this process's own
    # commit in progress to look), and from then on every key gets the candidate
    falaj_rel.ok("release", "promote", "credit")
    deadline = time.monotonic() + 5
    while call(predict, "POST", {"records": [RECORD]}, {"X-Falaj-Key": "u0"})[1]["version"] != 2:
        assert time.monotonic() < deadline, "the promotion never reached the server"
    assert {call(predict, "POST", {"records": [RECORD]}, {"X-Falaj-Key": f"u{i}"})[1]["version"]
            for i in range(10)} == {2}  # fmt: skip
    status, r = call(api, "POST", {"version": 1, "strategy": "shadow"})
    assert status == 201
    assert {call(predict, "POST", {"records": [RECORD]})[1]["version"] for _ in range(5)} == {2}
    status, r = call(api + "/rollback", "POST")
    assert status == 200 and r["live_version"] == 2
    assert call(api + "/rollback", "POST")[0] == 409
    actions = [
        e["action"] for e in json.loads(falaj_rel.ok("audit", "tail", "-n", "50", "--json").stdout)
    ]
    assert [a for a in actions if a.startswith("release.")] == [
        "release.start", "release.promote", "release.start", "release.rollback"]  # fmt: skip


def test_releases_page_starts_promotes_and_rolls_back(rapp):
    client = admin_client(rapp)
    page = client.get("/releases").get_data(as_text=True)
    assert 'id="start-credit"' in page and "v1 live" in page
    r = client.post("/releases/credit/start", data={"version": "2", "strategy": "canary",
                                                     "percent": "abc"})  # fmt: skip
    assert r.status_code == 302 and "ok=0" in r.location
    r = client.post("/releases/credit/start", data={"version": "2", "strategy": "canary",
                                                     "percent": "25"}, follow_redirects=True)  # fmt: skip
    page = r.get_data(as_text=True)
    assert "started canary release" in page and 'id="promote-credit"' in page
    for i in range(10):
        rapp.serving.predict("credit", [RECORD], ACTOR, key=f"p{i}")
    rapp.decision_log.flush()  # (async here) monitoring reads the logged decisions
    page = client.get("/releases").get_data(as_text=True)
    assert "variant-candidate" in page and "25% of keys" in page
    assert "Monitoring, per variant" in page and "max PSI" in page  # monitoring's evidence
    assert re.search(r"\(as of \d\d:\d\d:\d\d UTC\)", page)  # and when it was computed
    page = client.post("/releases/credit/promote", follow_redirects=True).get_data(as_text=True)
    assert "credit@2 is live in the green slot" in page
    assert client.post("/releases/nope/promote").status_code == 404
    assert 'id="releases-link"' in client.get("/models/credit/1").get_data(as_text=True)
    assert client.post("/api/v1/models/credit/release/evaluate").status_code == 409


def test_a_records_request_is_keyed_by_its_entity_id_with_or_without_a_release(rapp):
    """A decision's request key (what outcomes join by, with time) is the record's entity
    id whether a release is active or not (it was None without one); a header names
    another."""

    def key(answer):
        return rapp.features.decisions(answer["request_id"])[0]["request_key"]

    answers = [
        rapp.serving.predict("credit", [RECORD | {"customer_id": "c-77"}], ACTOR),
        rapp.serving.predict("credit", [RECORD | {"customer_id": "c-78"}], ACTOR, key="hdr"),
        rapp.serving.predict("credit", [RECORD], ACTOR),  # no entity id in it
    ]
    rapp.releases.start("credit", 2, "canary", ACTOR, percent=50)
    answers.append(rapp.serving.predict("credit", [RECORD | {"customer_id": "c-79"}], ACTOR))
    rapp.decision_log.flush()
    assert [key(a) for a in answers] == ["c-77", "hdr", None, "c-79"]
    assert rapp.releases.status("credit", ACTOR)["release"]["entity_column"] == "customer_id"


def test_entity_requests_and_records_stick_by_the_entity_id(app, tmp_path):
    from tests.test_entity_serving import feature_rows, spine

    rows = feature_rows()
    app.ingestion.ingest(rows, "profiles", "customer_id", "event_time", ACTOR)
    app.views.define("profile", "profiles", ACTOR, columns=["debt", "income"])
    built = app.training_sets.build(spine(rows), ["profile:*"], ACTOR, out=tmp_path / "t.parquet")
    for _ in range(2):
        app.training.train_on_set(built["id"], "default", "risk", ACTOR)
    app.serving.deploy("risk", 1, ACTOR)
    app.online.materialize("profile", ACTOR)
    r = app.releases.start("risk", 2, "canary", ACTOR, percent=50)["release"]
    assert r["entity_column"] == "customer_id"
    by_entity = {}
    for c in range(40):
        a = app.serving.predict_entities("risk", [{"customer_id": f"c{c}"}], ACTOR)
        assert a["statuses"][0] == {"debt": "PRESENT", "income": "PRESENT"}
        by_entity[f"c{c}"] = a["version"]
        record = {"customer_id": f"c{c}", "debt": 0.5, "income": 50.0}
        assert app.serving.predict("risk", [record], ACTOR)["version"] == a["version"]
    assert set(by_entity.values()) == {1, 2}
    assert all(v == (2 if takes_candidate("risk", 50, c) else 1) for c, v in by_entity.items())


@pytest.mark.browser
def test_the_releases_page_in_a_browser(live, browser):  # noqa: F811
    page = browser.new_page()
    login(page, live)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(live.url + "/releases")
    card = page.locator("#release-credit")
    live_version = int(card.locator("h2").inner_text().split(" v")[1].split()[0])
    form = page.locator("#start-credit")
    form.locator("select[name=strategy]").select_option("canary")
    form.locator("input[name=percent]").fill("100")
    candidate = 1 if live_version == 2 else 2  # (v3 was rejected by its gates)
    form.locator("select[name=version]").select_option(str(candidate))
    form.locator("button[type=submit]").click()
    assert "started canary release" in page.locator("#done").inner_text()
    assert f"canary of v{candidate}" in page.locator("#release-credit .active-release").inner_text()
    key = {"X-Falaj-Key": "browser"}
    answer = call(live.url + "/api/v1/models/credit/predict", "POST", {"records": [RECORD]}, key)[1]
    assert (answer["version"], answer["variant"]) == (candidate, "candidate")
    page.reload()
    assert (
        page.locator("#release-credit .active-report .variant-candidate .requests").inner_text()
        == "1"
    )
    page.locator("#rollback-credit").click()
    assert "answers all traffic" in page.locator("#done").inner_text()
    assert page.locator("#start-credit").count() == 1  # no active release: the form again
    assert all(u.startswith(live.url) for u in requests), requests  # nothing from the internet
