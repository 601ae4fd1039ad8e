"""A model trained on feature views, served by entity id: a training set from a spine and
a view, `train --training-set`, deploy, materialize, then `{"entities": [...]}` is
answered with the online store's features through the model's own transforms."""

import json
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from appliance.errors import BadInput, CheckFailed
from tests.conftest import ACTOR, FEATURES, Falaj

START = datetime(2024, 1, 1)
N_CUSTOMERS = 120


def feature_rows(seed: int = 5) -> pa.Table:
    """Three snapshots per customer over the year; risk drifts with each snapshot."""
    rng = np.random.default_rng(seed)
    ids, times, debt, income = [], [], [], []
    for c in range(N_CUSTOMERS):
        base = rng.normal()
        for k in range(3):
            ids.append(f"c{c}")
            times.append(START + timedelta(days=100 * k + int(rng.integers(0, 30))))
            debt.append(float(base + 0.3 * k + rng.normal(scale=0.1)))
            income.append(float(rng.normal(50, 10)))
    return pa.table({"customer_id": ids, "event_time": pa.array(times, pa.timestamp("us")),
                     "debt": debt, "income": income})  # fmt: skip


def spine(rows: pa.Table, seed: int = 6) -> pa.Table:
    """One label per customer at a time after its last snapshot, driven by its debt."""
    rng = np.random.default_rng(seed)
    last = {}
    for cid, t, d in zip(*(rows[c].to_pylist() for c in ("customer_id", "event_time", "debt")),
                         strict=True):  # fmt: skip
        last[cid] = max(last.get(cid, (t, d)), (t, d))
    ids = sorted(last)
    times = [last[c][0] + timedelta(days=int(rng.integers(1, 20))) for c in ids]
    labels = [int(last[c][1] + rng.normal(scale=0.3) > 0.3) for c in ids]
    return pa.table({"customer_id": ids, "event_timestamp": pa.array(times, pa.timestamp("us")),
                     "default": labels})  # fmt: skip


@pytest.fixture
def view_model(app, tmp_path):
    """profile view -> training set -> risk@1 trained on it, deployed and materialized."""
    rows = feature_rows()
    app.ingestion.ingest(rows, "profiles", "customer_id", "event_time", ACTOR)
    app.views.define("profile", "profiles", ACTOR, columns=["debt", "income"])
    out = tmp_path / "train.parquet"
    built = app.training_sets.build(spine(rows), ["profile:*"], ACTOR, out=out)
    trained = app.training.train_on_set(built["id"], "default", "risk", ACTOR)
    app.serving.deploy("risk", trained["version"], ACTOR)
    app.online.materialize("profile", ACTOR)
    return app, rows, built, out


def latest(rows: pa.Table, cid: str) -> dict:
    mine = [r for r in rows.to_pylist() if r["customer_id"] == cid]
    return max(mine, key=lambda r: r["event_time"])


def test_a_model_trained_on_views_serves_by_entity(view_model):
    app, rows, built, _ = view_model
    model = app.registry.load("risk", 1)
    assert model.online == {
        "entities": ["customer_id"],
        "features": {"debt": "profile@1:debt", "income": "profile@1:income"},
    }
    lineage = app.registry.version("risk", 1, ACTOR)
    assert lineage["source_table"] == f"training-set:{built['id']}"
    ids = ["c3", "c77", "c3"]
    by_entity = app.serving.predict_entities("risk", [{"customer_id": c} for c in ids], ACTOR)
    # the same features sent as records give the same answers: one code path
    records = [{f: latest(rows, c)[f] for f in ("debt", "income")} for c in ids]
    by_record = app.serving.predict("risk", records, ACTOR)
    np.testing.assert_allclose(by_entity["predictions"], by_record["predictions"], rtol=1e-12)
    assert by_entity["statuses"][0] == {"debt": "PRESENT", "income": "PRESENT"}
    assert by_entity["version"] == 1
    logged = app.serving.decision(by_entity["request_id"], ACTOR)
    assert logged["outputs"] == pytest.approx(by_entity["predictions"]) and logged["verified"]


def test_missing_entities_and_the_wrong_kind_of_model_are_refused(view_model, credit_csv):
    app, *_ = view_model
    with pytest.raises(BadInput, match=r"entities\[1\]: entity customer_id='nobody' has no "
                                       r"features in view profile@1"):  # fmt: skip
        app.serving.predict_entities("risk", [{"customer_id": "c1"},
                                              {"customer_id": "nobody"}], ACTOR)  # fmt: skip
    with pytest.raises(BadInput, match=r"entities\[0\]: missing key 'customer_id'"):
        app.serving.predict_entities("risk", [{"id": "c1"}], ACTOR)
    with pytest.raises(BadInput, match="non-empty list"):
        app.serving.predict_entities("risk", [], ACTOR)
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    app.serving.deploy("credit", 1, ACTOR)
    with pytest.raises(BadInput, match="credit@1 was not trained on feature views"):
        app.serving.predict_entities("credit", [{"customer_id": "c1"}], ACTOR)


def test_expired_and_null_values_take_the_training_means(app, tmp_path):
    rows = feature_rows()
    app.ingestion.ingest(rows, "profiles", "customer_id", "event_time", ACTOR)
    app.views.define("profile", "profiles", ACTOR, columns=["debt", "income"], ttl="30d")
    built = app.training_sets.build(spine(rows), ["profile:*"], ACTOR, out=tmp_path / "t.parquet")
    app.training.train_on_set(built["id"], "default", "risk", ACTOR)
    app.serving.deploy("risk", 1, ACTOR)
    app.online.materialize("profile", ACTOR)
    model = app.registry.load("risk", 1)
    # every 2024 row is far older than 30 days now: values expire and read as null
    r = app.serving.predict_entities("risk", [{"customer_id": "c5"}], ACTOR)
    assert r["statuses"] == [{"debt": "OUTSIDE_MAX_AGE", "income": "OUTSIDE_MAX_AGE"}]
    # expired values are missing ones: the pipeline imputes them as training did
    expected = model.predict_records([{"debt": None, "income": None}])
    np.testing.assert_allclose(r["predictions"], expected, rtol=1e-12)
    means = model.pipeline.to_dict()
    assert "debt" in str(means) and "income" in str(means)


def test_training_sets_are_checked_before_training(view_model):
    app, _, built, out = view_model
    with pytest.raises(BadInput, match="has no column 'nope'"):
        app.training.train_on_set(built["id"], "nope", "risk", ACTOR)
    # the file by path works too, and names the same set
    r = app.training.train_on_set(str(out), "default", "risk", ACTOR)
    assert r["training_set"] == built["id"] and r["version"] == 2
    data = pq.read_table(out)
    pq.write_table(data.slice(1), out)  # one row fewer: not what was registered
    with pytest.raises(CheckFailed, match="changed since it was registered"):
        app.training.train_on_set(built["id"], "default", "risk", ACTOR)
    with pytest.raises(BadInput, match="not a registered training set"):
        app.training.train_on_set(str(out), "default", "risk", ACTOR)


def test_the_cli_and_the_http_api_serve_by_entity(view_model, start_server):
    app, rows, built, _ = view_model
    home = app.home
    app.close()
    falaj = Falaj(home)
    r = falaj.ok("train", "--training-set", built["id"], "--label", "default", "--name", "risk",
                 "--json")  # fmt: skip
    assert json.loads(r.stdout)["version"] == 2
    r = falaj("train", "--training-set", built["id"], "--table", "x", "--label", "default",
              "--name", "risk")  # fmt: skip
    assert r.exit_code == 2 and "either --table or --training-set" in r.stderr
    server = start_server(home)
    status, body = server.request("POST", "/api/v1/models/risk/predict",
                                  {"entities": [{"customer_id": "c9"}]})  # fmt: skip
    assert status == 200, body
    assert body["version"] == 1 and 0 < body["predictions"][0] < 1
    status, body = server.request("POST", "/api/v1/models/risk/predict",
                                  {"entities": [{"customer_id": "c9999"}]})  # fmt: skip
    assert status == 400 and "c9999" in body["error"]["message"]
    status, body = server.request("POST", "/api/v1/models/risk/predict",
                                  {"entities": [{"customer_id": "c9"}], "records": [{}]})  # fmt: skip
    assert status == 400 and "either" in body["error"]["message"]
