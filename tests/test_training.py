"""falaj train: time-ordered hold-out, metrics, signed bundle, registered versions."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as SkLogistic
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler as SkScaler

from appliance.errors import BadInput
from appliance.registry import bundles
from tests.conftest import ACTOR, FEATURES, LOANS


@pytest.fixture
def loaded(app, credit_csv):
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    return app


def test_train_prints_version_and_registers(falaj, credit_csv):
    falaj.ok("init")
    falaj.ok("ingest", credit_csv, *LOANS)
    r = falaj.ok("train", "--table", "loans", "--label", "default", "--name", "credit")
    assert r.stdout.strip() == "1"
    assert "hold-out ROC AUC" in r.stderr
    r = falaj.ok("train", "--table", "loans", "--label", "default", "--name", "credit")
    assert r.stdout.strip() == "2"
    listed = json.loads(falaj.ok("models", "list", "--json").output)
    assert [(m["name"], m["version"]) for m in listed] == [("credit", 1), ("credit", 2)]
    shown = json.loads(falaj.ok("models", "show", "credit@2").output)
    assert shown["features"] == FEATURES
    assert falaj.ok("models", "verify", "credit@1").output.startswith(
        "credit@1: bundle verified (6 files)"
    )


def test_model_matches_scikit_learn_on_the_time_ordered_split(loaded):
    r = loaded.training.train("loans", "default", "credit", ACTOR)
    data = loaded.features.query(
        f'SELECT {", ".join(FEATURES)}, "default" FROM loans ORDER BY event_time, customer_id'
    )
    X = np.array([[row[f] for f in FEATURES] for row in data], dtype=float)
    y = np.array([row["default"] for row in data], dtype=float)
    n_train = int(round(len(y) * 0.8))
    scaler = SkScaler().fit(X[:n_train])
    sk = SkLogistic(C=1.0, tol=1e-10, max_iter=1000).fit(scaler.transform(X[:n_train]), y[:n_train])
    auc = roc_auc_score(y[n_train:], sk.predict_proba(scaler.transform(X[n_train:]))[:, 1])
    assert r["metrics"]["holdout"]["rows"] == len(y) - n_train
    assert r["metrics"]["holdout"]["roc_auc"] == pytest.approx(auc, abs=1e-6)
    model = loaded.registry.load("credit", r["version"])
    np.testing.assert_allclose(model.estimator.coef_, sk.coef_[0], rtol=1e-4, atol=1e-6)
    assert r["metrics"]["holdout"]["roc_auc"] > 0.6  # the demo data has real signal
    assert r["gates_passed"]


def test_bundle_contents_and_lineage(loaded):
    assert loaded.training.train("loans", "default", "credit", ACTOR)["version"] == 1
    path = loaded.home / "artifacts" / "credit" / "v1"
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(["MANIFEST", "MANIFEST.sig", "impute.json", "lineage.json", "metrics.json",
                            "model.json", "schema.json", "transform.json"])  # fmt: skip
    manifest = (path / "MANIFEST").read_text().splitlines()
    assert len(manifest) == 6
    for line in manifest:
        digest, name = line.split("  ")
        assert bundles.sha256_bytes((path / name).read_bytes()) == digest
    lineage = json.loads((path / "lineage.json").read_text())
    assert lineage["table"] == "loans" and lineage["rows"] == 3000
    assert lineage["event_time_from_us"] < lineage["holdout_from_us"] <= lineage["event_time_to_us"]
    record = loaded.registry.version("credit", 1, ACTOR)
    assert record["data_fingerprint"] == lineage["data_fingerprint"]
    # the fill values are the training rows' means, which serving uses for missing values
    impute = json.loads((path / "impute.json").read_text())
    assert [v["name"] for v in impute["values"]] == FEATURES
    model = loaded.registry.load("credit", 1)
    assert model.fill == [v["value"] for v in impute["values"]]
    assert model.filled_matrix([{}])[0].tolist() == model.fill
    # the same data gives the same fingerprint
    loaded.training.train("loans", "default", "credit", ACTOR)
    assert (
        loaded.registry.version("credit", 2, ACTOR)["data_fingerprint"]
        == lineage["data_fingerprint"]
    )
    assert not list((loaded.home / "artifacts" / "credit").glob(".*"))  # no temporary folders left
    events = [e["action"] for e in loaded.audit.tail(2, ACTOR)]
    assert events == ["model.register", "model.register"]


def test_bad_training_requests(loaded, tmp_path):
    with pytest.raises(BadInput, match="table 'nope' does not exist"):
        loaded.training.train("nope", "default", "m", ACTOR)
    with pytest.raises(BadInput, match="has no column 'target'"):
        loaded.training.train("loans", "target", "m", ACTOR)
    with pytest.raises(BadInput, match="labels must be 0 or 1, found"):
        loaded.training.train("loans", "num_late_payments", "m", ACTOR)
    with pytest.raises(BadInput, match="model name 'bad name' is not valid"):
        loaded.training.train("loans", "default", "bad name", ACTOR)
    assert loaded.registry.versions(ACTOR) == []


def test_gate_failure_exits_1_and_blocks_deploy(falaj, tmp_path):
    # x predicts y until the hold-out period, where the relation flips: the model must fail
    lines = ["id,ts,x,y"]
    for i in range(200):
        y = i % 2
        x = y if i < 160 else 1 - y
        lines.append(f"{i},2025-01-01T00:{i // 60:02d}:{i % 60:02d},{x + 0.1 * (i % 7)},{y}")
    (tmp_path / "flip.csv").write_text("\n".join(lines) + "\n")
    falaj.ok("init")
    falaj.ok(
        "ingest", tmp_path / "flip.csv", "--table", "noise", "--entity", "id", "--timestamp", "ts"
    )
    r = falaj("train", "--table", "noise", "--label", "y", "--name", "noise")
    assert r.exit_code == 1 and "gates FAILED" in r.stderr
    shown = json.loads(falaj.ok("models", "show", "noise@1").output)
    assert shown["metrics"]["gates"] == {
        "beats_baseline_log_loss": False,
        "roc_auc_above_chance": False,
        "passed": False,
    }
    r = falaj("deploy", "noise", "--version", "1")
    assert r.exit_code == 1 and "failed its gates" in r.stderr
    falaj.ok("deploy", "noise", "--version", "1", "--force")
