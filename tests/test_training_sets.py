"""Point-in-time training sets through the real stores: views over ingested tables, the
join checked against a brute-force Python reference, as-of and rebuilds, view versions,
the spine kept as given, names that collide, missing columns, the registry and the CLI.

The join kernel's own edge cases are the point-in-time engine's tests; these cover the
plumbing from a spine and feature references to a registered file."""

import json
import random
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from appliance.errors import BadInput, NotFound
from appliance.features.training_sets import table_sha256
from tests.conftest import ACTOR

T0 = datetime(2024, 1, 1)
CUSTOMER_TTL = timedelta(days=10)


def hours(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def ts(values) -> pa.Array:
    return pa.array(values, pa.timestamp("us"))


class Table:
    """A feature table as ingested: rows in ingest order, each with (batch, row) order."""

    def __init__(self, entity: str, features: list[str]) -> None:
        self.entity = entity
        self.features = features
        self.rows: list[dict] = []
        self.batches = 0

    def ingest(self, app, name: str, rows: list[dict]) -> None:
        table = pa.table(
            {self.entity: [r[self.entity] for r in rows],
             "event_time": ts([r["event_time"] for r in rows]),
             **{f: pa.array([r[f] for r in rows], pa.float64()) for f in self.features}}
        )  # fmt: skip
        app.ingestion.ingest(table, name, self.entity, "event_time", ACTOR)
        for i, r in enumerate(rows):
            self.rows.append(r | {"_order": (self.batches, i)})
        self.batches += 1

    def seen(self, entity, at: datetime | None, ttl: timedelta | None, batches: int | None = None):
        """The brute-force answer: the row the contract says a spine row sees."""
        if entity is None or at is None:
            return None
        found = [
            r for r in self.rows
            if r[self.entity] == entity and r["event_time"] <= at
            and (ttl is None or r["event_time"] >= at - ttl)
            and (batches is None or r["_order"][0] < batches)
        ]  # fmt: skip
        return max(found, key=lambda r: (r["event_time"], r["_order"])) if found else None


def generate(app, seed: int = 11):
    """Two tables and their views: customers (text keys, TTL 10 days) and merchants
    (integer keys, no TTL), with nulls, equal event times and entities without rows."""
    rng = random.Random(seed)
    customers = Table("customer_id", ["spend", "visits"])
    merchants = Table("merchant_id", ["risk", "spend"])

    def rows(table: Table, keys, per_key: int, ties_with=()) -> list[dict]:
        out = []
        for k in keys:
            times = [hours(rng.randrange(0, 24 * 200)) for _ in range(per_key)]
            if rng.random() < 0.5:
                times.append(times[0])  # an equal event time within the batch
            for t in times:
                out.append({table.entity: k, "event_time": t,
                            **{f: None if rng.random() < 0.08 else round(rng.uniform(0, 100), 3)
                               for f in table.features}})  # fmt: skip
        for r in ties_with:  # equal event times across batches: the later ingest wins
            out.append(r | {f: round(rng.uniform(100, 200), 3) for f in table.features})
        rng.shuffle(out)
        return out

    cust_keys = [f"c{i}" for i in range(30)]  # c30..c39 have no rows
    customers.ingest(app, "customers", rows(customers, cust_keys, 5))
    again = [{k: v for k, v in r.items() if k != "_order"} for r in customers.rows[:10]]
    customers.ingest(app, "customers", rows(customers, cust_keys[:5], 2, ties_with=again))
    merchants.ingest(app, "merchants", rows(merchants, range(1, 13), 4))
    app.views.define("cust", "customers", ACTOR, ttl=CUSTOMER_TTL)
    app.views.define("merch", "merchants", ACTOR)
    return rng, customers, merchants


def spine_for(rng, customers: Table, merchants: Table, n: int = 400) -> pa.Table:
    """Spine times at feature rows' exact event times, at the TTL's edge and one second
    past it, before an entity's first row, and at random; duplicates and extra columns."""
    cust = [f"c{i}" for i in range(40)]
    rows = []
    for i in range(n):
        c = rng.choice(cust)
        own = [r["event_time"] for r in customers.rows if r["customer_id"] == c]
        kind = rng.randrange(5)
        if own and kind == 0:
            t = rng.choice(own)
        elif own and kind == 1:
            t = rng.choice(own) + CUSTOMER_TTL
        elif own and kind == 2:
            t = rng.choice(own) + CUSTOMER_TTL + timedelta(seconds=1)
        elif own and kind == 3:
            t = min(own) - timedelta(seconds=1)
        else:
            t = hours(rng.randrange(-24 * 5, 24 * 220))
        rows.append({"label": i % 2, "customer_id": c, "note": f"row {i}", "event_timestamp": t,
                     "merchant_id": rng.randrange(1, 16)})  # fmt: skip
    rows += rows[:7]  # duplicate spine rows stay
    rows.append({"label": 1, "customer_id": "c1", "note": "no time", "event_timestamp": None,
                 "merchant_id": 3})  # fmt: skip
    return pa.table({
        "label": pa.array([r["label"] for r in rows], pa.int64()),
        "customer_id": [r["customer_id"] for r in rows],
        "note": [r["note"] for r in rows],
        "event_timestamp": ts([r["event_timestamp"] for r in rows]),
        "merchant_id": pa.array([r["merchant_id"] for r in rows], pa.int64()),
    })  # fmt: skip


@pytest.fixture
def data(app):
    rng, customers, merchants = generate(app)
    return app, spine_for(rng, customers, merchants), customers, merchants


def test_two_views_match_the_brute_force_reference(data, tmp_path):
    app, spine, customers, merchants = data
    out = tmp_path / "train.parquet"
    r = app.training_sets.build(
        spine, ["cust:spend", "cust:visits", "merch:risk"], ACTOR, out=out, full_names=False
    )
    got = pq.read_table(out)
    assert got.column_names == spine.column_names + ["spend", "visits", "risk"]
    assert got.select(spine.column_names).equals(spine)  # every spine row, in order
    assert r["rows"] == spine.num_rows == got.num_rows
    checked = {"cust": 0, "merch": 0, "none": 0}
    for row in got.to_pylist():
        c = customers.seen(row["customer_id"], row["event_timestamp"], CUSTOMER_TTL)
        m = merchants.seen(row["merchant_id"], row["event_timestamp"], None)
        assert (row["spend"], row["visits"]) == (
            (c["spend"], c["visits"]) if c else (None, None)
        ), row
        assert row["risk"] == (m["risk"] if m else None), row
        checked["cust"] += c is not None
        checked["merch"] += m is not None
        checked["none"] += c is None
    # the cases the reference was built to reach are reached
    assert min(checked.values()) > 20, checked


def test_full_names_all_columns_and_progress(data, tmp_path):
    app, spine, customers, merchants = data
    out = tmp_path / "train.parquet"
    steps = []
    app.training_sets.build(spine, ["cust:*", "merch:*"], ACTOR, out=out, full_names=True,
                            progress=lambda done, total, what: steps.append((done, total, what)))  # fmt: skip
    assert steps == [(0, 2, "joining cust@1"), (1, 2, "joining merch@1"), (2, 2, "done")]
    got = pq.read_table(out)
    names = ["cust__spend", "cust__visits", "merch__risk", "merch__spend"]
    assert got.column_names == spine.column_names + names
    for row in got.to_pylist():
        m = merchants.seen(row["merchant_id"], row["event_timestamp"], None)
        c = customers.seen(row["customer_id"], row["event_timestamp"], CUSTOMER_TTL)
        assert row["merch__spend"] == (m["spend"] if m else None)
        assert row["cust__spend"] == (c["spend"] if c else None)


def test_as_of_ignores_a_later_ingest_and_a_rebuild_matches(data, tmp_path):
    app, spine, customers, merchants = data
    first = app.training_sets.build(spine, ["cust:spend"], ACTOR, out=tmp_path / "a.parquet")
    before = pq.read_table(tmp_path / "a.parquet").column("spend").to_pylist()
    # a later ingest that changes what most spine rows see: a row at every spine time
    late = [{"customer_id": c, "event_time": t, "spend": -1.0, "visits": -1.0}
            for c, t in zip(spine.column("customer_id").to_pylist(),
                            spine.column("event_timestamp").to_pylist(), strict=True)
            if t is not None]  # fmt: skip
    customers.ingest(app, "customers", late)
    rebuilt = app.training_sets.rebuild(first["id"], ACTOR, tmp_path / "b.parquet", spine=spine)
    assert rebuilt["matches"] is True
    assert rebuilt["file_sha256"] == first["file_sha256"]
    assert (tmp_path / "b.parquet").read_bytes() == (tmp_path / "a.parquet").read_bytes()
    # the same as-of given explicitly sees the same; now sees the late rows
    again = app.training_sets.build(spine, ["cust:spend"], ACTOR, out=tmp_path / "c.parquet",
                                    as_of=first["as_of"])  # fmt: skip
    assert again["fingerprint"] == first["fingerprint"]
    assert again["file_sha256"] == first["file_sha256"]
    now = app.training_sets.build(spine, ["cust:spend"], ACTOR, out=tmp_path / "d.parquet")
    after = pq.read_table(tmp_path / "d.parquet").column("spend").to_pylist()
    assert now["fingerprint"] != first["fingerprint"]
    assert after.count(-1.0) == len(late) and before.count(-1.0) == 0
    expected = [
        (lambda s: s["spend"] if s else None)(customers.seen(c, t, CUSTOMER_TTL, batches=2))
        for c, t in zip(spine.column("customer_id").to_pylist(),
                        spine.column("event_timestamp").to_pylist(), strict=True)
    ]  # fmt: skip
    assert before == expected


def test_a_rebuild_from_the_recorded_spine_file(data, tmp_path):
    app, spine, customers, merchants = data
    pq.write_table(spine, tmp_path / "spine.parquet")
    first = app.training_sets.build(tmp_path / "spine.parquet", ["cust:spend", "merch:risk"],
                                    ACTOR, out=tmp_path / "a.csv")  # fmt: skip
    assert first["spine_sha256"] == table_sha256(spine)
    assert app.training_sets.rebuild(first["id"], ACTOR, tmp_path / "b.csv")["matches"]
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "a.csv").read_bytes()
    # a changed spine file cannot pass for the recorded one
    pq.write_table(spine.slice(1), tmp_path / "spine.parquet")
    with pytest.raises(BadInput, match="spine .* has changed"):
        app.training_sets.rebuild(first["id"], ACTOR, tmp_path / "c.csv")
    assert not (tmp_path / "c.csv").exists()


def test_version_1_of_a_view_after_version_2_exists(app, tmp_path):
    table = Table("customer_id", ["spend"])
    table.ingest(app, "customers", [
        {"customer_id": "a", "event_time": hours(0), "spend": 1.0},
        {"customer_id": "a", "event_time": hours(24 * 20), "spend": 2.0},
    ])  # fmt: skip
    app.views.define("cust", "customers", ACTOR)  # v1: no TTL
    app.views.define("cust", "customers", ACTOR, ttl=timedelta(days=5))  # v2
    assert app.views.resolve("cust", ACTOR).version == 2
    spine = pa.table({"customer_id": ["a", "a"], "event_timestamp": ts([hours(24 * 10),
                                                                        hours(24 * 30)])})  # fmt: skip
    out = tmp_path / "t.parquet"
    r = app.training_sets.build(spine, ["cust@1:spend"], ACTOR, out=out)
    assert pq.read_table(out).column("spend").to_pylist() == [1.0, 2.0]  # no TTL in v1
    assert r["features"] == ["cust@1:spend"]
    assert [v["ref"] for v in r["views"]] == ["cust@1"]
    r2 = app.training_sets.build(spine, ["cust:spend"], ACTOR, out=out)
    assert pq.read_table(out).column("spend").to_pylist() == [None, None]  # v2: 5-day TTL
    assert r2["features"] == ["cust@2:spend"]
    assert r2["views"][0]["fingerprint"] != r["views"][0]["fingerprint"]
    # both versions at once need full names: they are the same column
    with pytest.raises(BadInput, match=r"cust@2:spend would be named 'spend'.*cust@1:spend"):
        app.training_sets.build(spine, ["cust@1:spend", "cust@2:spend"], ACTOR, out=out)


def test_names_that_collide_are_refused_naming_both(data, tmp_path):
    app, spine, customers, merchants = data
    out = tmp_path / "t.parquet"
    with pytest.raises(BadInput, match=r"merch@1:spend would be named 'spend'.*cust@1:spend"):
        app.training_sets.build(spine, ["cust:spend", "merch:spend"], ACTOR, out=out)
    with pytest.raises(BadInput, match=r"cust@1:spend .*'spend'.*the spine column 'spend'"):
        app.training_sets.build(spine.append_column("spend", pa.array([0] * spine.num_rows)),
                                ["cust:spend"], ACTOR, out=out)  # fmt: skip
    with pytest.raises(BadInput, match="'cust__spend'.*the spine column 'cust__spend'"):
        app.training_sets.build(spine.rename_columns([*spine.column_names[:2], "cust__spend",
                                                      *spine.column_names[3:]]),
                                ["cust:spend"], ACTOR, out=out, full_names=True)  # fmt: skip
    assert not out.exists()
    assert app.training_sets.list(ACTOR) == []


def test_missing_spine_columns_are_named_with_the_view(data, tmp_path):
    app, spine, customers, merchants = data
    out = tmp_path / "t.parquet"
    with pytest.raises(
        BadInput, match=r"no column 'merchant_id', the entity column of view merch@1"
    ):
        app.training_sets.build(spine.drop_columns(["merchant_id"]), ["cust:spend", "merch:risk"],
                                ACTOR, out=out)  # fmt: skip
    with pytest.raises(BadInput, match="no timestamp column 'ts'"):
        app.training_sets.build(spine, ["cust:spend"], ACTOR, out=out, timestamp="ts")
    with pytest.raises(BadInput, match="view cust@1 has no column 'nope'"):
        app.training_sets.build(spine, ["cust:nope"], ACTOR, out=out)
    with pytest.raises(BadInput, match="'cust' is not a feature reference"):
        app.training_sets.build(spine, ["cust"], ACTOR, out=out)
    with pytest.raises(BadInput, match="unknown file type '.json'"):
        app.training_sets.build(spine, ["cust:spend"], ACTOR, out=tmp_path / "t.json")


def test_a_failed_build_leaves_the_old_file_and_no_temporary(data, tmp_path):
    app, spine, customers, merchants = data
    out = tmp_path / "t.parquet"
    out.write_bytes(b"the previous set")
    with pytest.raises(BadInput):
        app.training_sets.build(spine, ["cust:spend", "cust:spend"], ACTOR, out=out)
    assert out.read_bytes() == b"the previous set"
    app.training_sets.build(spine, ["cust:spend"], ACTOR, out=out)
    assert pq.read_table(out).num_rows == spine.num_rows
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_registered_with_one_audit_event_and_found_by_file(data, tmp_path):
    app, spine, customers, merchants = data
    events = app.control.audit_action_count("features.training_set.build")
    r = app.training_sets.build(spine, ["cust:spend", "merch:risk"], ACTOR,
                                out=tmp_path / "t.parquet", as_of="2030-01-01T00:00:00Z")  # fmt: skip
    assert app.control.audit_action_count("features.training_set.build") == events + 1
    event = app.control.audit_find("features.training_set.build", r["id"])
    assert len(event) == 1
    assert event[0]["details"]["fingerprint"] == r["fingerprint"]
    assert event[0]["details"]["file_sha256"] == r["file_sha256"]
    assert r["as_of"] == "2030-01-01T00:00:00.000000Z"
    shown = app.training_sets.show(r["id"], ACTOR)
    assert shown["fingerprint"] == r["fingerprint"]
    assert shown["views"] == [{"ref": "cust@1", "fingerprint": app.views.resolve("cust", ACTOR)
                               .fingerprint}, {"ref": "merch@1", "fingerprint":
                               app.views.resolve("merch", ACTOR).fingerprint}]  # fmt: skip
    assert shown["columns"] == spine.column_names + ["spend", "risk"]
    assert [x["id"] for x in app.training_sets.list(ACTOR)] == [r["id"]]
    copy = tmp_path / "copy.parquet"
    copy.write_bytes((tmp_path / "t.parquet").read_bytes())
    assert app.training_sets.find_by_file(copy, ACTOR)["id"] == r["id"]
    pq.write_table(spine, tmp_path / "other.parquet")
    assert app.training_sets.find_by_file(tmp_path / "other.parquet", ACTOR) is None
    with pytest.raises(NotFound):
        app.training_sets.show("nope", ACTOR)
    # the fingerprint depends on each part: flags, spine, as-of
    other = app.training_sets.build(spine, ["cust:spend", "merch:risk"], ACTOR,
                                    out=tmp_path / "u.parquet", as_of="2030-01-01T00:00:00Z",
                                    created_cutoff=True)  # fmt: skip
    assert other["fingerprint"] != r["fingerprint"]


def test_pandas_and_polars_spines_hash_like_arrow(data, tmp_path):
    app, spine, customers, merchants = data
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    assert isinstance(spine.to_pandas(), pd.DataFrame)
    a = app.training_sets.build(spine, ["cust:spend"], ACTOR, out=tmp_path / "a.parquet",
                                as_of="2030-01-01")  # fmt: skip
    b = app.training_sets.build(pl.from_arrow(spine), ["cust:spend"], ACTOR,
                                out=tmp_path / "b.parquet", as_of="2030-01-01")  # fmt: skip
    assert a["spine_sha256"] == b["spine_sha256"] and a["fingerprint"] == b["fingerprint"]
    c = app.training_sets.build(spine.drop_columns(["event_timestamp"]).append_column(
        "event_timestamp", spine.column("event_timestamp")).to_pandas(), ["cust:spend"], ACTOR,
        out=tmp_path / "c.parquet", as_of="2030-01-01")  # fmt: skip
    got = pq.read_table(tmp_path / "c.parquet")
    assert got.column("spend").to_pylist() == pq.read_table(tmp_path / "a.parquet").column(
        "spend").to_pylist()  # fmt: skip
    assert c["spine_sha256"] != a["spine_sha256"]  # columns in another order: another spine


def test_the_cli_builds_from_csv_lists_and_rebuilds(data, falaj, tmp_path):
    app, spine, customers, merchants = data
    app.close()
    spine_csv = tmp_path / "spine.csv"
    pacsv.write_csv(spine.drop_columns(["note"]), spine_csv)
    out = tmp_path / "train.csv"
    r = falaj.ok("features", "training-set", "--spine", spine_csv, "--features",
                 "cust:spend,merch:risk", "--out", out, "--json")  # fmt: skip
    record = json.loads(r.output)
    assert record["rows"] == spine.num_rows
    got = pacsv.read_csv(out)
    assert got.column_names == [c for c in spine.column_names if c != "note"] + ["spend", "risk"]
    for row, want in zip(got.to_pylist(), spine.to_pylist(), strict=True):
        c = customers.seen(want["customer_id"], want["event_timestamp"], CUSTOMER_TTL)
        assert row["spend"] == (c["spend"] if c else None)
    listed = json.loads(falaj.ok("features", "training-sets", "--json").output)
    assert [x["id"] for x in listed] == [record["id"]]
    again = falaj.ok("features", "training-sets", record["id"], "--rebuild", tmp_path / "again.csv")
    assert "matches" in again.output
    bad = falaj("features", "training-set", "--spine", spine_csv, "--features", "cust:nope",
                "--out", tmp_path / "x.csv")  # fmt: skip
    assert bad.exit_code == 2 and "cust@1 has no column 'nope'" in bad.stderr
    missing = falaj("features", "training-set", "--spine", tmp_path / "none.csv", "--features",
                    "cust:spend", "--out", tmp_path / "x.csv")  # fmt: skip
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_created_times_break_ties_and_the_cutoff_hides_backfills(app, tmp_path):
    """A table naming its created-time column: equal event times go to the later created
    time (whatever the ingest order), and created_cutoff hides rows created after the
    spine time (a backfill) that would otherwise leak."""
    rows = pa.table({
        "customer_id": ["a", "a", "a", "b"],
        "event_time": ts([hours(0), hours(10), hours(10), hours(0)]),
        "created": ts([hours(0), hours(30), hours(12), hours(24 * 9)]),
        "spend": [1.0, 2.0, 3.0, 4.0],
    })  # fmt: skip
    app.ingestion.ingest(rows, "customers", "customer_id", "event_time", ACTOR, created="created")
    app.views.define("cust", "customers", ACTOR, columns=["spend"])
    spine = pa.table({"customer_id": ["a", "a", "b", "b"],
                      "event_timestamp": ts([hours(20), hours(40), hours(24), hours(24 * 10)])})  # fmt: skip
    out = tmp_path / "t.parquet"
    plain = app.training_sets.build(spine, ["cust:spend"], ACTOR, out=out)
    assert pq.read_table(out).column("spend").to_pylist() == [2.0, 2.0, 4.0, 4.0]
    cut = app.training_sets.build(spine, ["cust:spend"], ACTOR, out=out, created_cutoff=True)
    assert pq.read_table(out).column("spend").to_pylist() == [3.0, 2.0, None, 4.0]
    assert cut["flags"] == {"full_names": False, "created_cutoff": True}
    assert cut["fingerprint"] != plain["fingerprint"]
