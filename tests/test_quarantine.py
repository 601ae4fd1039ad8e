"""The quarantine: list, show, release (re-checked, or forced), drop; audited, and
reconciled after a crash between the data and its audit event."""

import json

import pytest

from appliance import faults
from appliance.errors import BadInput, NotFound
from tests.conftest import ACTOR
from tests.test_contracts import declare, spec, write

ROWS = [
    "1,2025-01-01,10,web",  # lands
    "2,2025-01-01,1500000,web",  # above max
    "3,2025-01-01,abc,web",  # not a number
    "4,2025-01-02,20,fax",  # not allowed
]


@pytest.fixture
def held(app, tmp_path):
    declare(app, "tx", spec())
    r = app.ingestion.ingest(write(tmp_path, ROWS), "tx", None, None, ACTOR)
    assert (r["rows"], r["quarantined"]) == (1, 3)
    return r["batch"]


def ids_of(app, batch):
    return {s["row"]: s["id"] for s in app.quarantine.show(batch, ACTOR)["rows"]}


def test_list_and_show(app, held):
    [b] = app.quarantine.list(ACTOR)
    assert (b["batch"], b["table"], b["rows"]) == (held, "tx", 3)
    assert b["rules"] == {"allowed:channel": 1, "max:amount": 1, "type:amount": 1}
    assert app.quarantine.list(ACTOR, table="other") == []
    shown = app.quarantine.show(held, ACTOR)
    assert shown["table"] == "tx" and [r["row"] for r in shown["rows"]] == [2, 3, 4]
    one = app.quarantine.show(str(ids_of(app, held)[3]), ACTOR)["rows"]
    assert [r["values"]["amount"] for r in one] == ["abc"]
    with pytest.raises(NotFound, match="no held row with id 999"):
        app.quarantine.show([ids_of(app, held)[2], 999], ACTOR)
    with pytest.raises(BadInput, match="is not a row id"):
        app.quarantine.show("drop table x", ACTOR)


def test_release_rechecks_against_the_current_contract(app, held):
    s = spec()
    s["contract"]["columns"]["amount"]["max"] = 2000000  # row 2 passes now
    declare(app, "tx", s)
    ids = ids_of(app, held)
    r = app.quarantine.release(held, ACTOR)
    assert (r["released"], r["kept"]) == (1, 2)
    assert {k["id"] for k in r["still_failing"]} == {ids[3], ids[4]}
    got = app.features.query("SELECT cid, amount, _batch_id FROM tx ORDER BY _seq")
    assert [(g["cid"], g["amount"]) for g in got] == [(1, 10.0), (2, 1500000.0)]
    assert got[1]["_batch_id"] == r["batch"]  # a new batch
    assert [b["rows"] for b in app.quarantine.list(ACTOR)] == [2]
    event = app.audit.tail(1, ACTOR)[0]
    assert event["action"] == "data.quarantine.release"
    assert (event["details"]["rows"], event["details"]["kept"]) == (1, 2)
    assert event["details"]["batch"] == r["batch"] and event["details"]["ids"] == [ids[2]]
    [report] = [q for q in app.ingestion.quality_reports(ACTOR) if q["kind"] == "release"]
    assert (report["rows_in"], report["rows_landed"]) == (1, 1)
    # releasing again changes nothing and audits nothing
    before = app.audit.tail(1, ACTOR)[0]["seq"]
    r = app.quarantine.release(held, ACTOR)
    assert (r["released"], r["kept"], r["batch"]) == (0, 2, None)
    assert app.audit.tail(1, ACTOR)[0]["seq"] == before


def test_force_lands_what_converts_and_says_what_cannot(app, held):
    ids = ids_of(app, held)
    r = app.quarantine.release(held, ACTOR, force=True)
    assert (r["released"], r["kept"]) == (2, 1)
    assert r["still_failing"] == [
        {"id": ids[3], "reasons": ["amount: 'abc' is not a valid DOUBLE"]}
    ]
    assert app.features.row_count("tx") == 3
    assert [s["id"] for s in app.quarantine.show(held, ACTOR)["rows"]] == [ids[3]]


def test_drop_deletes_for_good_and_is_audited(app, held):
    ids = ids_of(app, held)
    r = app.quarantine.drop([ids[2], ids[4]], ACTOR)
    assert r == {"table": "tx", "dropped": 2}
    assert [s["id"] for s in app.quarantine.show(held, ACTOR)["rows"]] == [ids[3]]
    event = app.audit.tail(1, ACTOR)[0]
    assert event["action"] == "data.quarantine.drop" and event["details"]["rows"] == 2
    app.quarantine.drop(held, ACTOR)
    assert app.quarantine.list(ACTOR) == []
    assert app.features.query("SELECT count(*) AS n FROM _quarantine")[0]["n"] == 0
    with pytest.raises(NotFound):
        app.quarantine.drop(held, ACTOR)


class Crash(BaseException):
    pass


def crash_at(monkeypatch, point):
    def fault(name):
        if name == point:
            raise Crash

    monkeypatch.setattr(faults, "point", fault)


@pytest.mark.parametrize("action", ["release", "drop"])
def test_a_crash_before_the_event_is_undone_by_reconcile(app, held, monkeypatch, action):
    crash_at(monkeypatch, "quarantine.data_committed")
    with pytest.raises(Crash):
        getattr(app.quarantine, action)(held, ACTOR, **({"force": True} if action == "release"
                                                        else {}))  # fmt: skip
    assert app.quarantine.list(ACTOR) == [] or action == "release"
    monkeypatch.setattr(faults, "point", lambda name: None)
    app.ingestion.reconcile()
    assert [b["rows"] for b in app.quarantine.list(ACTOR)] == [3]  # all held again
    assert app.features.row_count("tx") == 1  # the released rows were taken back
    assert app.features.change_counts()["ingests"] == 1
    event = app.audit.tail(1, ACTOR)[0]
    assert event["action"] == "reconcile.rollback"
    assert event["details"]["change"] == f"data.quarantine.{action}"
    assert app.ingestion.reconcile() == []


def test_a_crash_after_the_event_is_finished_by_reconcile(app, held, monkeypatch):
    from appliance.stores.quality import QualityTx

    monkeypatch.setattr(QualityTx, "finish_quarantine_op", lambda self, op: (_ for _ in ()).throw(
        Crash()))  # fmt: skip
    with pytest.raises(Crash):
        app.quarantine.release(held, ACTOR, force=True)
    monkeypatch.undo()
    assert app.features.quarantine_ops() != []
    app.ingestion.reconcile()
    assert app.features.quarantine_ops() == []
    assert [b["rows"] for b in app.quarantine.list(ACTOR)] == [1]
    assert app.features.row_count("tx") == 3  # the audited release stands
    assert app.audit.tail(1, ACTOR)[0]["action"] == "data.quarantine.release"


def test_cli_quarantine_commands(falaj, app, tmp_path):
    declare(app, "tx", spec())
    app.close()
    falaj.ok("ingest", write(tmp_path, ROWS), "--table", "tx")
    [b] = json.loads(falaj.ok("quarantine", "list", "--json").output)
    assert b["rows"] == 3
    text = falaj.ok("quarantine", "show", b["batch"]).output
    assert "amount: 1500000 > max 1000000" in text and "amount='abc'" in text
    shown = json.loads(falaj.ok("quarantine", "show", b["batch"], "--json").output)
    ids = [r["id"] for r in shown["rows"]]
    r = json.loads(falaj.ok("quarantine", "drop", str(ids[0]), "--json").output)
    assert r["dropped"] == 1
    r = falaj.ok("quarantine", "release", b["batch"], "--force")
    assert "released 1 rows into tx; 1 stay quarantined" in r.output
    assert "'abc' is not a valid DOUBLE" in r.output
    r = falaj("quarantine", "show", "nonsense")
    assert r.exit_code == 2 and "is not a row id" in r.stderr
    r = falaj("quarantine", "drop", "99999")
    assert r.exit_code == 2 and "no held row" in r.stderr
    actions = [e["action"] for e in json.loads(falaj.ok("audit", "tail", "--json").output)]
    assert "data.quarantine.release" in actions and "data.quarantine.drop" in actions


def test_show_limits_rows_and_counts_them_all(app, held):
    shown = app.quarantine.show(held, ACTOR, limit=2)
    assert shown["total"] == 3 and [r["row"] for r in shown["rows"]] == [2, 3]
    assert app.quarantine.show(held, ACTOR)["total"] == 3
