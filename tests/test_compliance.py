"""PDPL / GDPR duties: the consent registry, its effect on training sets, serving and
ingest, data-subject export, rectification and objection with the review queue, views
refusing personal columns, and the record of processing activities."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from appliance import demo
from appliance.compliance.consent import ConsentWithdrawn
from appliance.compliance.record import processing_csv
from appliance.compliance.review import AlreadyDecided
from appliance.core import Appliance
from appliance.errors import BadInput, NotFound
from appliance.features import workspace
from tests.conftest import ACTOR, FEATURES

ROWS = 1200


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The demo workspace over 1,200 applications and their 200 customers' contacts,
    the applicant view online, and a model on the numeric columns deployed."""
    home = tmp_path_factory.mktemp("compliance") / "home"
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    ws = home / "falaj.yaml"
    ws.write_text(demo.WORKSPACE)
    app.views.apply(ws, ACTOR)
    data = demo.credit_risk(ROWS, seed=5)
    app.ingestion.ingest(data, "credit_applications", actor=ACTOR)
    app.ingestion.ingest(demo.contacts(data), "credit_contacts", actor=ACTOR)
    app.online.materialize("applicant", ACTOR)
    app.training.train("credit_applications", "default", "credit", ACTOR,
                       features=tuple(FEATURES))  # fmt: skip
    app.serving.deploy("credit", 1, ACTOR)
    yield app, data
    app.close()


def customers(data: pa.Table) -> list[str]:
    return sorted({str(c) for c in data["customer_id"].to_pylist()})


def record_of(data: pa.Table, subject: str) -> dict:
    row = next(r for r in data.to_pylist() if str(r["customer_id"]) == subject)
    return {f: row[f] for f in FEATURES} | {"customer_id": row["customer_id"]}


def events(app, action: str) -> list[dict]:
    """Audit events of one action, oldest first."""
    return [e for e in reversed(app.control.audit_tail(10_000)) if e["action"] == action]


# -- the consent registry -------------------------------------------------------------


def test_consent_keeps_its_history_and_every_change_is_audited(world):
    app, data = world
    s = customers(data)[10]
    first = app.consent.give(s, "analytics", "legitimate-interest", ACTOR)
    assert first["changed"] and first["basis"] == "legitimate-interest"
    assert app.consent.give(s, "analytics", "consent", ACTOR)["changed"] is False  # still open
    w = app.consent.withdraw(s, "analytics", ACTOR)
    assert w["id"] == first["id"] and w["withdrawn_at"]
    again = app.consent.give(s, "analytics", "consent", ACTOR)
    assert again["id"] != first["id"]
    history = app.consent.list(ACTOR, subject=s, purpose="analytics")
    assert [(r["id"], r["basis"], r["withdrawn_at"] is not None) for r in history] == [
        (again["id"], "consent", False), (first["id"], "legitimate-interest", True)
    ]  # fmt: skip
    assert app.consent.status(s, ACTOR) == {"analytics": "given"}
    gives = [e for e in events(app, "consent.give") if e["subject"] == s]
    withdrawals = [e for e in events(app, "consent.withdraw") if e["subject"] == s]
    assert len(gives) == 2 and len(withdrawals) == 1
    assert withdrawals[0]["details"] == {"purpose": "analytics", "consent_id": first["id"]}


@pytest.mark.parametrize("subject,purpose,basis,message", [
    ("c1", "model-training", "because", "legal basis 'because'"),
    ("c1", "Model Training!", "consent", "purpose 'Model Training!'"),
    ("", "model-training", "consent", "not an entity id"),
    ("c\n1", "model-training", "consent", "not an entity id"),
])  # fmt: skip
def test_bad_consent_input_is_named(world, subject, purpose, basis, message):
    app, _ = world
    with pytest.raises(BadInput, match=message):
        app.consent.give(subject, purpose, basis, ACTOR)


def test_withdrawn_training_consent_leaves_the_subject_out_of_training_sets(world, tmp_path):
    app, data = world
    s = customers(data)[3]
    mine = sum(str(c) == s for c in data["customer_id"].to_pylist())
    assert mine > 0
    spine = data.select(["customer_id", "event_time", "default"]).rename_columns(
        ["customer_id", "event_timestamp", "default"]
    )
    before = app.training_sets.build(spine, ["applicant:income"], ACTOR, out=tmp_path / "a.parquet")
    assert before["rows"] == ROWS and "consent_excluded" not in before["flags"]
    app.consent.withdraw(s, "model-training", ACTOR)
    try:
        after = app.training_sets.build(spine, ["applicant:income"], ACTOR,
                                        out=tmp_path / "b.parquet")  # fmt: skip
        assert after["rows"] == ROWS - mine
        assert after["flags"]["consent_excluded"] == mine
        built = events(app, "features.training_set.build")[-1]
        assert built["details"]["consent_excluded"] == mine
        ids = pa.parquet.read_table(tmp_path / "b.parquet")["customer_id"].to_pylist()
        assert s not in {str(i) for i in ids} and len(ids) == ROWS - mine
    finally:
        app.consent.give(s, "model-training", "consent", ACTOR)


def test_training_on_a_table_leaves_withdrawn_subjects_out_too(world):
    from appliance.training import data as training_data
    from appliance.training.specs import Spec

    app, data = world
    s = customers(data)[9]
    mine = sum(str(c) == s for c in data["customer_id"].to_pylist())
    spec = Spec("t", "default", table="credit_applications")
    app.consent.withdraw(s, "model-training", ACTOR)
    try:
        got = training_data.load(spec, app.features, app.training_sets, ACTOR)
        assert got.lineage["consent_excluded"] == mine
        assert got.table.num_rows == ROWS - mine
    finally:
        app.consent.give(s, "model-training", "consent", ACTOR)


def test_withdrawn_decision_consent_refuses_predictions_naming_consent(world):
    app, data = world
    s, other = customers(data)[4], customers(data)[5]
    assert app.serving.predict("credit", [record_of(data, s)], ACTOR, key=s)["predictions"]
    app.consent.withdraw(s, "automated-decision", ACTOR)
    try:
        with pytest.raises(ConsentWithdrawn, match=f"subject '{s}' withdrew consent for "
                                                  "automated-decision") as exc:  # fmt: skip
            app.serving.predict("credit", [record_of(data, s)], ACTOR, key=s)
        assert exc.value.status == 409
        with pytest.raises(ConsentWithdrawn):  # found by the record's entity column too
            app.serving.predict("credit", [record_of(data, other), record_of(data, s)], ACTOR)
        assert app.serving.predict("credit", [record_of(data, other)], ACTOR, key=other)
    finally:
        app.consent.give(s, "automated-decision", "consent", ACTOR)
    assert app.serving.predict("credit", [record_of(data, s)], ACTOR, key=s)["predictions"]


def test_a_withdrawal_by_another_process_reaches_the_serving_check(world):
    app, data = world
    s = customers(data)[6]
    other = Appliance.open({"home": str(app.home)})
    try:
        other.consent.withdraw(s, "automated-decision", ACTOR)
    finally:
        other.close()
    app.consent._checked = 0.0  # as a second later
    try:
        with pytest.raises(ConsentWithdrawn):
            app.serving.predict("credit", [record_of(data, s)], ACTOR, key=s)
    finally:
        app.consent.give(s, "automated-decision", "consent", ACTOR)


def test_new_rows_of_a_withdrawn_subject_are_quarantined_for_consent(world):
    app, data = world
    s, other = customers(data)[7], customers(data)[8]
    app.consent.withdraw(s, "model-training", ACTOR)
    try:
        rows = demo.contacts(data).filter(pa.compute.is_in(
            pa.compute.cast(demo.contacts(data)["customer_id"], pa.string()),
            value_set=pa.array([s, other])))  # fmt: skip
        r = app.ingestion.ingest(rows, "credit_contacts", actor=ACTOR)
        assert (r["rows"], r["quarantined"]) == (1, 1)
        assert r["report"]["rules"] == {"consent": 1}
        held = app.quarantine.show(r["batch"], ACTOR)["rows"]
        assert held[0]["rules"] == ["consent"] and s in held[0]["reasons"][0]
        assert held[0]["values"]["email"] == "[personal: withheld]"  # no personal plaintext
        assert "example.ae" not in json.dumps(held, default=str)
        with pytest.raises(BadInput, match="has personal columns"):
            app.quarantine.release(r["batch"], ACTOR)
    finally:
        app.consent.give(s, "model-training", "consent", ACTOR)


# -- data-subject requests ---------------------------------------------------------------


def test_export_is_one_document_of_everything_held(world):
    app, data = world
    s = customers(data)[20]
    answer = app.serving.predict("credit", [record_of(data, s)], ACTOR, key=s)
    doc = app.subjects.export(s, ACTOR)
    assert json.loads(json.dumps(doc)) == doc  # machine-readable as it is
    mine = [r for r in data.to_pylist() if str(r["customer_id"]) == s]
    apps = doc["tables"]["credit_applications"]["rows"]
    assert len(apps) == len(mine) and {a["income"] for a in apps} == {m["income"] for m in mine}
    contact = next(r for r in demo.contacts(data).to_pylist() if str(r["customer_id"]) == s)
    got = doc["tables"]["credit_contacts"]["rows"][0]
    assert (got["full_name"], got["email"], got["phone"]) == (
        contact["full_name"], contact["email"], contact["phone"])  # decrypted  # fmt: skip
    assert doc["tables"]["credit_contacts"]["personal_columns"] == ["full_name", "email", "phone"]
    assert answer["request_id"] in {d["request_id"] for d in doc["decisions"]}
    assert [o["view"] for o in doc["online_features"]] == ["applicant@1"]
    assert doc["erased"] is None
    req = app.control.subject_requests(s)[0]
    assert (req["kind"], req["status"], req["id"]) == ("export", "done", doc["request"])
    ev = events(app, "subject.export")[-1]
    assert ev["subject"] == s and ev["details"]["decisions"] >= 1
    assert contact["email"] not in json.dumps(ev)


def test_rectify_appends_a_corrected_version_and_updates_the_online_store(world):
    app, data = world
    s = customers(data)[30]
    old = app.subjects.export(s, ACTOR)["tables"]
    r = app.subjects.rectify(s, "credit_contacts", {"email": "fixed@example.ae"}, ACTOR)
    assert r["rows"] == 1 and r["columns"] == ["email"]
    rows = app.subjects.export(s, ACTOR)["tables"]["credit_contacts"]["rows"]
    assert [x["email"] for x in rows] == [old["credit_contacts"]["rows"][0]["email"],
                                          "fixed@example.ae"]  # fmt: skip
    assert rows[1]["full_name"] == rows[0]["full_name"]  # the rest carried over
    ev = events(app, "subject.rectify")[-1]
    text = json.dumps(ev)
    assert "fixed@example.ae" not in text and old["credit_contacts"]["rows"][0]["email"] not in text
    assert set(ev["details"]["digests"]["email"]) == {"old", "new"}
    # a feature correction: the latest application's income, and the online value follows
    app.subjects.rectify(s, "credit_applications", {"income": "12345.5"}, ACTOR)
    online = app.online.get_online_features(["applicant:income"], [{"customer_id": int(s)}],
                                            ACTOR)  # fmt: skip
    assert online["results"][0]["values"]["income"] == 12345.5


@pytest.mark.parametrize("table,changes,error,message", [
    ("credit_contacts", {"customer_id": 1}, BadInput, "entity column"),
    ("credit_contacts", {"nope": 1}, BadInput, "has no column 'nope'"),
    ("credit_applications", {"age": "old"}, BadInput, "not a BIGINT"),
    ("no_such", {"age": 1}, NotFound, "no such feature table"),
    ("credit_contacts", {}, BadInput, "at least one correction"),
])  # fmt: skip
def test_bad_rectifications_are_refused(world, table, changes, error, message):
    app, data = world
    with pytest.raises(error, match=message):
        app.subjects.rectify(customers(data)[31], table, changes, ACTOR)


def test_an_objection_opens_a_review_whose_outcome_is_recorded(world):
    app, data = world
    s, other = customers(data)[40], customers(data)[41]
    decision = app.serving.predict("credit", [record_of(data, s)], ACTOR, key=s)["request_id"]
    with pytest.raises(BadInput, match="not about subject"):
        app.subjects.object(other, decision, "", ACTOR)
    with pytest.raises(NotFound):
        app.subjects.object(s, "f" * 32, "", ACTOR)
    o = app.subjects.object(s, decision, "I was not late on any payment", ACTOR)
    assert o["status"] == "open" and o["decision"] == decision
    queue = app.reviews.list(ACTOR, status="open")
    assert o["review"] in {r["id"] for r in queue}
    done = app.reviews.decide(o["review"], "overturn", "payment history was wrong", ACTOR)
    assert done["status"] == "overturned" and done["decided_by"] == str(ACTOR)
    assert app.reviews.show(o["review"], ACTOR)["note"] == "payment history was wrong"
    assert app.control.subject_requests(s)[0]["status"] == "closed"
    with pytest.raises(AlreadyDecided):
        app.reviews.decide(o["review"], "uphold", "", ACTOR)
    with pytest.raises(BadInput, match="uphold or overturn"):
        app.reviews.decide(o["review"], "maybe", "", ACTOR)
    ev = events(app, "review.decide")[-1]
    assert ev["details"]["outcome"] == "overturned" and ev["details"]["decision"] == decision


# -- personal columns ------------------------------------------------------------------


def test_personal_columns_are_ciphertext_at_rest(world):
    app, data = world
    raw = app.features.query("SELECT full_name, email FROM credit_contacts LIMIT 50")
    names = {r["full_name"] for r in demo.contacts(data).to_pylist()}
    for r in raw:
        assert isinstance(r["full_name"], bytes) and r["full_name"][:1] == b"\x01"
        assert not any(n.encode() in r["full_name"] for n in names)
    assert app.features.column_types("credit_contacts")["email"] == "BLOB"


def test_the_catalog_shows_personal_columns_as_encrypted(world):
    from tests.conftest import admin_client

    app, _ = world
    t = next(t for t in app.catalog.tables(ACTOR) if t["table"] == "credit_contacts")
    assert t["personal"] == ["full_name", "email", "phone"]
    page = admin_client(app).get("/data").get_data(as_text=True)
    assert "personal: full_name [encrypted], email [encrypted], phone [encrypted]" in page


def test_views_refuse_personal_columns(world, tmp_path):
    app, _ = world
    ws = tmp_path / "ws.yaml"
    ws.write_text(demo.WORKSPACE.replace(
        "views:\n", "views:\n  contact_view:\n    table: credit_contacts\n    columns: [email]\n", 1))  # fmt: skip
    with pytest.raises(BadInput, match="'email' is a personal column of table 'credit_contacts'"):
        app.views.apply(ws, ACTOR)


def test_the_workspace_checks_personal_declarations():
    with pytest.raises(BadInput, match="key columns cannot be personal"):
        workspace.parse("tables:\n  t: {entity: id, event_time: ts, personal: [id]}\n", "w.yaml")
    with pytest.raises(BadInput, match="expected a list"):
        workspace.parse("tables:\n  t: {entity: id, event_time: ts, personal: name}\n", "w.yaml")
    ws = workspace.parse("tables:\n  t: {entity: id, event_time: ts, personal: [name]}\n", "w")
    assert ws.tables["t"].personal == ("name",)
    assert ws.tables["t"].to_dict()["personal"] == ["name"]


def test_record_of_processing_activities(world):
    app, _ = world
    rec = app.processing_record(ACTOR)
    assert json.loads(json.dumps(rec)) == rec
    purposes = {p["purpose"]: p for p in rec["purposes"]}
    assert {"model-training", "automated-decision"} <= set(purposes)
    assert "consent" in purposes["model-training"]["legal_bases"]
    assert purposes["automated-decision"]["models"] == ["credit"]
    assert rec["personal_data"][0]["table"] == "credit_contacts"
    assert rec["personal_data"][0]["personal_columns"] == ["full_name", "email", "phone"]
    assert rec["recipients"] == [] and rec["residency"]["where"] == "on-box, LAN only"
    assert "192.168.0.0/16" in rec["residency"]["allowed_networks"]
    assert rec["models"][0]["tables"] == ["credit_applications"]
    assert rec["retention"]["decision_log_days"] == app.settings["decision_retention_days"]
    lines = processing_csv(rec).splitlines()
    assert lines[0].startswith("section,name,legal_bases")
    assert any(line.startswith("personal_data,credit_contacts") for line in lines)


# -- the API and the page ----------------------------------------------------------------


def test_the_api_offers_the_same_operations(world):
    from tests.conftest import admin_client

    app, data = world
    c = admin_client(app)
    s = customers(data)[60]
    r = c.post("/api/v1/consent", json={"subject": s, "purpose": "automated-decision",
                                        "basis": "contract"})  # fmt: skip
    assert r.status_code == 201 and r.get_json()["basis"] == "contract"
    assert c.post("/api/v1/consent", json={"subject": s, "purpose": "x y"}).status_code == 400
    assert c.post("/api/v1/consent", json={"purpose": "analytics"}).status_code == 400
    r = c.get(f"/api/v1/consent?subject={s}")
    assert [x["purpose"] for x in r.get_json()["consent"]] == ["automated-decision"]
    record = record_of(data, s)
    decision = c.post("/api/v1/models/credit/predict", json={"records": [record]},
                      headers={"X-Falaj-Key": s}).get_json()["request_id"]  # fmt: skip
    assert c.post("/api/v1/consent/withdraw",
                  json={"subject": s, "purpose": "automated-decision"}).status_code == 200  # fmt: skip
    refused = c.post("/api/v1/models/credit/predict", json={"records": [record]},
                     headers={"X-Falaj-Key": s})  # fmt: skip
    assert (
        refused.status_code == 409 and "withdrew consent" in refused.get_json()["error"]["message"]
    )
    # the standard protocols name the subject by the same header, and are refused alike
    v2 = {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [record[f]]}
                     for f in FEATURES]}  # fmt: skip
    for path, body in (("/v2/models/credit/infer", v2),
                       ("/models/credit/invocations", {"dataframe_records": [{f: record[f] for f in FEATURES}]})):  # fmt: skip
        refused = c.post(path, json=body, headers={"X-Falaj-Key": s})
        assert refused.status_code == 409, (path, refused.get_json())
        assert "withdrew consent" in json.dumps(refused.get_json()), path
        other = c.post(path, json=body, headers={"X-Falaj-Key": customers(data)[61]})
        assert other.status_code == 200, (path, other.get_json())
    doc = c.get(f"/api/v1/subjects/{s}/export").get_json()
    assert decision in {d["request_id"] for d in doc["decisions"]}
    r = c.post(f"/api/v1/subjects/{s}/rectify",
               json={"table": "credit_contacts", "changes": {"email": "api@example.ae"}})  # fmt: skip
    assert r.status_code == 200 and r.get_json()["columns"] == ["email"]
    assert c.post(f"/api/v1/subjects/{s}/rectify", json={"table": "credit_contacts",
                                                         "changes": "x"}).status_code == 400  # fmt: skip
    r = c.post(f"/api/v1/subjects/{s}/object", json={"decision": decision, "reason": "no"})
    assert r.status_code == 201
    review = r.get_json()["review"]
    assert review in {x["id"] for x in c.get("/api/v1/reviews?status=open").get_json()["reviews"]}
    r = c.post(f"/api/v1/reviews/{review}/decide", json={"outcome": "uphold", "note": "ok"})
    assert r.status_code == 200 and r.get_json()["status"] == "upheld"
    assert c.post(f"/api/v1/reviews/{review}/decide", json={"outcome": "uphold"}).status_code == 409
    assert c.post("/api/v1/reviews/99999/decide", json={"outcome": "uphold"}).status_code == 404
    kinds = [x["kind"] for x in c.get(f"/api/v1/subjects/{s}/requests").get_json()["requests"]]
    assert kinds == ["object", "rectify", "export"]
    assert c.get("/api/v1/compliance/record").get_json()["recipients"] == []
    assert c.get("/api/v1/compliance/record?format=csv").data.startswith(b"section,")


def test_the_page_shows_the_registry_requests_and_reviews(world):
    from tests.conftest import admin_client

    app, data = world
    c = admin_client(app)
    s = customers(data)[61]
    r = c.post("/compliance/consent", data={"subject": s, "purpose": "model-training",
                                            "basis": "consent", "action": "withdraw"})  # fmt: skip
    assert r.status_code == 302 and "consent+withdrawn" in r.headers["Location"]
    page = c.get(f"/compliance?subject={s}").get_data(as_text=True)
    assert 'data-purpose="model-training"' in page and "model-training withdrawn" in page
    r = c.post("/compliance/subjects/export", data={"subject": s})
    assert r.status_code == 200
    assert r.headers["Content-Disposition"] == f'attachment; filename="subject-{s}.json"'
    assert json.loads(r.data)["subject"] == s
    bad = c.post("/compliance/subjects/rectify", data={"subject": s, "table": "credit_contacts",
                                                        "column": "nope", "value": "1"})  # fmt: skip
    assert bad.status_code == 302 and "ok=0" in bad.headers["Location"]
    erase = c.post("/compliance/subjects/erase", data={"subject": s, "confirm": "other"})
    assert "ok=0" in erase.headers["Location"] and app.control.subject_key_rows([s])
    assert c.get("/compliance/record.csv").data.startswith(b"section,")
    assert c.get("/compliance/record.xml").status_code == 400


# -- the command line -------------------------------------------------------------------


def test_the_cli_walks_a_data_subject_request(world, tmp_path):
    from tests.conftest import Falaj

    app, data = world
    s = customers(data)[50]
    decision = app.serving.predict("credit", [record_of(data, s)], ACTOR, key=s)["request_id"]
    app.close()  # the CLI opens the home itself (DuckDB attaches a file once per process)
    falaj = Falaj(app.home)
    r = falaj.ok("consent", "give", s, "--purpose", "model-training", "--basis", "contract")
    assert f"{s} model-training (contract)" in r.output
    r = falaj.ok("consent", "list", s, "--json")
    assert json.loads(r.output)[0]["basis"] == "contract"
    out = tmp_path / "subject.json"
    r = falaj.ok("subject", "export", s, "--out", out)
    assert "rows in 2 tables" in r.output and (out.stat().st_mode & 0o077) == 0
    assert json.loads(out.read_text())["subject"] == s
    r = falaj.ok(
        "subject", "rectify", s, "--table", "credit_contacts", "--set", "phone=+971 50 000 0000"
    )
    assert "rectified subject" in r.output and "phone" in r.output
    bad = falaj("subject", "rectify", s, "--table", "credit_contacts", "--set", "phone")
    assert bad.exit_code == 2 and "expected COLUMN=VALUE" in bad.output
    r = falaj.ok("subject", "object", s, "--decision", decision, "--reason", "wrong", "--json")
    review = json.loads(r.output)["review"]
    r = falaj.ok("review", "list", "--status", "open")
    assert f"#{review} open subject {s}" in r.output
    r = falaj.ok("review", "decide", review, "--outcome", "uphold", "--note", "checked")
    assert "upheld" in r.output
    again = falaj("review", "decide", review, "--outcome", "uphold")
    assert again.exit_code == 2 and "already decided" in again.output
    r = falaj.ok("compliance", "record", "--format", "csv")
    assert r.output.startswith("section,name,legal_bases")
    r = falaj.ok("subject", "requests", s)
    assert [line.split()[2] for line in r.output.splitlines()] == ["object", "rectify", "export"]
