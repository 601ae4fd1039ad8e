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
