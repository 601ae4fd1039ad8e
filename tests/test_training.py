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

# every column of the credit table but its keys and the label, in table order
INPUTS = [*FEATURES, "loan_purpose", "region", "gender"]
BUNDLE = ["card.json", "lineage.json", "metrics.json", "model.json", "pipeline.json",
          "reference.json", "schema.json", "verdict.json"]  # fmt: skip


@pytest.fixture
def loaded(app, credit_csv):
    app.ingestion.ingest(credit_csv, "loans", "customer_id", "event_time", ACTOR)
    return app


def test_train_prints_version_and_registers(falaj, credit_csv):
    falaj.ok("init")
    falaj.ok("ingest", credit_csv, *LOANS)
    r = falaj.ok("train", "--table", "loans", "--label", "default", "--name", "credit")
    assert r.stdout.strip() == "1"
    assert r.stderr.startswith("credit@1 (linear): hold-out ROC AUC ")
    assert r.stderr.strip().endswith("; gates passed")
    r = falaj.ok("train", "--table", "loans", "--label", "default", "--name", "credit")
    assert r.stdout.strip() == "2"
    listed = json.loads(falaj.ok("models", "list", "--json").output)
    assert [(m["name"], m["version"], m["status"]) for m in listed] == [
        ("credit", 1, "ready"), ("credit", 2, "ready")]  # fmt: skip
    shown = json.loads(falaj.ok("models", "show", "credit@2").output)
    assert shown["features"] == INPUTS  # categorical columns too, keys and label left out
    assert falaj.ok("models", "verify", "credit@1").output.startswith(
        f"credit@1: bundle verified ({len(BUNDLE)} files)"
    )


def test_model_matches_scikit_learn_on_the_time_ordered_split(loaded):
    # numeric inputs without missing values: the pipeline is a standard scaler
    r = loaded.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
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
    assert model.pipeline.feature_names_ == FEATURES
    np.testing.assert_allclose(model.estimator.coef_, sk.coef_[0], rtol=1e-4, atol=1e-6)
    assert r["metrics"]["holdout"]["roc_auc"] > 0.6  # the demo data has real signal
    assert r["gates_passed"]


def test_bundle_contents_and_lineage(loaded):
    assert loaded.training.train("loans", "default", "credit", ACTOR)["version"] == 1
    path = loaded.home / "artifacts" / "credit" / "v1"
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(["MANIFEST", "MANIFEST.sig", *BUNDLE])
    manifest = (path / "MANIFEST").read_text().splitlines()
    assert sorted(line.split("  ")[1] for line in manifest) == BUNDLE
    for line in manifest:
        digest, name = line.split("  ")
        assert bundles.sha256_bytes((path / name).read_bytes()) == digest
    # stored encrypted (a pipeline holds values of the data); read through the registry
    assert not any(b"credit_utilization" in (path / n).read_bytes() for n in BUNDLE)
    docs = loaded.registry.documents("credit", 1, ACTOR)
    lineage = docs["lineage.json"]
    assert lineage["table"] == "loans" and lineage["rows"] == 3000
    split = lineage["split"]
    assert split["kind"] == "time" and split["holdout_rows"] == 600
    assert lineage["event_time_from_us"] < split["holdout_from_us"] <= lineage["event_time_to_us"]
    record = loaded.registry.version("credit", 1, ACTOR)
    assert record["data_fingerprint"] == lineage["data_fingerprint"]
    # the pipeline keeps the training rows' means, which serving uses for missing values
    pipeline = docs["pipeline.json"]
    assert [i["name"] for i in pipeline["inputs"]] == INPUTS
    numeric = next(s for s in pipeline["steps"] if s["kind"] == "numeric")
    assert numeric["columns"] == FEATURES
    model = loaded.registry.load("credit", 1)
    empty = model.matrix([dict.fromkeys(INPUTS)])[0]  # every input null
    at = [model.pipeline.feature_names_.index(f) for f in FEATURES]
    np.testing.assert_allclose(empty[at], 0.0, atol=1e-9)  # the mean, scaled
    assert np.isfinite(model.predict_records([dict.fromkeys(INPUTS)])).all()
    verdict = docs["verdict.json"]
    assert verdict["status"] == "ready" and verdict["passed"] is True
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
    with pytest.raises(BadInput, match="labels must be 0 or 1, found 2"):
        loaded.training.train("loans", "num_late_payments", "m", ACTOR, task="binary")
    with pytest.raises(BadInput, match="model name 'bad name' is not valid"):
        loaded.training.train("loans", "default", "bad name", ACTOR)
    with pytest.raises(BadInput, match="unknown model family 'forest'"):
        loaded.training.train("loans", "default", "m", ACTOR, family="forest")
    with pytest.raises(BadInput, match="has no column 'nope'"):
        loaded.training.train("loans", "default", "m", ACTOR, sensitive="nope")
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
    assert r.exit_code == 1 and "REJECTED by gates: baseline, calibration" in r.stderr
    shown = json.loads(falaj.ok("models", "show", "noise@1").output)
    assert shown["status"] == "rejected"
    gates = {g["gate"]: g["passed"] for g in shown["metrics"]["gates"]["results"]}
    assert gates == {"baseline": False, "champion": True, "robustness_noise": True,
                     "robustness_missing": True, "robustness_unseen": True,
                     "calibration": False}  # fmt: skip
    assert shown["metrics"]["gates"]["passed"] is False
    r = falaj("deploy", "noise", "--version", "1")
    assert r.exit_code == 1
    assert "rejected by its gates (baseline, calibration)" in r.stderr
    falaj.ok("deploy", "noise", "--version", "1", "--force")


def test_bundles_are_sealed_with_the_homes_key(loaded):
    """Bundle files are encrypted at rest: another key cannot read them, and a bundle
    written before encryption (plain files) still verifies."""
    from appliance.errors import BundleTampered
    from appliance.registry import Registry

    loaded.training.train("loans", "default", "credit", ACTOR)
    other = Registry(loaded.control, loaded.home, loaded.registry.signer, b"\x01" * 32)
    with pytest.raises(
        BundleTampered, match="bundle credit@1: .* does not decrypt with this home's key"
    ):
        other.verify("credit", 1, ACTOR)
    plain = bundles.write(loaded.home / "plain", {"a.json": {"x": 1}}, loaded.registry.signer)
    files = bundles.verify(loaded.home / "plain", loaded.registry.public_key, plain,
                           cipher=loaded.registry.cipher)  # fmt: skip
    assert json.loads(files["a.json"]) == {"x": 1}
