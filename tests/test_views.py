"""A feature view's rows: columns, kernel transforms (checked against a brute-force
NumPy computation) and SQL views; the as_of, since and entities filters; SQL views that
try to do more than read feature tables; hostile column names."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from appliance.errors import BadInput, BadName
from kernels.transforms import hash_buckets
from tests.conftest import ACTOR

T0 = datetime(2025, 3, 1)
KEYS = ["customer_id", "_event_time", "_created_time", "_seq"]


def batch(seed: int, n: int = 300) -> pa.Table:
    """Five customers over 40 days: repeated event times, null amounts and channels."""
    rng = np.random.default_rng(seed)
    minutes = rng.integers(0, 40 * 24 * 60, n)
    minutes[: n // 10] = minutes[n // 10 : 2 * (n // 10)]  # equal event times
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    channel = rng.choice(["web", "store", "phone"], n).astype(object)
    channel[rng.random(n) < 0.1] = None
    return pa.table(
        {
            "customer_id": [f"c{k}" for k in rng.integers(0, 5, n)],
            "event_time": pa.array([T0 + timedelta(minutes=int(m)) for m in minutes]),
            "amount": pa.array(amount, mask=rng.random(n) < 0.08),
            "channel": pa.array(channel, pa.string()),
        }
    )


SPEND = """
views:
  spend:
    table: transactions
    columns: [amount]
    transforms:
      - {rolling: sum, column: amount, window: 7d, name: spend_7d}
      - {rolling: count, column: amount, window: 2d, name: n_2d}
      - {rolling: mean, column: amount, window: 30d, name: mean_30d}
      - {rolling: max, column: amount, window: 1d, name: max_1d}
      - {rolling: min, column: amount, window: 3h, name: min_3h}
      - {date_part: hour, column: event_time, name: hour}
      - {date_part: weekday, column: event_time, name: weekday}
      - {encode: hash, column: channel, buckets: 8, name: channel_bucket}
      - {encode: ordinal, column: channel, categories: [web, store], name: channel_code}
  profile:
    table: transactions
    ttl: 30d
  daily:
    sql: >
      SELECT customer_id, event_time,
             sum(amount) OVER (PARTITION BY customer_id ORDER BY event_time
                               RANGE BETWEEN INTERVAL 1 DAY PRECEDING AND CURRENT ROW) AS spend_1d,
             channel
      FROM transactions
    entity: customer_id
    event_time: event_time
"""


@pytest.fixture
def loaded(app):
    """Two ingest batches (the second ingested after ``mid``) and the views above."""
    app.ingestion.ingest(batch(1), "transactions", "customer_id", "event_time", ACTOR)
    mid = datetime.now(UTC).replace(tzinfo=None)
    app.ingestion.ingest(batch(2), "transactions", "customer_id", "event_time", ACTOR)
    path = app.home / "falaj.yaml"
    path.write_text(SPEND)
    app.views.apply(path, ACTOR)
    return app, mid


def sorted_rows(t: pa.Table) -> pa.Table:
    return t.sort_by([(c, "ascending") for c in KEYS])


def reference(rows: pa.Table) -> dict[str, list]:
    """Brute force: every window, date part and code computed row by row in NumPy."""
    ent = np.array(rows.column("customer_id").to_pylist())
    t = rows.column("_event_time").to_numpy().astype("datetime64[us]")
    amount = rows.column("amount").to_numpy(zero_copy_only=False).astype(float)
    channel = rows.column("channel").to_pylist()
    out: dict[str, list] = {k: [] for k in ("spend_7d", "n_2d", "mean_30d", "max_1d", "min_3h")}
    for i in range(len(t)):

        def window(span: np.timedelta64, i: int = i) -> np.ndarray:
            inside = (ent == ent[i]) & (t > t[i] - span) & (t <= t[i])
            v = amount[inside]
            return v[~np.isnan(v)]

        out["spend_7d"].append(float(window(np.timedelta64(7, "D")).sum()))
        out["n_2d"].append(len(window(np.timedelta64(2, "D"))))
        for name, span, fn in (("mean_30d", 30, np.mean), ("max_1d", 1, np.max)):
            v = window(np.timedelta64(span, "D"))
            out[name].append(float(fn(v)) if len(v) else None)
        v = window(np.timedelta64(3, "h"))
        out["min_3h"].append(float(v.min()) if len(v) else None)
    stamps = rows.column("_event_time").to_pylist()
    out["hour"] = [s.hour for s in stamps]
    out["weekday"] = [s.weekday() for s in stamps]
    codes = {"web": 0, "store": 1}
    out["channel_code"] = [codes.get(c) if c is not None else None for c in channel]
    buckets = hash_buckets(np.array(channel, dtype=object), 8, 0, backend="reference")
    out["channel_bucket"] = [int(b) if b >= 0 else None for b in buckets]
    return out


def close(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        (g is None and w is None) or (g is not None and w is not None and abs(g - w) < 1e-9)
        for g, w in zip(got, want, strict=True)
    )


def test_transform_values_match_a_brute_force_computation(loaded):
    app, _ = loaded
    view = app.views.resolve("spend", ACTOR)
    rows = app.views.feature_rows(view, ACTOR)
    assert rows.column_names == [*KEYS, "amount", "spend_7d", "n_2d", "mean_30d", "max_1d",
                                 "min_3h", "hour", "weekday", "channel_bucket",
                                 "channel_code"]  # fmt: skip
    assert rows.num_rows == 600
    assert rows.schema.field("_event_time").type == pa.timestamp("us")
    assert rows.schema.field("_seq").type == pa.int64()
    assert rows.schema.field("n_2d").type == pa.int64()
    # The channel comes along for the reference only: read it from the source table.
    source = app.views.feature_rows(app.views.resolve("profile", ACTOR), ACTOR)
    joined = sorted_rows(rows).join(source.select(["_seq", "channel"]), "_seq")
    joined = sorted_rows(joined)
    want = reference(joined)
    for name, values in want.items():
        assert close(joined.column(name).to_pylist(), values), name


def test_column_view_rows_carry_keys_and_ingest_order(loaded):
    app, mid = loaded
    view = app.views.resolve("profile", ACTOR)
    assert view.features == {"amount": "DOUBLE", "channel": "VARCHAR"}
    assert view.ttl == timedelta(days=30)
    rows = app.views.feature_rows(view, ACTOR)
    assert rows.column_names == [*KEYS, "amount", "channel"]
    assert rows.num_rows == 600
    seq = rows.column("_seq").to_numpy()
    assert len(np.unique(seq)) == 600
    created = rows.column("_created_time").to_pylist()
    first = [s for s, c in zip(seq, created, strict=True) if c <= mid]
    second = [s for s, c in zip(seq, created, strict=True) if c > mid]
    assert len(first) == len(second) == 300
    assert max(first) < min(second)
    # Values are the ingested ones, row for row.
    source = pa.concat_tables([batch(1), batch(2)])
    got = sorted(zip(rows.column("customer_id").to_pylist(),
                     rows.column("_event_time").to_pylist(),
                     rows.column("amount").to_pylist(), strict=True),
                 key=repr)  # fmt: skip
    want = sorted(zip(source.column("customer_id").to_pylist(),
                      source.column("event_time").to_pylist(),
                      source.column("amount").to_pylist(), strict=True),
                  key=repr)  # fmt: skip
    assert got == want


def test_as_of_sees_only_rows_ingested_by_then(loaded):
    app, mid = loaded
    profile = app.views.resolve("profile", ACTOR)
    rows = app.views.feature_rows(profile, ACTOR, as_of=mid)
    assert rows.num_rows == 300
    assert max(rows.column("_created_time").to_pylist()) <= mid
    assert app.views.feature_rows(profile, ACTOR, as_of=datetime(2000, 1, 1)).num_rows == 0
    aware = mid.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Dubai"))
    assert app.views.feature_rows(profile, ACTOR, as_of=aware).num_rows == 300
    # Transforms are computed over the rows visible as of then, not over all of them.
    spend = sorted_rows(app.views.feature_rows(app.views.resolve("spend", ACTOR), ACTOR, as_of=mid))
    assert spend.num_rows == 300
    want = reference(spend.append_column("channel", pa.nulls(300, pa.string())))
    assert close(spend.column("spend_7d").to_pylist(), want["spend_7d"])
    # An SQL view sees its tables as of then too: its windows hold only the first batch.
    daily = app.views.feature_rows(app.views.resolve("daily", ACTOR), ACTOR, as_of=mid)
    assert daily.num_rows == 300
    for row in daily.slice(0, 40).to_pylist():
        assert close([row["spend_1d"]], [spend_1d(batch(1), row)])


def spend_1d(src: pa.Table, row: dict) -> float | None:
    """The customer's amounts over the day up to the row's time, by brute force."""
    ent = np.array(src.column("customer_id").to_pylist())
    t = src.column("event_time").to_numpy().astype("datetime64[us]")
    amt = src.column("amount").to_numpy(zero_copy_only=False).astype(float)
    ts = np.datetime64(row["_event_time"], "us")
    inside = (ent == row["customer_id"]) & (t >= ts - np.timedelta64(1, "D")) & (t <= ts)
    values = amt[inside][~np.isnan(amt[inside])]
    return float(values.sum()) if len(values) else None  # SQL's sum of no values is null


def test_since_and_entities_filter_without_changing_values(loaded):
    app, _ = loaded
    since = T0 + timedelta(days=20)
    for name in ("profile", "spend", "daily"):
        view = app.views.resolve(name, ACTOR)
        full = sorted_rows(app.views.feature_rows(view, ACTOR))
        part = sorted_rows(app.views.feature_rows(view, ACTOR, since=since,
                                                  entities=pa.array(["c1", "c3"])))  # fmt: skip
        keep = pc.and_(pc.greater_equal(full.column("_event_time"),
                                        pa.scalar(since, pa.timestamp("us"))),
                       pc.is_in(full.column("customer_id"), pa.array(["c1", "c3"])))  # fmt: skip
        want = full.filter(keep)
        assert part.num_rows == want.num_rows > 0, name
        assert set(part.column("customer_id").to_pylist()) == {"c1", "c3"}
        assert part.equals(want), name  # the same values: windows still see earlier rows
    only = app.views.feature_rows(app.views.resolve("profile", ACTOR), ACTOR, entities=["c0"])
    assert set(only.column("customer_id").to_pylist()) == {"c0"}
    assert app.views.feature_rows(app.views.resolve("profile", ACTOR), ACTOR,
                                  entities=["nobody"]).num_rows == 0  # fmt: skip
    with pytest.raises(BadInput, match="since: 'yesterday' is not an ISO time"):
        app.views.feature_rows(app.views.resolve("profile", ACTOR), ACTOR, since="yesterday")


def test_sql_view_rows_are_deterministic(loaded):
    app, _ = loaded
    view = app.views.resolve("daily", ACTOR)
    assert view.features == {"spend_1d": "DOUBLE", "channel": "VARCHAR"}
    a = app.views.feature_rows(view, ACTOR)
    b = app.views.feature_rows(view, ACTOR)
    assert a.column_names == [*KEYS, "spend_1d", "channel"]
    assert sorted_rows(a).equals(sorted_rows(b))  # the same rows (in any order)
    keys = list(zip(a.column("customer_id").to_pylist(), a.column("_seq").to_pylist(), strict=True))
    assert len(set(keys)) == a.num_rows == 600  # unique within each entity
    # No declared created time: the event time stands in.
    assert a.column("_created_time").equals(a.column("_event_time"))
    # Values checked by brute force: the sum of the customer's amounts over the last day.
    src = pa.concat_tables([batch(1), batch(2)])
    for row in a.slice(0, 60).to_pylist():
        assert close([row["spend_1d"]], [spend_1d(src, row)])


REFUSED = [
    ("CREATE TABLE x AS SELECT * FROM transactions", "must be a SELECT statement, not CREATE"),
    ("DELETE FROM transactions", "must be a SELECT statement, not DELETE"),
    ("INSERT INTO transactions SELECT * FROM transactions", "not INSERT"),
    ("UPDATE transactions SET amount = 0", "not UPDATE"),
    ("DROP TABLE transactions", "not DROP"),
    ("COPY transactions TO 'out.csv'", "not COPY"),
    ("ATTACH 'other.duckdb' AS o", "not ATTACH"),
    ("PRAGMA database_list", "must be a plain SELECT statement"),
    ("SELECT * FROM transactions; DROP TABLE transactions", "exactly one SELECT statement, got 2"),
    ("SELECT * FROM _ingests", "may not read the internal table '_ingests'"),
    ("SELECT t.* FROM transactions t JOIN _tables USING (table_name)", "internal table '_tables'"),
    ("SELECT * FROM fs.main.transactions", "not 'fs.main.transactions'"),
    ("SELECT * FROM information_schema.tables", "not 'information_schema.tables'"),
    ("SELECT * FROM read_csv('/etc/passwd')", "not the table function read_csv()"),
    ("SELECT * FROM duckdb_tables()", "not the table function duckdb_tables()"),
    ("SELECT customer_id, event_time, amount FROM transactions "
     "WHERE customer_id IN (SELECT column0 FROM read_text('/etc/hostname'))", "read_text()"),
    ("SELECT * FROM '/etc/passwd'", "neither a declared nor an ingested feature table"),
    ("SELEC * FROM transactions", "does not parse"),
    ("DESCRIBE transactions", "not DESCRIBE, SHOW or SUMMARIZE"),
    ("SUMMARIZE transactions", "not DESCRIBE, SHOW or SUMMARIZE"),
    ("SELECT * FROM (PIVOT transactions ON channel USING sum(amount))", "exactly one SELECT"),
    ("SELECT * FROM transactions AT (VERSION => 1)", "AT (time travel) is not supported"),
]  # fmt: skip


@pytest.mark.parametrize("sql,message", REFUSED, ids=[s[:30] for s, _ in REFUSED])
def test_sql_views_only_read_feature_tables(app, sql, message):
    app.ingestion.ingest(batch(1, 10), "transactions", "customer_id", "event_time", ACTOR)
    path = app.home / "bad.yaml"
    path.write_text(
        "views:\n  bad:\n    sql: " + json.dumps(sql) + "\n"
        "    entity: customer_id\n    event_time: event_time\n"
    )
    before = (app.control.audit_count(), app.features.row_count("transactions"))
    with pytest.raises(BadInput) as info:
        app.views.apply(path, ACTOR)
    assert message in info.value.message
    assert f"{path}: views: bad: sql: " in info.value.message
    assert (app.control.audit_count(), app.features.row_count("transactions")) == before
    assert app.features.table_names() == ["transactions"]


def test_sql_view_output_columns_are_checked(loaded):
    app, _ = loaded
    path = app.home / "bad.yaml"
    cases = {
        "SELECT customer_id, event_time FROM transactions": "no feature columns",
        "SELECT customer_id, event_time, amount AS _x FROM transactions": "'_x': names starting",
        "SELECT customer_id AS who, event_time, amount FROM transactions": "no entity column",
        # a comment at the end cannot swallow what the view is wrapped in
        "SELECT customer_id, event_time, amount FROM transactions --": None,
    }
    for sql, message in cases.items():
        path.write_text(f"views:\n  v:\n    sql: {sql!r}\n    entity: customer_id\n"
                        "    event_time: event_time\n")  # fmt: skip
        if message is None:
            assert app.views.apply(path, ACTOR)["changed"] is True
            rows = app.views.feature_rows(app.views.resolve("v", ACTOR), ACTOR)
            assert rows.column_names == [*KEYS, "amount"]
            continue
        with pytest.raises(BadInput, match=message):
            app.views.apply(path, ACTOR)


HOSTILE = ['amount"; DROP TABLE transactions; --', "select", "Ünï côdé", "a'b", "spaced out"]


def test_hostile_column_names_are_quoted_everywhere(app):
    n = 30
    data = {"id": [i % 3 for i in range(n)],
            "ts": pa.array([T0 + timedelta(hours=i) for i in range(n)])}  # fmt: skip
    for k, name in enumerate(HOSTILE):
        data[name] = [float(i * (k + 1)) for i in range(n)]
    app.ingestion.ingest(pa.table(data), "weird", "id", "ts", ACTOR)
    app.views.define("weird_all", "weird", ACTOR)
    view = app.views.resolve("weird_all", ACTOR)
    assert list(view.features) == HOSTILE
    rows = app.views.feature_rows(view, ACTOR, entities=[1, 2])
    assert rows.column_names == ["id", *KEYS[1:], *HOSTILE]
    assert sorted(rows.column(HOSTILE[0]).to_pylist()) == [float(i) for i in range(n) if i % 3]
    path = app.home / "w.yaml"
    path.write_text(
        "views:\n  weird_roll:\n    table: weird\n    transforms:\n"
        f"      - {{rolling: sum, column: {HOSTILE[0]!r}, window: 2h, name: s}}\n"
        "  weird_sql:\n"
        "    sql: 'SELECT id, ts, \"select\" + \"a''b\" AS total FROM weird'\n"
        "    entity: id\n    event_time: ts\n"
    )
    app.views.apply(path, ACTOR)
    roll = sorted_rows(app.views.feature_rows(app.views.resolve("weird_roll", ACTOR), ACTOR)
                       .rename_columns(["customer_id", *KEYS[1:], "s"]))  # fmt: skip
    # an id's rows are 3 hours apart: a 2-hour window holds only the row itself
    assert roll.column("s").to_pylist() == sorted(
        [float(i) for i in range(n)], key=lambda v: (int(v) % 3, v)
    )
    total = app.views.feature_rows(app.views.resolve("weird_sql", ACTOR), ACTOR)
    assert sorted(total.column("total").to_pylist()) == [float(i * 2 + i * 4) for i in range(n)]
    assert app.features.row_count("weird") == n


def test_hostile_view_and_table_names_are_refused(app):
    app.ingestion.ingest(batch(1, 10), "transactions", "customer_id", "event_time", ACTOR)
    for name in ('x"; DROP TABLE transactions; --', "_hidden", "a-b", "", "x" * 64):
        with pytest.raises(BadName):
            app.views.define(name, "transactions", ACTOR)
    with pytest.raises(BadName):
        app.views.define("ok", 'transactions"; --', ACTOR)
    with pytest.raises(BadInput, match="view 'ok': columns: '_batch_id' is not a column name"):
        app.views.define("ok", "transactions", ACTOR, columns="_batch_id")
    with pytest.raises(BadInput):
        app.views.resolve('x"; DROP TABLE transactions; --', ACTOR)
    assert app.views.list(ACTOR) == []
    assert app.features.row_count("transactions") == 10


def test_feature_rows_of_a_table_without_data_fail_clearly(app):
    path = app.home / "falaj.yaml"
    path.write_text(
        "tables:\n  later:\n    entity: customer_id\n    event_time: event_time\n"
        "    contract: {columns: {amount: {type: DOUBLE}}}\n"
        "views:\n  v:\n    table: later\n    columns: [amount]\n"
        "  s:\n    sql: SELECT customer_id, event_time, amount FROM later\n"
        "    entity: customer_id\n    event_time: event_time\n"
    )
    app.views.apply(path, ACTOR)
    # the contract gives the column's type before any data
    assert app.views.resolve("v", ACTOR).features == {"amount": "DOUBLE"}
    with pytest.raises(BadInput, match="table 'later' has no data yet"):
        app.views.feature_rows(app.views.resolve("v", ACTOR), ACTOR)
    with pytest.raises(BadInput, match="view s@1: table 'later' has no data yet"):
        app.views.resolve("s", ACTOR)
    app.ingestion.ingest(batch(3, 20), "later", "customer_id", "event_time", ACTOR)
    s = app.views.resolve("s", ACTOR)
    assert s.features == {"amount": "DOUBLE"}
    assert app.views.feature_rows(s, ACTOR).num_rows == 20


def test_a_created_time_column_is_the_rows_created_time(app):
    t = batch(4, 20)
    t = t.append_column(
        "created_at", pa.array([T0 + timedelta(days=50, minutes=i) for i in range(20)])
    )
    app.ingestion.ingest(t, "late", "customer_id", "event_time", ACTOR, created="created_at")
    app.views.define("late_all", "late", ACTOR)
    view = app.views.resolve("late_all", ACTOR)
    assert list(view.features) == ["amount", "channel"]  # the keys are not features
    assert view.definition["created_time"] == "created_at"
    rows = app.views.feature_rows(view, ACTOR)
    assert sorted(rows.column("_created_time").to_pylist()) == sorted(
        t.column("created_at").to_pylist()
    )
    path = app.home / "falaj.yaml"
    path.write_text(
        "tables:\n  late: {entity: customer_id, event_time: event_time}\n"
        "views:\n  v: {table: late}\n"
    )
    with pytest.raises(BadInput, match="declared with created time None, but was ingested with "
                       "'created_at'"):  # fmt: skip
        app.views.apply(path, ACTOR)
    assert [v["view"] for v in app.views.list(ACTOR)] == ["late_all"]


def test_sql_view_rows_without_an_event_time_are_left_out(app):
    app.ingestion.ingest(batch(5, 50), "transactions", "customer_id", "event_time", ACTOR)
    path = app.home / "falaj.yaml"
    path.write_text(
        "views:\n  big:\n    sql: SELECT customer_id, CASE WHEN amount > 60 THEN event_time END"
        " AS at, amount FROM transactions\n    entity: customer_id\n    event_time: at\n"
    )
    app.views.apply(path, ACTOR)
    rows = app.views.feature_rows(app.views.resolve("big", ACTOR), ACTOR)
    amounts = [a for a in batch(5, 50).column("amount").to_pylist() if a is not None and a > 60]
    assert sorted(rows.column("amount").to_pylist()) == sorted(amounts)
    assert rows.column("_event_time").null_count == 0
