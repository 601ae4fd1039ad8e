"""falaj ingest: typed, validated, all-or-nothing, audited."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ACTOR, LOANS


def rows(app, table="loans") -> int:
    return app.features.row_count(table)


def test_csv_ingest_types_and_audit(falaj, credit_csv, home):
    falaj.ok("init")
    r = falaj.ok("ingest", credit_csv, *LOANS, "--json")
    assert '"rows": 3000' in r.output
    r = falaj.ok("status", "--json")
    assert '"rows": 3000' in r.output
    r = falaj.ok("audit", "tail", "--json")
    assert '"action": "data.ingest"' in r.output and '"subject": "loans"' in r.output


def test_types_are_inferred(app, credit_csv):
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", actor=ACTOR)
    types = app.features.column_types("loans")
    assert types["customer_id"] == "BIGINT"
    assert types["event_time"] == "TIMESTAMP"
    assert types["income"] == "DOUBLE"
    assert types["num_late_payments"] == "BIGINT"
    assert types["region"] == "VARCHAR"


def test_reingest_appends(app, credit_csv):
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    r = app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    assert (r["rows"], r["total_rows"]) == (3000, 6000)
    assert rows(app) == 6000
    batches = app.features.query("SELECT count(DISTINCT _batch_id) AS n FROM loans")[0]["n"]
    assert batches == 2
    assert [e["action"] for e in app.audit.tail(2, ACTOR)] == ["data.ingest", "data.ingest"]


def test_parquet_ingest_and_timezone_offsets(app, tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {"id": [1, 2], "ts": ["2025-01-01T04:00:00+04:00", "2025-01-02"], "x": [1.5, 2.5]}
        ),
        path,
    )
    app.ingestion.ingest(path, "p", "id", "ts", ACTOR)
    got = app.features.query("SELECT id, ts::VARCHAR AS ts, x FROM p ORDER BY id")
    assert got == [
        {"id": 1, "ts": "2025-01-01 00:00:00", "x": 1.5},
        {"id": 2, "ts": "2025-01-02 00:00:00", "x": 2.5},
    ]


def write(tmp_path, text, name="bad.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "customer_id,event_time,income\n1,2025-01-01,100.5\n2,2025-01-02,200\n"


@pytest.mark.parametrize(
    "text,message",
    [
        ("customer_id,income\n1,100\n", "the timestamp column 'event_time' is missing"),
        (
            "customer_id,event_time,income\n1,2025-01-01,100\n2,2025-02-30,3\n",
            "row 2 (line 3), column 'event_time': '2025-02-30' is not a valid timestamp",
        ),
        (
            "customer_id,event_time,income\n1,2025-01-01,100\n2,2025-01-02,abc\n",
            "row 2 (line 3), column 'income': 'abc' is not a valid DOUBLE",
        ),
        (
            "customer_id,event_time,income\n1,2025-01-01,100\n,2025-01-02,1\n",
            "row 2 (line 3), column 'customer_id': the value is missing",
        ),
        (
            "customer_id,event_time\n1,2025-01-01\n",
            "column 'income' of the table is missing from the file",
        ),
        (
            "customer_id,event_time,income,extra\n1,2025-01-01,1,2\n",
            "column 'extra' is not in the table",
        ),
        ("customer_id,event_time,income\n", "has no rows"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(falaj, tmp_path, text, message):
    falaj.ok("init")
    falaj.ok("ingest", write(tmp_path, GOOD, "good.csv"), *LOANS)
    events_before = json.loads(falaj.ok("audit", "verify", "--json").output)["checked"]
    bad = write(tmp_path, text)
    r = falaj("ingest", bad, *LOANS)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: {bad}: "), r.stderr
    assert message in r.stderr
    assert r.stderr.count("\n") == 1
    assert '"rows": 2' in falaj.ok("status", "--json").output  # unchanged
    assert json.loads(falaj.ok("audit", "verify", "--json").output)["checked"] == events_before


def test_mostly_numeric_column_with_garbage_is_refused_on_first_ingest(app, tmp_path):
    lines = ["id,ts,x"] + [f"{i},2025-01-01,{i}.5" for i in range(1, 40)] + ["40,2025-01-01,n/a?"]
    p = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(
        Exception, match=r"row 40 \(line 41\), column 'x': 'n/a\?' is not a valid DOUBLE"
    ):
        app.ingestion.ingest(p, "t", "id", "ts", ACTOR)
    assert app.features.column_types("t") is None  # the table was not created


def test_integer_column_refuses_fractions(app, tmp_path):
    app.ingestion.ingest(
        write(tmp_path, "id,ts,n\n1,2025-01-01,3\n", "a.csv"), "t", "id", "ts", ACTOR
    )
    with pytest.raises(Exception, match=r"column 'n': '1.5' is not a valid BIGINT"):
        app.ingestion.ingest(
            write(tmp_path, "id,ts,n\n1,2025-01-01,1.5\n", "b.csv"), "t", "id", "ts", ACTOR
        )
    assert rows(app, "t") == 1


def test_bad_names_and_files(falaj, tmp_path):
    falaj.ok("init")
    good = write(tmp_path, GOOD, "good.csv")
    r = falaj(
        "ingest",
        good,
        "--table",
        "drop table;",
        "--entity",
        "customer_id",
        "--timestamp",
        "event_time",
    )
    assert r.exit_code == 2 and "table name 'drop table;' is not valid" in r.stderr
    r = falaj("ingest", tmp_path / "none.csv", *LOANS)
    assert r.exit_code == 2 and "none.csv: no such file" in r.stderr
    r = falaj("ingest", write(tmp_path, "x", "data.xlsx"), *LOANS)
    assert r.exit_code == 2 and "unknown file type '.xlsx'" in r.stderr
    r = falaj("ingest", write(tmp_path, "a,b\n1,2,3\n", "ragged.csv"), *LOANS)
    assert r.exit_code == 2 and "cannot be read" in r.stderr


def test_entity_and_timestamp_must_match_the_table(app, tmp_path):
    app.ingestion.ingest(
        write(tmp_path, GOOD, "good.csv"), "loans", "customer_id", "event_time", ACTOR
    )
    with pytest.raises(Exception, match="has entity 'customer_id' and timestamp 'event_time'"):
        app.ingestion.ingest(
            write(tmp_path, GOOD, "good.csv"), "loans", "income", "event_time", ACTOR
        )
