"""Data contracts on every ingest: refuse or quarantine, quality reports, nothing lost."""

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from appliance import faults
from appliance.errors import BadInput
from appliance.ingest.contracts import Contract
from tests.conftest import ACTOR

HEADER = "cid,ts,amount,channel\n"
ROWS = [
    "1,2025-01-01,10,web",  # good
    "2,2025-01-01,1200000,fax",  # above max, not allowed
    "3,2025-01-01,abc,web",  # not a number
    "1,2025-01-01,5,web",  # repeats row 1's key
    "4,2025-01-02,,store",  # amount missing
    "5,2025-01-03,-1,phone",  # below min
    "6,,3,web",  # no event time
    "7,2025-01-04,7,store",  # good
]


def spec(policy="quarantine", **extra):
    contract = {"policy": policy, "unique_key": True,
                "columns": {"amount": {"type": "DOUBLE", "nullable": False, "min": 0,
                                       "max": 1000000},
                            "channel": {"allowed": ["web", "store", "phone"]}}} | extra  # fmt: skip
    return {"entity": "cid", "event_time": "ts", "contract": contract}


def declare(app, table, s):
    Contract.from_dict(s["contract"], "test")  # the spec is one `falaj apply` would store
    with app.control.transaction() as tx:
        tx.put_table_spec(table, s, ACTOR)


def write(tmp_path, rows, name="tx.csv"):
    p = tmp_path / name
    p.write_text(HEADER + "\n".join(rows) + "\n")
    return p


def test_quarantine_lands_clean_rows_and_keeps_every_failing_row_with_its_reasons(app, tmp_path):
    declare(app, "tx", spec())
    r = app.ingestion.ingest(write(tmp_path, ROWS), "tx", None, None, ACTOR)
    assert (r["rows_in"], r["rows"], r["quarantined"]) == (8, 2, 6)
    assert r["rows_in"] == r["rows"] + r["quarantined"]  # nothing lost
    got = app.features.query("SELECT cid, amount, channel FROM tx ORDER BY _seq")
    assert [(g["cid"], g["amount"], g["channel"]) for g in got] == [(1, 10.0, "web"),
                                                                     (7, 7.0, "store")]  # fmt: skip
    shown = app.quarantine.show(r["batch"], ACTOR)["rows"]
    reasons = {s["row"]: s["reasons"] for s in shown}
    assert reasons == {
        2: ["amount: 1200000 > max 1000000", "channel: 'fax' is not one of web, store, phone"],
        3: ["amount: 'abc' is not a valid DOUBLE"],
        4: ["cid, ts: (1, 2025-01-01 00:00:00) repeats row 1"],
        5: ["amount: the value is missing"],
        6: ["amount: -1 < min 0"],
        7: ["ts: the value is missing"],
    }
    # original values are kept as given
    assert {s["row"]: s["values"] for s in shown}[3] == {
        "cid": "3", "ts": "2025-01-01", "amount": "abc", "channel": "web"}  # fmt: skip
    report = r["report"]
    assert report["rules"] == {"allowed:channel": 1, "max:amount": 1, "min:amount": 1,
                               "missing:ts": 1, "nullable:amount": 1, "type:amount": 1,
                               "unique_key:cid": 1}  # fmt: skip
    assert (report["rows_in"], report["rows_landed"], report["rows_quarantined"]) == (8, 2, 6)
    assert report["newest_event"] == datetime(2025, 1, 4)
    stored = app.ingestion.quality_reports(ACTOR, table="tx")
    assert len(stored) == 1 and stored[0]["batch"] == r["batch"]
    assert stored[0]["rules"] == report["rules"]
    event = app.audit.tail(1, ACTOR)[0]
    assert event["details"]["quarantined"] == 6 and event["details"]["rows_in"] == 8


@pytest.mark.parametrize(
    "row,message",
    [
        (
            "2,2025-01-01,1200000,web",
            "row 2 (line 3), column 'amount': 1200000 > max 1000000 (contract: max)",
        ),
        ("2,2025-01-01,-5,web", "row 2 (line 3), column 'amount': -5 < min 0 (contract: min)"),
        (
            "2,2025-01-01,5,fax",
            "row 2 (line 3), column 'channel': 'fax' is not one of web, "
            "store, phone (contract: allowed)",
        ),
        (
            "2,2025-01-01,,web",
            "row 2 (line 3), column 'amount': the value is missing (contract: nullable)",
        ),
        ("2,2025-01-01,x,web", "row 2 (line 3), column 'amount': 'x' is not a valid DOUBLE"),
        (
            "1,2025-01-01,5,web",
            "row 2 (line 3), column 'cid': (cid, ts) = (1, 2025-01-01 "
            "00:00:00) repeats row 1 (line 2) (contract: unique_key)",
        ),
    ],
)
def test_refuse_names_file_row_column_and_rule_and_stores_nothing(app, tmp_path, row, message):
    declare(app, "tx", spec("refuse"))
    app.ingestion.ingest(write(tmp_path, ["9,2024-12-01,1,web"], "first.csv"), "tx", None, None,
                         ACTOR)  # fmt: skip
    bad = write(tmp_path, ["1,2025-01-01,10,web", row])
    with pytest.raises(BadInput) as e:
        app.ingestion.ingest(bad, "tx", None, None, ACTOR)
    assert str(e.value) == f"{bad.resolve()}: {message}"
    assert app.features.row_count("tx") == 1
    assert len(app.ingestion.quality_reports(ACTOR)) == 1
    assert app.quarantine.list(ACTOR) == []


def test_uniqueness_holds_against_rows_already_stored(app, tmp_path):
    declare(app, "tx", spec())
    app.ingestion.ingest(write(tmp_path, ["1,2025-01-01,10,web"], "a.csv"), "tx", None, None,
                         ACTOR)  # fmt: skip
    first = app.ingestion.quality_reports(ACTOR)[0]["batch"]
    r = app.ingestion.ingest(write(tmp_path, ["1,2025-01-01,11,web", "1,2025-01-02,12,web"]),
                             "tx", None, None, ACTOR)  # fmt: skip
    assert (r["rows"], r["quarantined"]) == (1, 1)
    [row] = app.quarantine.show(r["batch"], ACTOR)["rows"]
    assert row["reasons"] == [f"cid, ts: (1, 2025-01-01 00:00:00) is already stored "
                              f"(batch {first})"]  # fmt: skip
    assert app.features.row_count("tx") == 2


def test_freshness_counts_rows_older_than_the_bound_at_ingest(app):
    declare(app, "tx", spec(freshness="2d"))
    now = datetime.now(UTC).replace(tzinfo=None)
    t = pa.table({"cid": [1, 2], "ts": [now - timedelta(hours=1), now - timedelta(days=3)],
                  "amount": [1.0, 2.0], "channel": ["web", "web"]})  # fmt: skip
    r = app.ingestion.ingest(t, "tx", None, None, ACTOR, label="frame")
    assert (r["rows"], r["quarantined"]) == (1, 1)
    assert r["report"]["rules"] == {"freshness:ts": 1}
    assert 3000 < r["report"]["freshness_seconds"] < 4000  # the newest event, an hour old
    [row] = app.quarantine.show(r["batch"], ACTOR)["rows"]
    assert (
        row["reasons"][0].startswith("ts: ")
        and "older than the freshness bound" in (row["reasons"][0])
    )


def test_declared_types_make_the_table_and_a_conflict_is_refused(app, tmp_path):
    s = spec("refuse")
    s["contract"]["columns"]["cid"] = {"type": "VARCHAR"}
    declare(app, "tx", s)
    app.ingestion.ingest(write(tmp_path, ["1,2025-01-01,10,web"]), "tx", None, None, ACTOR)
    assert app.features.column_types("tx") == {"cid": "VARCHAR", "ts": "TIMESTAMP",
                                               "amount": "DOUBLE", "channel": "VARCHAR"}  # fmt: skip
    s["contract"]["columns"]["amount"]["type"] = "BIGINT"
    declare(app, "tx", s)
    with pytest.raises(BadInput, match="declares column 'amount' BIGINT, but the table stores "
                                       "it as DOUBLE"):  # fmt: skip
        app.ingestion.ingest(write(tmp_path, ["2,2025-01-01,10,web"]), "tx", None, None, ACTOR)
    s["contract"]["columns"]["amount"] = {"min": 0}
    s["contract"]["columns"]["channel"] = {"max": 3}
    declare(app, "tx", s)
    with pytest.raises(BadInput, match="gives column 'channel' a max, but it holds VARCHAR"):
        app.ingestion.ingest(write(tmp_path, ["2,2025-01-01,10,web"]), "tx", None, None, ACTOR)


def test_a_batch_whose_rows_all_fail_still_reports_and_loses_nothing(app, tmp_path):
    declare(app, "tx", spec())
    r = app.ingestion.ingest(write(tmp_path, ["1,2025-01-01,-1,web", "2,2025-01-01,-2,web"]),
                             "tx", None, None, ACTOR)  # fmt: skip
    assert (r["rows_in"], r["rows"], r["quarantined"], r["total_rows"]) == (2, 0, 2, 0)
    assert [b["rows"] for b in app.quarantine.list(ACTOR)] == [2]


def test_quarantine_across_many_batches_keeps_global_row_numbers(app, tmp_path, monkeypatch):
    from appliance.ingest import sources

    monkeypatch.setattr(sources, "CSV_BLOCK", 4096)
    declare(app, "tx", spec())
    rows = [f"{i},2025-01-01,{-1 if i % 500 == 0 else i},web" for i in range(1, 3001)]
    r = app.ingestion.ingest(write(tmp_path, rows), "tx", None, None, ACTOR)
    assert (r["rows_in"], r["rows"], r["quarantined"]) == (3000, 2994, 6)
    assert [s["row"] for s in app.quarantine.show(r["batch"], ACTOR)["rows"]] == [
        500, 1000, 1500, 2000, 2500, 3000]  # fmt: skip
    seqs = app.features.query("SELECT _seq FROM tx ORDER BY _seq")
    ids = [s["id"] for s in app.quarantine.show(r["batch"], ACTOR)["rows"]]
    assert len({s["_seq"] for s in seqs} | set(ids)) == 3000  # one number per input row


def test_a_crash_between_data_and_audit_removes_report_and_quarantined_rows(app, tmp_path,
                                                                            monkeypatch):  # fmt: skip
    declare(app, "tx", spec())
    app.ingestion.ingest(write(tmp_path, ["9,2024-01-01,1,web"], "a.csv"), "tx", None, None,
                         ACTOR)  # fmt: skip

    class Crash(BaseException):
        pass

    def crash(name):
        if name == "ingest.data_committed":
            raise Crash

    monkeypatch.setattr(faults, "point", crash)
    with pytest.raises(Crash):
        app.ingestion.ingest(write(tmp_path, ROWS), "tx", None, None, ACTOR)
    assert len(app.ingestion.quality_reports(ACTOR)) == 2  # data committed, event not
    assert app.quarantine.list(ACTOR) != []
    monkeypatch.setattr(faults, "point", lambda name: None)
    undone = app.ingestion.reconcile()
    assert len(undone) == 1
    assert len(app.ingestion.quality_reports(ACTOR)) == 1
    assert app.quarantine.list(ACTOR) == []
    assert app.features.row_count("tx") == 1
    event = app.audit.tail(1, ACTOR)[0]
    assert event["action"] == "reconcile.rollback" and event["details"]["batch"] == undone[0]
    assert app.ingestion.reconcile() == []


def test_cli_ingest_says_what_was_quarantined_and_quality_lists_reports(falaj, app, tmp_path):
    declare(app, "tx", spec())
    app.close()
    r = falaj.ok("ingest", write(tmp_path, ROWS), "--table", "tx")
    assert "ingested 2 rows into tx" in r.output and "6 rows quarantined" in r.output
    out = json.loads(falaj.ok("quality", "--table", "tx", "--json").output)
    assert [(q["rows_in"], q["rows_landed"], q["rows_quarantined"]) for q in out] == [(8, 2, 6)]
