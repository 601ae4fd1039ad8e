"""Crypto-shredding: erasing a subject deletes their key; their personal columns stay
as unreadable ciphertext, the audit chain still verifies, and exports say "[erased]"."""

from __future__ import annotations

import pyarrow as pa
import pytest

from appliance import demo
from appliance.compliance.consent import ConsentWithdrawn
from appliance.compliance.shredding import ERASED, seal, unseal
from appliance.compliance.subjects import SubjectErased
from appliance.core import Appliance
from tests.conftest import ACTOR

WORKSPACE = """\
tables:
  contacts:
    entity: customer_id
    event_time: event_time
    personal: [full_name, email, phone]
  scores:
    entity: customer_id
    event_time: event_time
views:
  score:
    table: scores
    columns: [score]
"""


@pytest.fixture(scope="module")
def shredded(tmp_path_factory):
    home = tmp_path_factory.mktemp("shred") / "home"
    app = Appliance.open({"home": str(home)})
    app.init(ACTOR)
    (home / "ws.yaml").write_text(WORKSPACE)
    app.views.apply(home / "ws.yaml", ACTOR)
    data = demo.credit_risk(300, seed=9)
    contacts = demo.contacts(data)
    app.ingestion.ingest(contacts, "contacts", actor=ACTOR)
    scores = pa.table({"customer_id": contacts["customer_id"], "event_time": contacts["event_time"],
                       "score": pa.array(range(contacts.num_rows), pa.float64())})  # fmt: skip
    app.ingestion.ingest(scores, "scores", actor=ACTOR)
    app.online.materialize("score", ACTOR)
    subject = str(contacts["customer_id"][0].as_py())
    before = app.subjects.export(subject, ACTOR)
    erased = app.subjects.erase(subject, ACTOR)
    yield app, contacts, subject, before, erased
    app.close()


def test_erasure_deletes_the_key_and_leaves_ciphertext_unreadable(shredded):
    app, contacts, subject, before, erased = shredded
    assert erased["key_deleted"] is True and erased["online_rows_dropped"] == 1
    assert app.control.subject_key_rows([subject]) == {}
    assert before["tables"]["contacts"]["rows"][0]["email"].endswith("@example.ae")
    raw = app.features.query(
        "SELECT email FROM contacts WHERE CAST(customer_id AS VARCHAR) = ?", [subject]
    )
    assert isinstance(raw[0]["email"], bytes) and len(raw[0]["email"]) > 28  # still there
    after = app.subjects.export(subject, ACTOR)
    row = after["tables"]["contacts"]["rows"][0]
    assert (row["full_name"], row["email"], row["phone"]) == (ERASED, ERASED, ERASED)
    assert after["erased"]["erased_by"] == str(ACTOR)
    assert after["tables"]["scores"]["rows"][0]["score"] == 0.0  # not personal: kept
    assert after["online_features"] == []  # dropped from the online store


def test_the_audit_chain_still_verifies_after_erasure(shredded):
    app, *_ = shredded
    v = app.audit.verify(ACTOR, full=True)
    assert v.ok, v.reason
    ev = [e for e in app.control.audit_tail(50) if e["action"] == "subject.erase"][0]
    assert ev["details"]["key_deleted"] is True


def test_other_subjects_are_untouched(shredded):
    app, contacts, subject, *_ = shredded
    other = str(contacts["customer_id"][1].as_py())
    row = app.subjects.export(other, ACTOR)["tables"]["contacts"]["rows"][0]
    assert row["email"] == contacts["email"][1].as_py()
    got = app.online.get_online_features(["score:score"], [{"customer_id": int(other)}], ACTOR)
    assert got["results"][0]["values"]["score"] == 1.0


def test_an_erased_subject_cannot_be_rectified_or_decided_about(shredded):
    app, _, subject, *_ = shredded
    with pytest.raises(SubjectErased, match="was erased"):
        app.subjects.rectify(subject, "contacts", {"email": "x@example.ae"}, ACTOR)
    with pytest.raises(ConsentWithdrawn):
        app.consent.check([subject])  # erasure withdrew automated decisions too
    assert app.consent.status(subject, ACTOR) == {"model-training": "withdrawn",
                                                  "automated-decision": "withdrawn"}  # fmt: skip


def test_a_sealed_value_opens_only_for_its_table_column_and_subject():
    key = bytes(range(32))
    blob = seal(key, "contacts", "email", "42", "a@example.ae")
    assert unseal(key, "contacts", "email", "42", blob) == "a@example.ae"
    assert unseal(key, "contacts", "email", "43", blob) is None  # moved to another subject
    assert unseal(key, "contacts", "phone", "42", blob) is None
    assert unseal(bytes(32), "contacts", "email", "42", blob) is None  # another key
    assert unseal(None, "contacts", "email", "42", blob) is None
    assert blob[1:13] != seal(key, "contacts", "email", "42", "a@example.ae")[1:13]  # nonces
