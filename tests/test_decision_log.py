"""The decision log keeps each decision's inputs (the monitor vector), its hash commits
to them (old batches still verify), and retention prunes whole old batches, audited."""

import json
import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from appliance import demo
from appliance.core import Appliance
from appliance.serving.decision_log import records_sha256
from appliance.stores.features import DECISION_COLUMNS_1
from tests.conftest import ACTOR

NUMERIC = ["age", "income", "debt_to_income"]
INPUTS = [*NUMERIC, "region"]
RECORD = {"age": 41.0, "income": 52000.0, "debt_to_income": 0.31, "region": "dubai"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An appliance with credit@1 (three numeric inputs and a categorical one) deployed,
    its decision log durable and keeping decisions 30 days."""
    tmp = tmp_path_factory.mktemp("decisions")
    home = tmp / "home"
    app = Appliance.open({"home": str(home), "decision_retention_days": 30})
    app.init(ACTOR)
    app.ingestion.ingest(demo.write(tmp / "credit.parquet", 600), "loans", "customer_id",
                         "event_time", ACTOR)  # fmt: skip
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(INPUTS))
    app.serving.deploy("credit", 1, ACTOR)
    yield app
    app.close()


def regions(app) -> list[str]:
    """The training categories of region, sorted: a category's code is its index."""
    rows = app.features.query("SELECT DISTINCT region FROM loans WHERE region IS NOT NULL")
    return sorted(r["region"] for r in rows)


def test_a_decision_keeps_its_inputs_by_feature_name(served):
    known = regions(served)
    records = [
        RECORD,
        RECORD | {"region": known[-1], "age": None},  # null numeric: NaN
        RECORD | {"region": "atlantis"},  # never seen in training: -1
        RECORD | {"region": None},  # null category: NaN
    ]
    answer = served.serving.predict("credit", records, ACTOR)
    assert answer["variant"] == "live"
    stored = served.features.decisions(answer["request_id"])
    inputs = [r["inputs"] for r in stored]
    code = known.index("dubai")
    assert inputs[0] == [41.0, 52000.0, 0.31, float(code)]
    assert math.isnan(inputs[1][0]) and inputs[1][1:] == [52000.0, 0.31, len(known) - 1.0]
    assert inputs[2] == [41.0, 52000.0, 0.31, -1.0]
    assert inputs[3][:3] == [41.0, 52000.0, 0.31] and math.isnan(inputs[3][3])
    assert [r["variant"] for r in stored] == ["live"] * 4
    assert [r["served"] for r in stored] == [True] * 4
    assert [r["output"] for r in stored] == answer["predictions"]

    shown = served.serving.decision(answer["request_id"], ACTOR)
    assert shown["verified"] and shown["variant"] == "live"
    assert shown["inputs"][0] == dict(zip(INPUTS, [41.0, 52000.0, 0.31, float(code)], strict=True))
    assert shown["inputs"][1]["age"] is None and shown["inputs"][3]["region"] is None
    assert shown["inputs"][2]["region"] == -1.0
    event = served.control.audit_find("decisions.logged", shown["batch"])[0]
    assert event["details"]["columns"] == 2


def test_the_batch_hash_commits_to_the_inputs_and_routes(served):
    answer = served.serving.predict("credit", [RECORD], ACTOR)
    rid = answer["request_id"]
    assert served.serving.decision(rid, ACTOR)["verified"]
    original = served.features.decisions(rid)[0]["inputs"]

    def set_inputs(values):
        with served.features.transaction() as tx:
            tx.conn.execute("UPDATE _predictions SET inputs = ? WHERE request_id = ?",
                            [values, rid])  # fmt: skip

    set_inputs(original[:2] + [0.32] + original[3:])
    assert not served.serving.decision(rid, ACTOR)["verified"]
    set_inputs(original)
    assert served.serving.decision(rid, ACTOR)["verified"]  # restored: proved again
    with served.features.transaction() as tx:
        tx.conn.execute("UPDATE _predictions SET variant = 'candidate' WHERE request_id = ?", [rid])
    assert not served.serving.decision(rid, ACTOR)["verified"]


def test_a_batch_logged_before_the_new_columns_still_verifies(served):
    """Written as before 0005_decision_routes: ten columns, its event without "columns"."""
    answer = served.serving.predict("credit", [RECORD], ACTOR)
    row = served.features.decisions(answer["request_id"])[0]
    old = pa.Table.from_pylist([{c: row[c] for c in DECISION_COLUMNS_1} | {"request_id": "old-1"}])
    digest = records_sha256(old)  # no inputs column: the ten-column hash
    assert digest == records_sha256(old, 1)
    at = datetime.now(UTC).replace(tzinfo=None)
    with served.features.transaction() as tx:
        tx.append_decisions(old, "old-batch", 1, digest, at)
    with served.control.transaction() as tx:
        tx.append_audit(ACTOR, "decisions.logged", "old-batch",
                        {"rows": 1, "requests": 1, "records_sha256": digest})  # fmt: skip
    shown = served.serving.decision("old-1", ACTOR)
    assert shown["verified"] and shown["inputs"] == [None] and shown["variant"] is None
    with served.features.transaction() as tx:
        tx.conn.execute("UPDATE _predictions SET output = 0.5 WHERE request_id = 'old-1'")
    assert not served.serving.decision("old-1", ACTOR)["verified"]


def test_prune_deletes_only_batches_past_retention_and_is_audited(served):
    fresh = served.serving.predict("credit", [RECORD], ACTOR)["request_id"]
    stale = [served.serving.predict("credit", [RECORD], ACTOR)["request_id"] for _ in range(3)]
    old_batches = sorted(served.serving.decision(r, ACTOR)["batch"] for r in stale)
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=31)
    with served.features.transaction() as tx:
        tx.conn.execute(
            "UPDATE _decision_batches SET committed_at = ? WHERE batch_id IN (?, ?, ?)",
            [long_ago, *old_batches],
        )
    total = served.serving.decision_count(ACTOR)
    before_events = served.control.audit_action_count("decisions.logged")

    result = served.decision_log.prune(ACTOR)

    assert result["batches"] == 3 and result["rows"] == 3
    assert result["batch_ids"] == old_batches
    assert served.serving.decision_count(ACTOR) == total - 3
    event = served.audit.tail(1, ACTOR)[0]
    assert (event["action"], event["actor"]) == ("decisions.pruned", str(ACTOR))
    assert event["details"]["batch_ids"] == old_batches
    assert event["details"]["retention_days"] == 30
    # their decisions.logged events, hashes and all, stay in the chain
    assert served.control.audit_action_count("decisions.logged") == before_events
    assert served.audit.verify(ACTOR, full=True).ok
    assert served.serving.decision(fresh, ACTOR)["verified"]
    assert served.decision_log.reconcile() == []  # counts agree: nothing to settle
    assert served.decision_log.prune(ACTOR)["batches"] == 0  # nothing old is left


def test_a_prune_cut_short_after_its_event_is_finished_on_open(served):
    """The event is the commit point: records it names that survived a crash go on
    reconcile."""
    rid = served.serving.predict("credit", [RECORD], ACTOR)["request_id"]
    batch = served.serving.decision(rid, ACTOR)["batch"]
    long_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=20)
    with served.features.transaction() as tx:
        tx.conn.execute(
            "UPDATE _decision_batches SET committed_at = ? WHERE batch_id = ?", [long_ago, batch]
        )
    cutoff = long_ago + timedelta(days=1)
    with served.control.transaction() as tx:  # as prune writes it, then the crash
        tx.append_audit(ACTOR, "decisions.pruned", cutoff.isoformat() + "Z",
                        {"before": cutoff.isoformat() + "Z", "batches": 1, "rows": 1,
                         "batch_ids": [batch]})  # fmt: skip
    settled = served.decision_log.reconcile()
    assert settled == [f"pruned before {cutoff.isoformat()}Z"]
    assert served.features.decisions(rid) == []


def test_retention_zero_keeps_everything(app):
    assert app.settings["decision_retention_days"] == 0
    assert app.decision_log.prune(ACTOR) == {"retention_days": 0, "batches": 0, "rows": 0}


def test_decisions_prune_on_the_cli(falaj, home):
    falaj.ok("init")
    r = falaj.ok("decisions", "prune", "--json", env={"FALAJ_DECISION_RETENTION_DAYS": "7"})
    got = json.loads(r.stdout)
    assert (got["retention_days"], got["batches"], got["rows"]) == (7, 0, 0)
    r = falaj.ok("decisions", "prune")
    assert "keeps decisions forever" in r.stdout


def test_decisions_show_on_the_cli_names_the_inputs(served, falaj):
    """Last in the module: it closes the shared appliance, so the CLI can open its home."""
    rid = served.serving.predict("credit", [RECORD], ACTOR)["request_id"]
    served.close()
    falaj.home = served.home
    r = falaj.ok("decisions", "show", rid)
    assert "variant: live" in r.stdout
    assert "inputs[0]: age=41.0, income=52000.0, debt_to_income=0.31, region=" in r.stdout
    shown = json.loads(falaj.ok("decisions", "show", rid, "--json").stdout)
    assert shown["inputs"][0]["income"] == 52000.0 and shown["verified"]
