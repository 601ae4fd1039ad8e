"""The workspace file: falaj apply validates all of it first, registers entities, table
specs and views in one transaction (one audit event per change), versions changed
views, and names where a bad file is wrong."""

import json
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from appliance.errors import BadInput
from appliance.features.views import UnknownFeatureView
from tests.conftest import ACTOR

WORKSPACE = """
entities:
  customer: {join_key: customer_id, description: "A card holder"}
tables:
  transactions:
    entity: customer_id
    event_time: event_time
    contract:
      policy: refuse
      columns:
        amount: {type: DOUBLE, min: 0}
views:
  customer_profile:
    table: transactions
    columns: [amount, channel]
    ttl: 30d
  spend:
    table: transactions
    transforms:
      - {rolling: sum, column: amount, window: 30d, name: spend_30d}
      - {date_part: hour, column: event_time, name: event_hour}
      - {encode: hash, column: channel, buckets: 16, name: channel_bucket}
    ttl: 90d
  merchant_risk:
    sql: "SELECT merchant_id, event_time, avg(amount) OVER (PARTITION BY merchant_id ORDER BY event_time) AS avg_amount FROM transactions"
    entity: merchant_id
    event_time: event_time
"""

T0 = datetime(2025, 1, 1)


def transactions(n: int = 6) -> pa.Table:
    return pa.table(
        {
            "customer_id": [f"c{i % 2}" for i in range(n)],
            "merchant_id": [f"m{i % 3}" for i in range(n)],
            "event_time": pa.array([T0 + timedelta(hours=5 * i) for i in range(n)]),
            "amount": [float(10 * (i + 1)) for i in range(n)],
            "channel": ["web", "store", "phone"] * (n // 3),
        }
    )


@pytest.fixture
def ws(app):
    app.ingestion.ingest(transactions(), "transactions", "customer_id", "event_time", ACTOR)
    path = app.home / "falaj.yaml"
    path.write_text(WORKSPACE)
    return path


def events(app, after: int) -> list[tuple[str, str, dict]]:
    return [
        (e["action"], e["subject"], json.loads(e["details"]))
        for e in app.control.audit_events(after)
    ]


def test_apply_registers_everything_once_with_one_event_per_change(app, ws):
    before = app.control.audit_count()
    r = app.views.apply(None, ACTOR)  # the home's falaj.yaml
    assert r["changed"] is True
    assert [(v["view"], v["version"], v["changed"]) for v in r["views"]] == [
        ("customer_profile", 1, True), ("spend", 1, True), ("merchant_risk", 1, True)]  # fmt: skip
    got = events(app, before)
    assert [(a, s) for a, s, _ in got] == [
        ("features.entity.declare", "customer"),
        ("data.table.declare", "transactions"),
        ("features.view.register", "customer_profile"),
        ("features.view.register", "spend"),
        ("features.view.register", "merchant_risk"),
    ]
    fingerprints = {v["view"]: v["fingerprint"] for v in r["views"]}
    for _action, subject, details in got[2:]:
        assert details["version"] == 1
        assert details["fingerprint"] == fingerprints[subject]
    assert got[1][2]["spec"]["contract"]["columns"]["amount"] == {
        "type": "DOUBLE", "min": 0, "nullable": True}  # fmt: skip
    assert app.control.table_spec("transactions")["entity"] == "customer_id"
    assert app.control.entities()["customer"]["join_key"] == "customer_id"

    profile = app.views.resolve("customer_profile", ACTOR)
    assert (profile.ref, profile.kind, profile.entity, profile.table) == (
        "customer_profile@1", "columns", "customer_id", "transactions")  # fmt: skip
    assert profile.features == {"amount": "DOUBLE", "channel": "VARCHAR"}
    assert profile.ttl == timedelta(days=30)
    assert profile.created_by == str(ACTOR)
    spend = app.views.resolve("spend@1", ACTOR)
    assert spend.features == {"spend_30d": "DOUBLE", "event_hour": "BIGINT",
                              "channel_bucket": "BIGINT"}  # fmt: skip
    risk = app.views.resolve("merchant_risk", ACTOR)
    assert (risk.kind, risk.entity, risk.table, risk.features) == (
        "sql", "merchant_id", None, {"avg_amount": "DOUBLE"})  # fmt: skip


def test_an_unchanged_apply_changes_nothing(app, ws):
    first = app.views.apply(ws, ACTOR)
    count = app.control.audit_count()
    again = app.views.apply(ws, ACTOR)
    assert again["changed"] is False
    assert [v["version"] for v in again["views"]] == [1, 1, 1]
    assert [v["fingerprint"] for v in again["views"]] == [v["fingerprint"] for v in first["views"]]
    assert not any(e["changed"] for e in again["entities"] + again["tables"])
    assert app.control.audit_count() == count
    assert [len(app.control.view_versions(v)) for v in ("customer_profile", "spend")] == [1, 1]


def test_a_changed_view_is_a_new_version_and_the_old_one_still_gives_its_rows(app, ws):
    app.views.apply(ws, ACTOR)
    ws.write_text(WORKSPACE.replace("columns: [amount, channel]", "columns: [amount]"))
    before = app.control.audit_count()
    r = app.views.apply(ws, ACTOR)
    changed = [(v["view"], v["version"]) for v in r["views"] if v["changed"]]
    assert changed == [("customer_profile", 2)]
    [(action, subject, details)] = events(app, before)
    assert (action, subject, details["version"], details["previous"]) == (
        "features.view.register", "customer_profile", 2, 1)  # fmt: skip
    v1 = app.views.resolve("customer_profile@1", ACTOR)
    v2 = app.views.resolve("customer_profile", ACTOR)
    assert (v2.version, list(v2.features)) == (2, ["amount"])
    assert v1.fingerprint != v2.fingerprint
    rows1 = app.views.feature_rows(v1, ACTOR)
    rows2 = app.views.feature_rows(v2, ACTOR)
    assert rows1.column_names == ["customer_id", "_event_time", "_created_time", "_seq",
                                  "amount", "channel"]  # fmt: skip
    assert rows2.column_names == ["customer_id", "_event_time", "_created_time", "_seq", "amount"]
    assert sorted(rows1.column("channel").to_pylist()) == sorted(["web", "store", "phone"] * 2)
    # Going back to the first definition is a third version, equal to the first.
    ws.write_text(WORKSPACE)
    r = app.views.apply(ws, ACTOR)
    v3 = app.views.resolve("customer_profile", ACTOR)
    assert (v3.version, v3.fingerprint) == (3, v1.fingerprint)
    show = app.views.show("customer_profile@1", ACTOR)
    assert [v["version"] for v in show["versions"]] == [1, 2, 3]
    assert show["features"] == {"amount": "DOUBLE", "channel": "VARCHAR"}


def test_views_and_tables_absent_from_the_file_are_kept(app, ws):
    app.views.apply(ws, ACTOR)
    app.views.define("extra", "transactions", ACTOR, columns="amount")
    ws.write_text(
        "views:\n  customer_profile: {table: transactions, columns: [amount, channel], ttl: 30d}\n"
    )
    r = app.views.apply(ws, ACTOR)
    assert r["changed"] is False
    assert r["kept"]["views"] == ["extra", "merchant_risk", "spend"]
    assert r["kept"]["tables"] == ["transactions"]
    assert "not deleted" in r["kept"]["note"]
    assert app.views.resolve("spend", ACTOR).version == 1
    assert app.control.table_spec("transactions") is not None


def test_a_changed_table_spec_is_declared_again_and_audited(app, ws):
    app.views.apply(ws, ACTOR)
    ws.write_text(WORKSPACE.replace("policy: refuse", "policy: quarantine"))
    before = app.control.audit_count()
    r = app.views.apply(ws, ACTOR)
    assert [t["changed"] for t in r["tables"]] == [True]
    [(action, subject, details)] = events(app, before)
    assert (action, subject) == ("data.table.declare", "transactions")
    assert details["spec"]["contract"]["policy"] == "quarantine"
    assert details["previous"]["contract"]["policy"] == "refuse"


BAD = [
    ("views:\n  spend: {table: transactions, ttl: x}\n",
     "views: spend: ttl: 'x' is not a duration"),
    ("views:\n  spend: {table: transactions, colums: [amount]}\n",
     "views: spend: unknown key 'colums'"),
    ("views:\n  spend: {table: nosuch}\n",
     "views: spend: table 'nosuch' is neither declared"),
    ("views:\n  spend: {table: transactions, columns: [amount, nosuch]}\n",
     "views: spend: columns: table 'transactions' has no column 'nosuch'"),
    ("views:\n  spend: {table: transactions, columns: [customer_id]}\n",
     "views: spend: 'customer_id' is the table's entity column"),
    ("views:\n  spend:\n    table: transactions\n    transforms:\n"
     "      - {rolling: median, column: amount, window: 30d, name: m}\n",
     "views: spend: transforms[0]: rolling: 'median' is not one of count, sum, mean, min, max"),
    ("views:\n  spend:\n    table: transactions\n    transforms:\n"
     "      - {rolling: sum, column: channel, window: 30d, name: m}\n",
     "views: spend: transforms[0]: rolling sum needs a numeric column; 'channel' is VARCHAR"),
    ("views:\n  spend:\n    table: transactions\n    transforms:\n"
     "      - {rolling: sum, column: amount, window: 0d, name: m}\n",
     "views: spend: transforms[0]: window: '0d' must be more than zero"),
    ("views:\n  spend:\n    table: transactions\n    transforms:\n"
     "      - {encode: target, column: channel, name: m}\n",
     "views: spend: transforms[0]: encode: 'target' is not one of hash, ordinal"),
    ("views:\n  spend:\n    table: transactions\n    transforms:\n"
     "      - {date_part: hour, column: amount, name: h}\n",
     "views: spend: transforms[0]: date_part needs a timestamp column; 'amount' is DOUBLE"),
    ("views:\n  spend:\n    table: transactions\n    transforms:\n"
     "      - {encode: hash, column: channel, buckets: 0, name: b}\n",
     "views: spend: transforms[0]: buckets: 0 is not a whole number from 1"),
    ("views:\n  spend:\n    table: transactions\n    transforms:\n"
     "      - {encode: ordinal, column: channel, categories: [1, 2], name: b}\n",
     "views: spend: transforms[0]: category 1 cannot be a value of 'channel' (VARCHAR)"),
    ("views:\n  spend:\n    table: transactions\n    columns: [amount]\n    transforms:\n"
     "      - {encode: hash, column: channel, buckets: 4, name: amount}\n",
     "views: spend: the output column 'amount' is given twice"),
    ("views:\n  1bad: {table: transactions}\n", "views: 1bad: view name '1bad' is not valid"),
    ("entities:\n  customer: {description: x}\n", "entities: customer: join_key is missing"),
    ("entities:\n  'bad name': {join_key: x}\n", "entities: bad name: entity name 'bad name'"),
    ("tables:\n  transactions: {entity: customer_id}\n", "tables: transactions: event_time is missing"),
    ("tables:\n  transactions: {entity: customer_id, event_time: event_time,"
     " contract: {policy: maybe}}\n",
     "tables: transactions: contract: policy 'maybe' is not one of refuse, quarantine"),
    ("tables:\n  transactions: {entity: merchant_id, event_time: event_time}\n"
     "views:\n  v: {table: transactions}\n",
     "views: v: table 'transactions' is declared with entity 'merchant_id'"),
    ("view:\n  spend: {table: transactions}\n", "unknown key 'view'"),
    ("views:\n  spend: {table: transactions}\n  spend: {table: transactions, ttl: 1d}\n",
     "at line 3, column 3: the key 'spend' is given twice"),
    ("views: [1, 2]\n", "views: expected a mapping, got list"),
    ("views:\n  spend: {table: transactions\n", "not valid YAML at line"),
    ("views:\n  q: {sql: 'SELECT 1 AS x', entity: x, event_time: t}\n",
     "views: q: sql: reads no feature table"),
    ("views:\n  q: {sql: 'SELECT customer_id, amount FROM transactions', entity: customer_id,"
     " event_time: event_time}\n",
     "views: q: sql: the output has no event_time column 'event_time'"),
    ("views:\n  q: {sql: 'SELECT customer_id, event_time FROM transactions', entity: customer_id}\n",
     "views: q: event_time is missing"),
    ("views:\n  q: {sql: 'SELECT customer_id, event_time, nosuch FROM transactions',"
     " entity: customer_id, event_time: event_time}\n",
     "views: q: sql: "),
]  # fmt: skip


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_a_bad_workspace_names_where_and_registers_nothing(app, ws, text, message):
    # A good view beside the bad part: nothing at all may be registered.
    good = "  fine: {table: transactions, columns: [amount]}\n"
    body = text + good if text.startswith("views:\n ") else text
    ws.write_text(body)
    before = app.control.audit_count()
    with pytest.raises(BadInput) as info:
        app.views.apply(ws, ACTOR)
    assert message in info.value.message
    assert info.value.message.startswith(str(ws))
    assert app.control.audit_count() == before
    assert app.views.list(ACTOR) == []
    assert app.control.table_specs() == {}
    assert app.control.entities() == {}


def test_a_missing_workspace_file_is_named(app, tmp_path):
    with pytest.raises(BadInput, match=r"nosuch\.yaml: no such workspace file"):
        app.views.apply(tmp_path / "nosuch.yaml", ACTOR)
    with pytest.raises(BadInput, match=r"falaj\.yaml: no such workspace file"):
        app.views.apply(None, ACTOR)


def test_a_view_over_a_declared_table_without_data_resolves_after_the_first_ingest(app):
    path = app.home / "falaj.yaml"
    path.write_text(
        "tables:\n  later: {entity: customer_id, event_time: event_time}\n"
        "views:\n  all_of_later: {table: later}\n"
        "  some_of_later: {table: later, columns: [amount]}\n"
    )
    r = app.views.apply(path, ACTOR)
    assert [v["ref"] for v in r["views"]] == ["all_of_later@1", "some_of_later@1"]
    with pytest.raises(BadInput, match="table 'later' has no data yet"):
        app.views.resolve("all_of_later", ACTOR)
    shown = app.views.show("all_of_later", ACTOR)
    assert "no data yet" in shown["note"]
    app.ingestion.ingest(transactions(), "later", "customer_id", "event_time", ACTOR)
    view = app.views.resolve("all_of_later", ACTOR)
    assert view.features == {"merchant_id": "VARCHAR", "amount": "DOUBLE", "channel": "VARCHAR"}
    assert app.views.resolve("some_of_later", ACTOR).features == {"amount": "DOUBLE"}
    assert app.views.feature_rows(view, ACTOR).num_rows == 6
    # Applying the same file again is still no change: the definition did not change.
    assert app.views.apply(path, ACTOR)["changed"] is False


def test_define_declares_and_versions_a_columns_view(app, ws):
    before = app.control.audit_count()
    r = app.views.define("profile", "transactions", ACTOR, columns="amount,channel", ttl="30d")
    assert (r["ref"], r["changed"]) == ("profile@1", True)
    assert app.views.define("profile", "transactions", ACTOR, columns=["amount", "channel"],
                            ttl=timedelta(days=30))["changed"] is False  # fmt: skip
    r = app.views.define("profile", "transactions", ACTOR)
    assert (r["ref"], r["changed"]) == ("profile@2", True)
    assert list(app.views.resolve("profile", ACTOR).features) == [
        "merchant_id", "amount", "channel"]  # fmt: skip
    assert [a for a, _, _ in events(app, before)] == ["features.view.register"] * 2
    with pytest.raises(BadInput, match="view 'profile': ttl: 'soon' is not a duration"):
        app.views.define("profile", "transactions", ACTOR, ttl="soon")
    with pytest.raises(UnknownFeatureView, match="no feature view named 'nope'"):
        app.views.resolve("nope", ACTOR)
    with pytest.raises(UnknownFeatureView, match="has no version 9"):
        app.views.resolve("profile@9", ACTOR)
    with pytest.raises(BadInput, match="must be a number"):
        app.views.resolve("profile@x", ACTOR)


def test_list_and_catalog_show_views_and_specs(app, ws):
    app.views.apply(ws, ACTOR)
    listed = {v["view"]: v for v in app.views.list(ACTOR)}
    assert sorted(listed) == ["customer_profile", "merchant_risk", "spend"]
    assert listed["spend"]["features"] == ["spend_30d", "event_hour", "channel_bucket"]
    assert (listed["spend"]["ttl"], listed["spend"]["versions"]) == ("90d", 1)
    [table] = app.catalog.tables(ACTOR)
    assert table["declared"] is True
    assert table["contract"] == {"policy": "refuse", "unique_key": False, "freshness": None,
                                 "columns": 1, "rules": 2}  # fmt: skip
    assert table["views"] == ["customer_profile@1", "merchant_risk@1", "spend@1"]
    assert table["rows"] == 6


# -- the command line -------------------------------------------------------------


def test_cli_apply_define_list_show(falaj, tmp_path):
    falaj.ok("init")
    data = tmp_path / "t.parquet"
    import pyarrow.parquet as pq

    pq.write_table(transactions(), data)
    falaj.ok("ingest", data, "--table", "transactions", "--entity", "customer_id",
             "--timestamp", "event_time")  # fmt: skip
    path = tmp_path / "ws.yaml"
    path.write_text(WORKSPACE)
    out = falaj.ok("apply", "--workspace", path)
    assert "view spend@1: registered" in out.output
    out = falaj.ok("apply", "--workspace", path, "--json")
    assert json.loads(out.output)["changed"] is False
    out = falaj.ok("features", "define", "p", "--table", "transactions", "--columns",
                   "amount", "--ttl", "12h")  # fmt: skip
    assert out.output.strip() == "view p@1: registered"
    listed = json.loads(falaj.ok("features", "list", "--json").output)
    assert [v["view"] for v in listed] == ["customer_profile", "merchant_risk", "p", "spend"]
    shown = json.loads(falaj.ok("features", "show", "p@1", "--json").output)
    assert (shown["ttl"], shown["features"]) == ("12h", {"amount": "DOUBLE"})
    text = falaj.ok("features", "show", "spend").output
    assert "spend_30d  DOUBLE" in text and "versions: @1" in text
    bad = falaj("features", "define", "p", "--table", "transactions", "--ttl", "x")
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "error: view 'p': ttl: 'x' is not a duration (like 30d, 12h, 90m)"
    ]
    path.write_text("views:\n  v: {table: transactions, ttl: x}\n")
    bad = falaj("apply", "--workspace", path)
    assert bad.exit_code == 2
    assert (
        bad.stderr.strip()
        == f"error: {path}: views: v: ttl: 'x' is not a duration (like 30d, 12h, 90m)"
    )
    bad = falaj("features", "show", "nope")
    assert bad.exit_code == 2
    assert "no feature view named 'nope'" in bad.stderr
