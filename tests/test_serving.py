"""Deploy (verified bundles, blue/green slots) and the prediction API via Flask's client."""

import json
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from appliance.core import Appliance
from appliance.errors import BadInput, BundleTampered, NotFound
from tests.conftest import ACTOR, FEATURES, RECORD


@pytest.mark.parametrize(
    "victim", ["model.json", "pipeline.json", "schema.json", "MANIFEST", "MANIFEST.sig"]
)
def test_flipped_byte_refuses_deploy(falaj, trained, victim):
    path = trained.home / "artifacts" / "credit" / "v1" / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    trained.close()
    r = falaj("deploy", "credit", "--version", "1")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: bundle ")
    assert victim.split(".")[0] in r.stderr or "signature" in r.stderr or "MANIFEST" in r.stderr
    assert falaj.ok("status", "--json").output.count('"live": true') == 0


def test_extra_file_in_bundle_refuses_deploy(trained):
    (trained.home / "artifacts" / "credit" / "v1" / "evil.py").write_text("print('hi')")
    with pytest.raises(BundleTampered, match="evil.py is not listed in MANIFEST"):
        trained.serving.deploy("credit", 1, ACTOR)


def test_blue_green_switch(trained):
    trained.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    assert trained.serving.deploy("credit", 1, ACTOR)["slot"] == "blue"
    r = trained.serving.deploy("credit", 2, ACTOR)
    assert (r["slot"], r["previous_version"]) == ("green", 1)
    d = trained.serving.server.get("credit")
    assert (d.live_slot, d.live.version, d.version("blue")) == ("green", 2, 1)
    assert trained.serving.predict("credit", [RECORD], ACTOR)["version"] == 2
    row = trained.control.query("SELECT * FROM deployments")[0]
    assert (row["live_slot"], row["blue_version"], row["green_version"]) == ("green", 1, 2)


def test_unknown_versions(falaj, trained):
    trained.close()
    r = falaj("deploy", "credit", "--version", "9")
    assert r.exit_code == 2 and "model 'credit' has no version 9 (versions: 1)" in r.stderr
    r = falaj("deploy", "ghost", "--version", "1")
    assert r.exit_code == 2 and "model 'ghost' is not registered" in r.stderr


def test_predict_answers_and_logs(client, trained):
    resp = client.post(
        "/api/v1/models/credit/predict", json={"records": [RECORD, RECORD | {"age": 60.0}]}
    )
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["model"], body["version"]) == ("credit", 1)
    model = trained.registry.load("credit", 1)
    expected = model.predict_records([RECORD, RECORD | {"age": 60.0}])
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-12)
    # durable: the records were committed before the answer was sent
    logged = trained.features.query("SELECT * FROM _predictions ORDER BY output")
    assert len(logged) == 2
    assert {r["model"] for r in logged} == {"credit"} and {r["version"] for r in logged} == {1}
    assert sorted(r["output"] for r in logged) == sorted(body["predictions"])
    assert all(len(r["input_fingerprint"]) == 64 and r["latency_ms"] >= 0 for r in logged)
    now = datetime.now(UTC).replace(tzinfo=None)
    assert all(abs((now - r["ts"]).total_seconds()) < 60 for r in logged)  # stored as UTC
    assert {r["request_id"] for r in logged} == {body["request_id"]}
    assert {r["actor"] for r in logged} == {"token:pytest-admin"}  # the client's API token
    event = trained.audit.tail(1, ACTOR)[0]
    assert (event["action"], event["subject"]) == ("decisions.logged", logged[0]["batch_id"])
    assert event["details"]["rows"] == 2 and event["details"]["requests"] == 1
    d = client.get(f"/api/v1/decisions/{body['request_id']}").get_json()
    assert d["outputs"] == body["predictions"] and d["verified"] is True
    assert d["audit_seq"] == event["seq"] and d["version"] == 1


@pytest.mark.parametrize(
    "body,status,message",
    [
        (
            {"records": [{k: v for k, v in RECORD.items() if k != "income"}]},
            400,
            "records[0].income: missing",
        ),
        (
            {"records": [RECORD, RECORD | {"age": "old"}]},
            400,
            "records[1].age: expected a number or null, got a string ('old')",
        ),
        (
            {"records": [RECORD | {"age": True}]},
            400,
            "records[0].age: expected a number or null, got a boolean",
        ),
        ({"records": [RECORD | {"age": 10**400}]}, 400, "records[0].age: 1000"),
        ({"records": [RECORD | {"age": 10**400}]}, 400, "is too large for a float64"),
        ({"records": []}, 400, "records: expected a non-empty list"),
        ({"records": ["x"]}, 400, "records[0]: expected an object"),
        ({"rows": []}, 400, 'missing field "records"'),
        ([1, 2], 400, "expected a JSON object"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(client, trained, body, status, message):
    resp = client.post("/api/v1/models/credit/predict", json=body)
    assert resp.status_code == status
    assert message in resp.get_json()["error"]["message"]
    assert trained.serving.decision_count(ACTOR) == 0


def test_not_json_and_unknown_model(client):
    resp = client.post(
        "/api/v1/models/credit/predict", data="{not json", content_type="application/json"
    )
    assert resp.status_code == 400 and "expected JSON" in resp.get_json()["error"]["message"]
    resp = client.post("/api/v1/models/ghost/predict", json={"records": [RECORD]})
    assert (
        resp.status_code == 404 and "'ghost' is not deployed" in resp.get_json()["error"]["message"]
    )
    resp = client.get("/api/v1/models/credit/predict")
    assert resp.status_code == 405 and "error" in resp.get_json()
    resp = client.get("/no/such/page")
    assert resp.status_code == 404 and b"Error 404" in resp.data


def test_dashboard_and_read_api(client):
    page = client.get("/").get_data(as_text=True)
    assert "credit" in page and "verified" in page and "loans" in page and "3,000" in page
    assert json.loads(client.get("/api/v1/tables").data)["tables"][0]["rows"] == 3000
    assert client.get("/api/v1/audit/verify").get_json()["ok"] is True
    assert client.get("/healthz").get_json() == {
        "status": "ok",
        "deployments": {"credit": {"version": 1, "slot": "blue", "serving": True, "degraded": {}}},
    }


def test_cli_predict(falaj, trained, tmp_path):
    trained.serving.deploy("credit", 1, ACTOR)
    expected = trained.registry.load("credit", 1).predict_records([RECORD])
    trained.close()
    (tmp_path / "in.json").write_text(json.dumps({"records": [RECORD]}))
    out = json.loads(falaj.ok("predict", "credit", "--input", tmp_path / "in.json").stdout)
    assert (out["model"], out["version"]) == ("credit", 1)
    assert out["predictions"] == pytest.approx(expected, rel=1e-12)
    (tmp_path / "bad.json").write_text("{")
    r = falaj("predict", "credit", "--input", tmp_path / "bad.json")
    assert r.exit_code == 2 and "bad.json: not valid JSON" in r.stderr
    (tmp_path / "short.json").write_text(json.dumps([{"age": 1}]))
    r = falaj("predict", "credit", "--input", tmp_path / "short.json")
    assert r.exit_code == 2 and "records[0].income: missing" in r.stderr


def test_durable_decisions_share_commits_and_are_all_there_at_once(client, trained, home):
    def burst():
        for _ in range(10):
            r = client.post("/api/v1/models/credit/predict", json={"records": [RECORD] * 3})
            assert r.status_code == 200
            ids.append(r.get_json()["request_id"])

    ids: list[str] = []
    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # every answered request is already committed: no flush, no waiting
    assert trained.features.query("SELECT count(*) AS n FROM _predictions")[0]["n"] == 120
    trained.close()

    again = Appliance.open({"home": str(home)})
    try:
        assert again.serving.decision_count(ACTOR, "credit") == 120
        events = [e for e in again.audit.tail(100, ACTOR) if e["action"] == "decisions.logged"]
        # group commit: requests arriving together share a batch and its audit event
        assert 1 <= len(events) <= 40
        assert sum(e["details"]["rows"] for e in events) == 120
        assert sum(e["details"]["requests"] for e in events) == 40
        assert all(again.serving.decision(i, ACTOR)["verified"] for i in ids)
        assert again.audit.verify(ACTOR, full=True).ok
    finally:
        again.close()


def test_async_decisions_are_written_in_the_background_and_on_close(home, credit_csv):
    app = Appliance.open({"home": str(home), "decision_log": "async"})
    app.init(ACTOR)
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    app.serving.deploy("credit", 1, ACTOR)
    for _ in range(10):
        app.serving.predict("credit", [RECORD] * 2, ACTOR)
    deadline = time.time() + 10  # the writer thread commits on its own
    while app.features.query("SELECT count(*) AS n FROM _predictions")[0]["n"] < 20:
        assert time.time() < deadline, "the background writer did not commit"
        time.sleep(0.05)
    app.decision_log.interval = 3600  # what follows stays pending until close
    time.sleep(0.3)
    last = app.serving.predict("credit", [RECORD], ACTOR)
    app.close()
    again = Appliance.open({"home": str(home)})
    try:
        assert again.serving.decision_count(ACTOR, "credit") == 21
        assert again.serving.decision(last["request_id"], ACTOR)["verified"]
    finally:
        again.close()


def test_rollback_switches_slots_and_is_audited(falaj, trained):
    trained.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    trained.serving.deploy("credit", 1, ACTOR)
    trained.close()
    r = falaj("rollback", "credit")
    assert r.exit_code == 1 and "the green slot is empty" in r.stderr
    falaj.ok("deploy", "credit", "--version", "2")
    r = falaj.ok("rollback", "credit")
    assert r.stdout.strip() == "credit@1 is live again in the blue slot (was 2)"
    status = json.loads(falaj.ok("status", "--json").stdout)
    assert [(m["version"], m["live"]) for m in status["models"]] == [(1, True), (2, False)]
    tail = json.loads(falaj.ok("audit", "tail", "-n", "1", "--json").stdout)
    assert (tail[0]["action"], tail[0]["subject"]) == ("model.rollback", "credit@1")
    r = falaj("rollback", "ghost")
    assert r.exit_code == 2 and "'ghost' is not deployed" in r.stderr


def flip(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_tampered_deploy_changes_nothing_and_is_audited(falaj, trained):
    trained.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    trained.serving.deploy("credit", 1, ACTOR)
    before = trained.control.deployments()
    events = trained.control.audit_count()
    trained.close()
    flip(trained.home / "artifacts" / "credit" / "v2" / "model.json")
    r = falaj("deploy", "credit", "--version", "2")
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        "error: bundle credit@2: model.json does not match its SHA-256 in MANIFEST"
    )
    assert str(trained.home) not in r.stderr  # no server paths
    again = Appliance.open({"home": str(trained.home)})
    try:
        assert again.control.deployments() == before  # nothing committed
        new = again.control.audit_events(after=events)
        assert [(e["action"], e["subject"]) for e in new] == [
            ("model.integrity_failure", "credit@2")
        ]
    finally:
        again.close()


def test_a_tampered_idle_slot_leaves_the_live_one_serving(falaj, home, trained, start_server):
    trained.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    trained.serving.deploy("credit", 1, ACTOR)
    trained.serving.deploy("credit", 2, ACTOR)
    trained.serving.rollback("credit", ACTOR)  # v1 live in blue, v2 idle in green
    trained.close()
    flip(home / "artifacts" / "credit" / "v2" / "model.json")
    server = start_server(home)
    status, health = server.request("GET", "/healthz")
    assert status == 200 and health["status"] == "degraded"
    credit = health["deployments"]["credit"]
    assert (credit["version"], credit["slot"], credit["serving"]) == (1, "blue", True)
    assert credit["degraded"] == {
        "green": "bundle credit@2: model.json does not match its SHA-256 in MANIFEST"
    }
    status, body = server.request("POST", "/api/v1/models/credit/predict", {"records": [RECORD]})
    assert status == 200 and body["version"] == 1
    status, body = server.request("GET", "/api/v1/models")
    assert status == 200 and str(home) not in json.dumps(body)
    server.stop()
    r = falaj.ok("audit", "tail", "--json", "-n", "50")
    failures = [e for e in json.loads(r.stdout) if e["action"] == "model.integrity_failure"]
    assert [e["subject"] for e in failures] == ["credit@2"]


def test_a_tampered_live_slot_is_503_and_the_rest_still_answers(home, trained, start_server):
    trained.serving.deploy("credit", 1, ACTOR)
    trained.close()
    flip(home / "artifacts" / "credit" / "v1" / "pipeline.json")
    server = start_server(home)
    status, health = server.request("GET", "/healthz")
    assert status == 503 and health["status"] == "unavailable"
    assert health["deployments"]["credit"]["serving"] is False
    status, body = server.request("POST", "/api/v1/models/credit/predict", {"records": [RECORD]})
    assert status == 503 and "the live blue slot is out of service" in body["error"]["message"]
    assert str(home) not in body["error"]["message"]
    assert server.request("GET", "/api/v1/tables")[0] == 200
    assert server.request("GET", "/api/v1/audit/verify")[1]["ok"] is True


def test_nulls_and_extreme_values_are_answered(client, trained):
    # a null is a missing value: imputed as training did; extreme values are clipped by
    # the pipeline, so +inf and -inf terms never reach the linear score
    extreme = {f: (1e308 if i % 2 == 0 else -1e308) for i, f in enumerate(FEATURES)}
    nulls = dict.fromkeys(FEATURES)
    resp = client.post("/api/v1/models/credit/predict",
                       json={"records": [RECORD, extreme, nulls]})  # fmt: skip
    assert resp.status_code == 200 and "NaN" not in resp.get_data(as_text=True)
    p = resp.get_json()["predictions"]
    assert all(0.0 <= x <= 1.0 for x in p) and len(set(p)) == 3
    model = trained.registry.load("credit", 1)
    assert p[2] == model.predict_records([nulls])[0]
    assert trained.serving.decision_count(ACTOR) == 3


def test_a_prediction_that_is_not_finite_is_refused(trained):
    model = trained.registry.load("credit", 1)
    with pytest.raises(BadInput, match=r"records\[1\]: the model gives no finite prediction"):
        model.check_outputs(np.array([0.5, np.nan]))


def test_a_decision_that_cannot_be_audited_is_refused_and_taken_back(client, trained, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(trained.decision_log, "_audit", broken)
    resp = client.post("/api/v1/models/credit/predict", json={"records": [RECORD]})
    assert resp.status_code == 503
    assert "no prediction is given without its record" in resp.get_json()["error"]["message"]
    assert trained.features.query("SELECT count(*) AS n FROM _predictions")[0]["n"] == 0
    assert trained.features.query("SELECT count(*) AS n FROM _decision_batches")[0]["n"] == 0


def test_orphan_decision_batches_are_settled_by_whether_they_were_answered(trained, home):
    import pyarrow as pa

    from appliance.serving.decision_log import records_sha256

    trained.serving.deploy("credit", 1, ACTOR)
    answer = trained.serving.predict("credit", [RECORD], ACTOR)
    # two more batches whose records committed but whose audit events never did
    at = datetime.now(UTC).replace(tzinfo=None)
    for answered in (False, True):
        rows = pa.Table.from_pylist(trained.features.decisions(answer["request_id"]))
        rows = rows.drop_columns(["batch_id"]).set_column(
            1, "request_id", pa.array([f"req-{answered}"], pa.string())
        )
        with trained.features.transaction() as tx:
            tx.append_decisions(rows, f"orphan-{answered}", 1, records_sha256(rows), at, answered)
    trained.close()
    again = Appliance.open({"home": str(home)})
    try:
        assert again.serving.decision_count(ACTOR) == 2  # the unanswered one is gone
        assert again.serving.decision("req-True", ACTOR)["verified"]
        with pytest.raises(NotFound):
            again.serving.decision("req-False", ACTOR)
        tail = again.audit.tail(2, ACTOR)
        got = sorted((e["action"], e["subject"], e["details"].get("recovered")) for e in tail)
        assert got == [("decisions.logged", "orphan-True", True),
                       ("reconcile.rollback", "orphan-False", None)]  # fmt: skip
    finally:
        again.close()
