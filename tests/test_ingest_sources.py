"""falaj ingest: the sources it reads, row identity (``_seq``), created time."""

import pyarrow as pa

from tests.conftest import ACTOR


def table(n, start=0, entity="id", ts="ts"):
    return pa.table(
        {
            entity: pa.array(range(start, start + n), pa.int64()),
            ts: pa.array([f"2025-01-{1 + i % 28:02d}" for i in range(n)]),
            "x": pa.array([float(i) for i in range(n)]),
        }
    )


def test_seq_is_unique_and_increasing_across_tables_in_ingest_order(app):
    app.ingestion.ingest(table(3), "a", "id", "ts", ACTOR)
    app.ingestion.ingest(table(2, 10), "b", "id", "ts", ACTOR)
    app.ingestion.ingest(table(2, 20), "a", "id", "ts", ACTOR)
    a = app.features.query("SELECT id, _seq FROM a ORDER BY _seq")
    b = app.features.query("SELECT id, _seq FROM b ORDER BY _seq")
    assert [r["id"] for r in a] == [0, 1, 2, 20, 21]
    assert [r["_seq"] for r in a] == [1, 2, 3, 6, 7]
    assert [r["_seq"] for r in b] == [4, 5]


def test_created_column_is_recorded(app):
    t = table(2).append_column("made", pa.array(["2025-02-01", "2025-02-02"]))
    app.ingestion.ingest(t, "c", "id", "ts", ACTOR, created="made")
    assert app.features.created_column("c") == "made"
    assert app.features.table_keys("c") == ("id", "ts")
    app.ingestion.ingest(table(1), "d", "id", "ts", ACTOR)
    assert app.features.created_column("d") is None


def test_tables_made_before_seq_gain_it_when_the_store_opens(app, home):
    app.ingestion.ingest(table(3), "a", "id", "ts", ACTOR)
    with app.features.transaction() as tx:  # as a store from before _seq left it
        tx.conn.execute("ALTER TABLE a DROP COLUMN _seq")
        tx.conn.execute("UPDATE _row_seq SET next_seq = 1")
    assert app.features.number_old_tables() == ["a"]
    assert app.features.number_old_tables() == []
    got = app.features.query("SELECT id, _seq FROM a ORDER BY id")
    assert [(r["id"], r["_seq"]) for r in got] == [(0, 1), (1, 2), (2, 3)]
    app.ingestion.ingest(table(1, 9), "a", "id", "ts", ACTOR)
    assert app.features.query("SELECT _seq FROM a WHERE id = 9")[0]["_seq"] == 4


# -- every source gives the same rows ------------------------------------------------

import json  # noqa: E402
import sqlite3  # noqa: E402

import duckdb  # noqa: E402
import pyarrow.feather as feather  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from appliance.errors import BadInput  # noqa: E402

ROWS = [
    {"id": 1, "ts": "2025-01-01 00:00:00", "x": 1.5, "tag": "a"},
    {"id": 2, "ts": "2025-01-02 00:00:00", "x": None, "tag": "b"},
    {"id": 3, "ts": "2025-01-03 12:00:00", "x": -2.0, "tag": None},
]
EXPECTED = [(r["id"], r["ts"], r["x"], r["tag"]) for r in ROWS]


def landed(app, table="t"):
    got = app.features.query(f"SELECT id, ts::VARCHAR AS ts, x, tag FROM {table} ORDER BY _seq")
    return [(r["id"], r["ts"], r["x"], r["tag"]) for r in got]


def arrow_rows():
    return pa.Table.from_pylist(ROWS)


def write_csv(p):
    lines = ["id,ts,x,tag"] + [
        ",".join("" if v is None else str(v) for v in r.values()) for r in ROWS
    ]
    p.write_text("\n".join(lines) + "\n")


def write_sqlite(p, table="t"):
    con = sqlite3.connect(p)
    q = '"' + table.replace('"', '""') + '"'
    con.execute(f"CREATE TABLE {q} (id INTEGER, ts TEXT, x REAL, tag TEXT)")
    con.executemany(f"INSERT INTO {q} VALUES (?, ?, ?, ?)", [tuple(r.values()) for r in ROWS])
    con.commit()
    con.close()


def write_duckdb(p):
    con = duckdb.connect(str(p))
    con.register("src", arrow_rows())
    con.execute("CREATE TABLE t AS SELECT id, ts::TIMESTAMP AS ts, x, tag FROM src")
    con.close()


WRITERS = {
    "data.csv": write_csv,
    "data.parquet": lambda p: pq.write_table(arrow_rows(), p),
    "data.jsonl": lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in ROWS)),
    "data.ndjson": lambda p: p.write_text("".join(json.dumps(r) + "\n\n" for r in ROWS)),
    "data.arrow": lambda p: feather.write_feather(arrow_rows(), p),
    "data.ipc": lambda p: _write_stream(arrow_rows(), p),
    "data.sqlite": write_sqlite,
    "data.duckdb": write_duckdb,
}


def _write_stream(table, p):
    with ipc.new_stream(str(p), table.schema) as w:
        for b in table.to_batches(max_chunksize=2):
            w.write_batch(b)


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_file_source_lands_the_same_rows(app, tmp_path, name):
    path = tmp_path / name
    WRITERS[name](path)
    seen = []
    from_table = "t" if name.endswith((".sqlite", ".duckdb")) else None
    r = app.ingestion.ingest(path, "t", "id", "ts", ACTOR, from_table=from_table,
                             progress=lambda done, total, unit: seen.append((done, total, unit)))  # fmt: skip
    assert (r["rows"], r["rows_in"], r["quarantined"]) == (3, 3, 0)
    assert landed(app) == EXPECTED
    assert app.features.column_types("t")["ts"] == "TIMESTAMP"
    assert seen and seen[-1][0] > 0  # progress was reported
    event = app.audit.tail(1, ACTOR)[0]
    assert event["action"] == "data.ingest" and event["details"]["rows"] == 3


def test_frames_in_memory_pandas_polars_and_batch_readers(app):
    import pandas as pd
    import polars as pl

    app.ingestion.ingest(pd.DataFrame(ROWS), "t", "id", "ts", ACTOR)
    app.ingestion.ingest(pl.DataFrame(ROWS), "t", "id", "ts", ACTOR)
    reader = pa.RecordBatchReader.from_batches(arrow_rows().schema, arrow_rows().to_batches(2))
    app.ingestion.ingest(reader, "t", "id", "ts", ACTOR)
    assert landed(app) == EXPECTED * 3
    # a pandas frame with a named index: the index is not a column
    df = pd.DataFrame(ROWS).set_index("tag", drop=False)
    app.ingestion.ingest(df, "t", "id", "ts", ACTOR)
    assert app.features.row_count("t") == 12
    with pytest.raises(BadInput, match="a dict is not something to ingest"):
        app.ingestion.ingest({"id": [1]}, "t", "id", "ts", ACTOR)
    mixed = pd.DataFrame({"id": [1, 2], "ts": ["2025-01-01", "2025-01-02"], "x": [1.0, "a"],
                          "tag": ["a", "b"]})  # fmt: skip
    with pytest.raises(BadInput, match=r"data: cannot be converted to Arrow: .*column x"):
        app.ingestion.ingest(mixed, "t", "id", "ts", ACTOR)
    assert app.features.row_count("t") == 12


def test_csv_errors_name_the_global_row_and_line_across_batches(app, tmp_path, monkeypatch):
    from appliance.ingest import sources

    monkeypatch.setattr(sources, "CSV_BLOCK", 4096)  # many small batches
    lines = ["id,ts,x"] + [f"{i},2025-01-01,{i}.5" for i in range(1, 3001)]
    lines[2500] = "2500,2025-01-01,oops"
    p = tmp_path / "long.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        BadInput, match=r"row 2500 \(line 2501\), column 'x': 'oops' is not a valid"
    ):
        app.ingestion.ingest(p, "t", "id", "ts", ACTOR)
    assert app.features.column_types("t") is None


def test_sqlite_and_duckdb_tables(app, tmp_path):
    db = tmp_path / "shop.db"
    write_sqlite(db, "we\"ird'name")
    with pytest.raises(BadInput, match=r"has no table 'orders' \(tables: we\"ird'name\)"):
        app.ingestion.ingest(db, "t", "id", "ts", ACTOR, from_table="orders")
    with pytest.raises(BadInput, match="name the table to read with --from-table"):
        app.ingestion.ingest(db, "t", "id", "ts", ACTOR)
    app.ingestion.ingest(db, "t", "id", "ts", ACTOR, from_table="we\"ird'name")
    assert landed(app) == EXPECTED
    assert db.read_bytes().startswith(b"SQLite format 3")  # read-only: still there, unchanged
    duck = tmp_path / "w.duckdb"
    write_duckdb(duck)
    with pytest.raises(BadInput, match=r"w.duckdb: has no table 'x' \(tables: t\)"):
        app.ingestion.ingest(duck, "t", "id", "ts", ACTOR, from_table="x")


def test_hostile_database_files(app, tmp_path, home):
    fake = tmp_path / "fake.duckdb"
    fake.write_text("id,ts\n1,2025-01-01\n")
    with pytest.raises(BadInput, match="is not a SQLite or DuckDB database"):
        app.ingestion.ingest(fake, "t", "id", "ts", ACTOR, from_table="t")
    # control.db is SQLCipher: noise to anyone without the key
    import shutil

    for store, name in (("control.db", "c.db"), ("features.duckdb", "f.duckdb")):
        copy = tmp_path / name
        app.features.checkpoint()
        shutil.copy(home / store, copy)
        with pytest.raises(BadInput) as e:
            app.ingestion.ingest(copy, "t", "id", "ts", ACTOR, from_table="t")
        assert "encrypted" in str(e.value) and str(copy) in str(e.value)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE t (id INTEGER, ts TEXT)").connection.close()
    with pytest.raises(BadInput, match="has no rows"):
        app.ingestion.ingest(empty, "t", "id", "ts", ACTOR, from_table="t")
    assert app.features.column_types("t") is None


def test_hostile_ndjson(app, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": 1, "ts": "2025-01-01"}\n{"id": 2, "ts": \n{"id": 3, "ts": "2025-01-03"}\n'
    )
    with pytest.raises(BadInput, match="bad.jsonl: line 2 is not valid JSON"):
        app.ingestion.ingest(bad, "t", "id", "ts", ACTOR)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"id": i, "ts": "2025-01-01", "x": i}) + "\n"
                             for i in range(5)) + '{"id": 9, "ts": "2025-01-01", "x": "nine"}\n')  # fmt: skip
    with pytest.raises(BadInput, match="line 6, field 'x': a string where line 1 has a number"):
        app.ingestion.ingest(mixed, "t", "id", "ts", ACTOR)
    array = tmp_path / "array.json"
    array.write_text('[{"id": 1}]\n')
    with pytest.raises(BadInput, match="array.json: line 1 is not a JSON object"):
        app.ingestion.ingest(array, "t", "id", "ts", ACTOR)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BadInput, match="empty.jsonl: has no rows"):
        app.ingestion.ingest(empty, "t", "id", "ts", ACTOR)
    assert app.features.column_types("t") is None


def test_a_huge_single_field_is_refused_cleanly(app, tmp_path):
    p = tmp_path / "huge.csv"
    with open(p, "w") as f:
        f.write("id,ts,note\n1,2025-01-01,short\n2,2025-01-02,")
        f.write("x" * (3 << 20))
        f.write("\n")
    with pytest.raises(BadInput, match=r"huge.csv: after row 1 \(line 2\): a row is longer than"):
        app.ingestion.ingest(p, "t", "id", "ts", ACTOR)
    assert app.features.column_types("t") is None


def test_zero_rows_in_every_format(app, tmp_path):
    pq.write_table(arrow_rows().slice(0, 0), tmp_path / "z.parquet")
    (tmp_path / "z.csv").write_text("id,ts,x,tag\n")
    for name in ("z.parquet", "z.csv"):
        with pytest.raises(BadInput, match="has no rows"):
            app.ingestion.ingest(tmp_path / name, "t", "id", "ts", ACTOR)
    with pytest.raises(BadInput, match="data: has no rows"):
        app.ingestion.ingest(arrow_rows().slice(0, 0), "t", "id", "ts", ACTOR)
    assert app.features.column_types("t") is None
    assert app.ingestion.quality_reports(ACTOR) == []


# -- keys from the workspace ---------------------------------------------------------


def declare(app, table, spec):
    with app.control.transaction() as tx:
        tx.put_table_spec(table, spec, ACTOR)


def test_keys_default_to_the_workspace_and_a_contradiction_is_refused(app, tmp_path):
    t = arrow_rows().append_column("made", pa.array(["2025-02-01"] * 3))
    declare(app, "t", {"entity": "id", "event_time": "ts", "created_time": "made"})
    r = app.ingestion.ingest(t, "t", None, None, ACTOR)
    assert r["rows"] == 3
    assert app.features.table_keys("t") == ("id", "ts")
    assert app.features.created_column("t") == "made"
    assert app.features.column_types("t")["made"] == "TIMESTAMP"
    with pytest.raises(BadInput, match="--entity 'tag' contradicts the workspace"):
        app.ingestion.ingest(t, "t", "tag", None, ACTOR)
    with pytest.raises(BadInput, match="--created 'ts' contradicts the workspace"):
        app.ingestion.ingest(t, "t", None, None, ACTOR, created="ts")
    app.ingestion.ingest(t, "t", "id", "ts", ACTOR, created="made")  # agreeing is fine
    assert app.features.row_count("t") == 6


def test_a_new_undeclared_table_needs_its_keys(app, falaj, tmp_path):
    with pytest.raises(BadInput, match="give its entity and timestamp columns"):
        app.ingestion.ingest(arrow_rows(), "t", None, None, ACTOR)
    app.ingestion.ingest(arrow_rows(), "t", "id", "ts", ACTOR)
    app.ingestion.ingest(arrow_rows(), "t", None, None, ACTOR)  # the table's own keys
    assert app.features.row_count("t") == 6


def test_cli_ingest_from_table_and_created(falaj, tmp_path):
    falaj.ok("init")
    db = tmp_path / "shop.sqlite"
    write_sqlite(db, "orders")
    r = falaj.ok("ingest", db, "--from-table", "orders", "--table", "orders", "--entity", "id",
                 "--timestamp", "ts", "--created", "ts", "--json")  # fmt: skip
    out = json.loads(r.output)
    assert (out["rows"], out["report"]["rows_in"], out["report"]["rows_landed"]) == (3, 3, 3)
    r = falaj("ingest", db, "--from-table", "nope", "--table", "orders")
    assert r.exit_code == 2 and "has no table 'nope' (tables: orders)" in r.stderr
    r = falaj.ok("quality", "--json")
    assert [q["rows_in"] for q in json.loads(r.output)] == [3]


# -- bounded memory --------------------------------------------------------------------

PROBE = r"""
import json, sys
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.csv as pacsv
from appliance.auth import Actor
from appliance.core import Appliance

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

home, mb = Path(sys.argv[1]), int(sys.argv[2])
path = home.parent / f"big{mb}.csv"
schema = pa.schema([("id", pa.int64()), ("ts", pa.string()), ("x", pa.float64()),
                    ("tag", pa.string())])
with pacsv.CSVWriter(str(path), schema) as w:
    i = 0
    while path.stat().st_size < mb << 20:
        ids = np.arange(i, i + 100_000)
        ts = np.datetime64("2025-01-01") + (ids % 8_000_000).astype("timedelta64[s]")
        w.write_table(pa.table({"id": ids % 50_000, "ts": np.datetime_as_string(ts),
                                "x": ids * 0.5, "tag": np.where(ids % 3, "alpha", "beta")},
                               schema=schema))
        i += 100_000
actor = Actor("test", "memory")
app = Appliance.open({"home": str(home)})
app.init(actor)
app.features.set_memory_limit("48MB")
small = home.parent / "small.csv"
small.write_text("id,ts,x,tag\n1,2025-01-01,1.5,a\n")
app.ingestion.ingest(small, "warm", "id", "ts", actor)  # every code path loaded
base = kib("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from here
r = app.ingestion.ingest(path, "big", "id", "ts", actor)
print(json.dumps({"file_mb": path.stat().st_size / 2**20, "rows": r["rows"],
                  "growth_mb": (kib("VmHWM:") - base) / 1024}))
app.close()
"""


def probe(tmp_path, mb):
    import subprocess
    import sys

    home = tmp_path / f"m{mb}" / "home"
    home.parent.mkdir()
    out = subprocess.run([sys.executable, "-c", PROBE, str(home), str(mb)], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.slow
def test_memory_stays_bounded_as_the_file_grows(tmp_path):
    """Three times the CSV (96 MiB more, some 2.3 million rows, several times that in
    DuckDB) under a 48 MB DuckDB memory limit: the ingest's peak RSS grows by less than
    the extra file size (about 40 MB here). When every batch's Arrow data lived until
    the commit it grew by over three times the extra size; reading the whole file at
    once grows it by more than the extra size. The peak has a fixed part of 150-200 MB
    (Arrow's and DuckDB's caches, the buffer pool), hence two sizes, not one bound."""
    small, large = probe(tmp_path, 48), probe(tmp_path, 144)
    assert large["rows"] > 2.5 * small["rows"]
    extra_file = large["file_mb"] - small["file_mb"]
    assert large["growth_mb"] - small["growth_mb"] < extra_file, (small, large)


@pytest.mark.parametrize("name", ["junk.arrow", "junk.parquet", "junk.feather", "junk.csv"])
def test_a_file_that_is_not_what_its_name_says_is_refused(app, tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"\x00\x01PK garbage \xff\xfe" * 100)
    with pytest.raises(BadInput) as e:
        app.ingestion.ingest(p, "t", "id", "ts", ACTOR)
    assert str(e.value).startswith(str(p)) and e.value.message.count("\n") == 0
    assert app.features.column_types("t") is None


def test_a_huge_json_line_is_named(app, tmp_path):
    p = tmp_path / "huge.jsonl"
    p.write_text(json.dumps({"id": 1, "ts": "2025-01-01", "note": "a"}) + "\n"
                 + json.dumps({"id": 2, "ts": "2025-01-01", "note": "x" * (3 << 20)}) + "\n")  # fmt: skip
    with pytest.raises(BadInput, match=r"huge.jsonl: line 2 is longer than 1 MiB"):
        app.ingestion.ingest(p, "t", "id", "ts", ACTOR)
