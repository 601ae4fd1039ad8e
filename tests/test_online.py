"""The online store through the real stores: materialize each entity's latest row,
guarded by event time; reads by entity from memory, with Feast's statuses and the view's
TTL; bad requests named; audit, freshness and the CLI."""

import json
import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from appliance.errors import BadInput, NotFound
from appliance.features.online import (
    NOT_FOUND,
    NULL_VALUE,
    OUTSIDE_MAX_AGE,
    PRESENT,
    OnlineStore,
    to_json,
)
from tests.conftest import ACTOR

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def ingest(app, table: str, entity: str, rows: list[dict]) -> None:
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    cols["event_time"] = pa.array(cols["event_time"], pa.timestamp("us"))
    app.ingestion.ingest(pa.table(cols), table, entity, "event_time", ACTOR)


def latest(rows: list[dict], entity: str) -> dict:
    """The brute-force answer: per entity the row with the latest event time, ties to
    the later ingest (a later batch, or a later row in it)."""
    best: dict = {}
    for order, r in enumerate(rows):
        k = r[entity]
        if k not in best or (r["event_time"], order) >= (best[k][0]["event_time"], best[k][1]):
            best[k] = (r, order)
    return {k: v[0] for k, v in best.items()}


@pytest.fixture
def loans(app):
    """Table loans (text keys c0..c49, 1..8 rows each, equal event times, nulls) and view
    loans over it with a 30-day TTL; every row less than 30 days old."""
    rng = random.Random(5)
    rows = []
    for i in range(50):
        times = [ago(rng.uniform(0.5, 25)) for _ in range(rng.randrange(1, 9))]
        times.append(times[-1])  # an equal event time: the later row wins
        for t in times:
            rows.append({"customer_id": f"c{i}", "event_time": t,
                         "income": None if rng.random() < 0.1 else round(rng.uniform(1e3, 1e5), 2),
                         "age": rng.randrange(18, 90), "score": rng.uniform(0, 1)})  # fmt: skip
    rng.shuffle(rows)
    ingest(app, "loans", "customer_id", rows)
    app.views.define("loans", "loans", ACTOR, ttl=timedelta(days=30))
    return app, rows


def test_materialize_then_read_the_latest_row_per_entity(loans):
    app, rows = loans
    r = app.online.materialize("loans", ACTOR)
    want = latest(rows, "customer_id")
    assert (r["view"], r["entities"], r["rows_written"]) == ("loans@1", 50, 50)
    keys = [{"customer_id": f"c{i}"} for i in (3, 0, 49, 3)]  # request order, repeats kept
    got = app.online.get_online_features(["loans:income", "loans:age", "loans:score"], keys,
                                         ACTOR)  # fmt: skip
    assert got["features"] == ["income", "age", "score"]
    assert [x["entity"] for x in got["results"]] == keys
    for item, key in zip(got["results"], keys, strict=True):
        w = want[key["customer_id"]]
        assert item["values"] == {"income": w["income"], "age": w["age"], "score": w["score"]}
        assert item["statuses"] == {f: PRESENT if w[f] is not None else NULL_VALUE
                                    for f in ("income", "age", "score")}  # fmt: skip
        assert item["event_times"] == {"loans@1": w["event_time"]}
    nulls = [k for k, w in want.items() if w["income"] is None]
    assert nulls  # a null value of a row read is NULL_VALUE, not NOT_FOUND
    got = app.online.get_online_features(["loans:income"], [{"customer_id": nulls[0]}], ACTOR)
    assert got["results"][0]["statuses"] == {"income": NULL_VALUE}
    assert got["results"][0]["event_times"] == {"loans@1": want[nulls[0]]["event_time"]}


def test_an_older_row_never_overwrites_a_newer_one(loans):
    app, rows = loans
    app.online.materialize("loans", ACTOR)
    before = app.online.get_online_features(["loans:*"], [{"customer_id": "c7"}], ACTOR)
    held = before["results"][0]
    ingest(app, "loans", "customer_id", [
        {"customer_id": "c7", "event_time": ago(29), "income": -1.0, "age": 1, "score": -1.0}
    ])  # fmt: skip
    r = app.online.materialize("loans", ACTOR)
    assert r["rows_written"] == 0
    after = app.online.get_online_features(["loans:*"], [{"customer_id": "c7"}], ACTOR)
    assert after["results"][0] == held
    ingest(app, "loans", "customer_id", [
        {"customer_id": "c7", "event_time": ago(0.1), "income": 7.0, "age": 70, "score": 0.7}
    ])  # fmt: skip
    r = app.online.materialize("loans", ACTOR)
    assert (r["rows_written"], r["entities"]) == (1, 50)
    newer = app.online.get_online_features(["loans:*"], [{"customer_id": "c7"}], ACTOR)
    assert newer["results"][0]["values"] == {"income": 7.0, "age": 70, "score": 0.7}
    assert newer["results"][0]["event_times"] == {"loans@1": ago(0.1)}
    other = app.online.get_online_features(["loans:age"], [{"customer_id": "c8"}], ACTOR)
    assert other["results"][0]["values"]["age"] == latest(rows, "customer_id")["c8"]["age"]


def test_since_materializes_only_rows_from_then(loans):
    app, rows = loans
    r = app.online.materialize("loans", ACTOR, since=ago(5).isoformat() + "Z")
    recent = {x["customer_id"] for x in rows if x["event_time"] >= ago(5)}
    assert r["entities"] == len(recent) < 50
    got = app.online.get_online_features(
        ["loans:age"], [{"customer_id": f"c{i}"} for i in range(50)], ACTOR
    )
    found = {x["entity"]["customer_id"] for x in got["results"]
             if x["statuses"]["age"] == PRESENT}  # fmt: skip
    assert found == recent


def test_values_past_the_ttl_read_as_null_flagged(app):
    ingest(app, "accounts", "account_id", [
        {"account_id": 1, "event_time": ago(2), "balance": 10.0},
        {"account_id": 2, "event_time": ago(45), "balance": 20.0},
        {"account_id": 3, "event_time": ago(29.9), "balance": 30.0},
    ])  # fmt: skip
    app.views.define("acct", "accounts", ACTOR, ttl=timedelta(days=30))
    app.online.materialize("acct", ACTOR)
    got = app.online.get_online_features(
        ["acct:balance"], [{"account_id": k} for k in (1, 2, 3, 4)], ACTOR
    )
    assert [x["values"]["balance"] for x in got["results"]] == [10.0, None, 30.0, None]
    assert [x["statuses"]["balance"] for x in got["results"]] == [
        PRESENT, OUTSIDE_MAX_AGE, PRESENT, NOT_FOUND]  # fmt: skip
    assert got["results"][1]["event_times"] == {"acct@1": ago(45)}  # when it was, all the same
    assert got["results"][3]["event_times"] == {"acct@1": None}
    # integer keys also match when given as text (the CLI's --entity gives text)
    text = app.online.get_online_features(["acct:balance"], [{"account_id": "1"}], ACTOR)
    assert text["results"][0]["values"]["balance"] == 10.0


def test_two_views_in_one_read_and_full_names(loans):
    app, rows = loans
    ingest(app, "branches", "branch", [
        {"branch": "north", "event_time": ago(1), "score": 0.25},
    ])  # fmt: skip
    app.views.define("branch", "branches", ACTOR)
    app.online.materialize("loans", ACTOR)
    with pytest.raises(BadInput, match=r"branch@1:score would be named 'score'.*loans@1:score"):
        app.online.get_online_features(["loans:score", "branch:score"],
                                       [{"customer_id": "c1", "branch": "north"}], ACTOR)  # fmt: skip
    got = app.online.get_online_features(
        ["loans:score", "branch:score"], [{"customer_id": "c1", "branch": "north"}], ACTOR,
        full_names=True,
    )  # fmt: skip
    item = got["results"][0]
    assert got["features"] == ["loans__score", "branch__score"]
    assert item["values"] == {"loans__score": latest(rows, "customer_id")["c1"]["score"],
                              "branch__score": None}  # fmt: skip
    # branch was never materialized: every value of it is NOT_FOUND
    assert item["statuses"] == {"loans__score": PRESENT, "branch__score": NOT_FOUND}
    app.online.materialize("branch", ACTOR)
    got = app.online.get_online_features(
        ["loans:score", "branch:score"], [{"customer_id": "c1", "branch": "north"}], ACTOR,
        full_names=True,
    )  # fmt: skip
    assert got["results"][0]["values"]["branch__score"] == 0.25
    assert got["results"][0]["entity"] == {"customer_id": "c1", "branch": "north"}


def test_bad_requests_are_named(loans):
    app, rows = loans
    app.online.materialize("loans", ACTOR)
    with pytest.raises(BadInput, match=r"entities\[1\]: missing key 'customer_id'.*loans@1"):
        app.online.get_online_features(["loans:age"], [{"customer_id": "c1"}, {"id": "c2"}], ACTOR)
    with pytest.raises(BadInput, match="view loans@1 has no column 'nope'"):
        app.online.get_online_features(["loans:nope"], [{"customer_id": "c1"}], ACTOR)
    with pytest.raises(BadInput):
        app.online.get_online_features(["ghost:x"], [{"customer_id": "c1"}], ACTOR)
    with pytest.raises(BadInput, match="'loans' is not a feature reference"):
        app.online.get_online_features(["loans"], [{"customer_id": "c1"}], ACTOR)
    with pytest.raises(BadInput, match=r"entities\[0\]: key 'customer_id' must be a string"):
        app.online.get_online_features(["loans:age"], [{"customer_id": [1]}], ACTOR)
    with pytest.raises(BadInput, match=r"entities\[0\]: expected an object"):
        app.online.get_online_features(["loans:age"], ["c1"], ACTOR)
    with pytest.raises(NotFound, match="no feature view named 'ghost'"):
        app.online.materialize("ghost", ACTOR)


def test_one_audit_event_per_materialization_and_freshness(loans):
    app, rows = loans
    assert app.online.freshness(ACTOR) == []
    before = app.control.audit_action_count("features.materialize")
    app.online.materialize("loans", ACTOR)
    app.online.materialize("loans", ACTOR)
    events = app.control.audit_find("features.materialize", "loans@1")
    assert app.control.audit_action_count("features.materialize") == before + 2
    assert [e["details"]["rows_written"] for e in events] == [50, 0]
    assert events[0]["details"] == {"view": "loans@1", "rows_written": 50, "entities": 50,
                                    "since": None}  # fmt: skip
    (f,) = app.online.freshness(ACTOR)
    assert (f["view"], f["entities"]) == ("loans@1", 50)
    newest = max(r["event_time"] for r in rows)
    assert f["newest_event"] == newest.isoformat(timespec="microseconds") + "Z"
    assert f["materialized_at"] >= NOW.isoformat()


def test_reads_come_from_memory_and_see_another_writer(loans, monkeypatch):
    app, rows = loans
    app.online.materialize("loans", ACTOR)
    reader = OnlineStore(app.views, app.features, app.control)  # as another process would
    reader.recheck_s = 3600.0
    first = reader.get_online_features(["loans:age"], [{"customer_id": "c2"}], ACTOR)

    def no_sql(*args, **kwargs):
        raise AssertionError("a read went to the store")

    with monkeypatch.context() as m:
        m.setattr(app.features, "query", no_sql)
        m.setattr(app.features, "_reading", no_sql)
        m.setattr(app.control, "query", no_sql)
        again = reader.get_online_features(["loans:age"], [{"customer_id": "c2"}], ACTOR)
        assert again == first
    ingest(app, "loans", "customer_id", [
        {"customer_id": "c2", "event_time": NOW, "income": 1.0, "age": 99, "score": 0.5}
    ])  # fmt: skip
    app.online.materialize("loans", ACTOR)  # another OnlineStore: the reader is not told
    assert reader.get_online_features(["loans:age"], [{"customer_id": "c2"}], ACTOR) == first
    reader.recheck_s = 0.0  # its next check compares the counter and reloads
    got = reader.get_online_features(["loans:age"], [{"customer_id": "c2"}], ACTOR)
    assert got["results"][0]["values"] == {"age": 99}


def test_a_view_reads_its_latest_materialized_version(loans):
    app, rows = loans
    app.online.materialize("loans", ACTOR)
    app.views.define("loans", "loans", ACTOR, columns=["age"], ttl=timedelta(days=30))  # v2
    got = app.online.get_online_features(["loans:income"], [{"customer_id": "c4"}], ACTOR)
    assert got["results"][0]["event_times"].keys() == {"loans@1"}  # v2 is not online yet
    assert got["results"][0]["statuses"] == {"income": PRESENT}
    app.online.materialize("loans", ACTOR)
    with pytest.raises(BadInput, match="view loans@2 has no column 'income'"):
        app.online.get_online_features(["loans:income"], [{"customer_id": "c4"}], ACTOR)
    got = app.online.get_online_features(["loans@1:income", "loans:age"],
                                         [{"customer_id": "c4"}], ACTOR)  # fmt: skip
    assert got["results"][0]["statuses"] == {"income": PRESENT, "age": PRESENT}
    assert got["results"][0]["event_times"].keys() == {"loans@1", "loans@2"}


def test_the_cli_materializes_and_reads(loans, falaj):
    app, rows = loans
    app.close()
    r = json.loads(falaj.ok("materialize", "loans", "--json").output)
    assert (r["view"], r["entities"]) == ("loans@1", 50)
    out = falaj.ok("features", "online", "--features", "loans:age,loans:income",
                   "--entity", "customer_id=c1", "--entity", "customer_id=nobody", "--json")  # fmt: skip
    got = json.loads(out.output)
    want = latest(rows, "customer_id")["c1"]
    assert got["results"][0]["values"] == {"age": want["age"], "income": want["income"]}
    assert got["results"][1]["statuses"] == {"age": NOT_FOUND, "income": NOT_FOUND}
    assert got["results"][0]["event_times"]["loans@1"].endswith("Z")
    text = falaj.ok("features", "online", "--features", "loans:age", "--entity", "customer_id=c1")
    assert f"customer_id=c1: age={want['age']}" in text.output
    bad = falaj("features", "online", "--features", "loans:age", "--entity", "id=c1")
    assert bad.exit_code == 2 and "entities[0]: missing key 'customer_id'" in bad.stderr
    bad = falaj("materialize", "loans", "--since", "yesterday")
    assert bad.exit_code == 2 and "since: 'yesterday' is not an ISO 8601 time" in bad.stderr


def test_to_json_carries_what_json_cannot():
    result = {"features": ["x", "t"], "results": [{
        "entity": {"id": 1}, "values": {"x": float("nan"), "t": datetime(2024, 1, 2, 3)},
        "statuses": {"x": PRESENT, "t": PRESENT}, "event_times": {"v@1": datetime(2024, 1, 1)}}]}  # fmt: skip
    out = to_json(result)
    assert out["results"][0]["values"] == {"x": None, "t": "2024-01-02T03:00:00.000000Z"}
    assert out["results"][0]["event_times"] == {"v@1": "2024-01-01T00:00:00.000000Z"}
    json.dumps(out, allow_nan=False)


def test_a_materialization_here_updates_what_is_held_in_place(loans, monkeypatch):
    app, rows = loans
    app.online.materialize("loans", ACTOR)
    app.online.get_online_features(["loans:age"], [{"customer_id": "c2"}], ACTOR)  # loaded

    def no_reload(*args, **kwargs):
        raise AssertionError("the whole view was read again")

    monkeypatch.setattr(app.features, "online_rows", no_reload)
    ingest(app, "loans", "customer_id", [
        {"customer_id": "c2", "event_time": NOW, "income": 1.0, "age": 99, "score": 0.5},
        {"customer_id": "c60", "event_time": NOW, "income": 2.0, "age": 77, "score": 0.5},
        {"customer_id": "c3", "event_time": ago(40), "income": 3.0, "age": 1, "score": 0.5},
    ])  # fmt: skip
    r = app.online.materialize("loans", ACTOR)
    assert (r["rows_written"], r["entities"]) == (2, 51)
    got = app.online.get_online_features(
        ["loans:age"], [{"customer_id": k} for k in ("c2", "c60", "c3")], ACTOR
    )
    want_c3 = latest(rows, "customer_id")["c3"]["age"]
    assert [x["values"]["age"] for x in got["results"]] == [99, 77, want_c3]
