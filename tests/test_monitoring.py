"""Monitoring against real stores: the bundle's reference, a pass over the decision log
(drift with the four measures, latency, live AUC from outcomes), alerts with their audit
events, the webhook to a real local HTTP server, release evidence, the CLI and the API."""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance import demo
from appliance.core import Appliance
from appliance.errors import BadInput, NotFound
from appliance.monitoring import monitor_matrix, reference
from appliance.monitoring.alerts import check_webhook_url
from appliance.monitoring.reference import Reference
from appliance.stores import monitoring as store
from kernels.stats import ReferenceSummary, drift, roc_auc
from tests.conftest import ACTOR, FEATURES, admin_client, find_free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """credit@1 trained on the demo's numeric columns, deployed; the data it came from."""
    root = tmp_path_factory.mktemp("monitoring")
    data = demo.credit_risk(3000, seed=3)
    pacsv.write_csv(data, root / "credit.csv")
    app = Appliance.open({"home": str(root / "home")})
    app.init(ACTOR)
    app.ingestion.ingest(root / "credit.csv", "loans", "customer_id", "event_time", ACTOR)
    trained = app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
    app.serving.deploy("credit", 1, ACTOR)
    app.monitoring.configure("credit", ACTOR, min_rows=100)
    yield app, data.to_pylist(), trained
    app.close()


def _records(rows, lo, hi, **scale):
    out = []
    for r in rows[lo:hi]:
        rec = {f: r[f] for f in FEATURES}
        for k, v in scale.items():
            rec[k] = rec[k] * v
        out.append(rec)
    return out


def _predict(app, records, size=50):
    for i in range(0, len(records), size):
        app.serving.predict("credit", records[i : i + size], ACTOR)
    app.decision_log.flush()


def _gauges(app):
    """/metrics' samples: (name, sorted labels) -> value."""
    text = app.metrics.text().decode()
    return {(m.name, tuple(sorted(x.labels.items()))): x.value
            for m in text_string_to_metric_families(text) for x in m.samples}  # fmt: skip


def _audit(app, action):
    return [e for e in app.control.audit_events() if e["action"] == action]


def test_the_bundle_carries_the_training_reference(served):
    app, _, trained = served
    model = app.registry.load("credit", 1, ACTOR)
    ref = Reference(model.reference)
    assert ref.names == FEATURES and ref.error is None
    assert ref.doc["rows"] == 2400  # the training rows (the latest 20% held out)
    assert all(c.n <= 2400 for c in ref.features.columns)
    income = ref.features.columns[FEATURES.index("income")]  # 2,400 distinct: a sketch
    assert not income.exact and len(income.points) <= reference.MAX_POINTS
    assert ref.prediction.columns[0].name == "probability" and ref.prediction.columns[0].n == 600
    assert ref.holdout["roc_auc"] == trained["metrics"]["holdout"]["roc_auc"]


def test_shifted_income_drifts_and_raises_one_alert_until_it_clears(served):
    app, rows, _ = served
    shifted = _records(rows, 0, 400, income=4.0)
    _predict(app, shifted)
    r = app.monitoring.run_pass(ACTOR, "credit", window="1h")
    s = next(s for s in r["models"]["credit"] if s["window"] == "1h")
    assert (s["variant"], s["version"]) == ("live", 1)
    assert s["requests"] >= 400 and s["monitored_rows"] == s["requests"]
    assert max(s["psi"], key=s["psi"].get) == "income" and s["psi"]["income"] > 1.0
    assert s["latency_p50_ms"] > 0 and s["latency_p99_ms"] >= s["latency_p50_ms"]
    # the measures are the kernel's over the logged monitor vectors
    model = app.registry.load("credit", 1, ACTOR)
    logged = store.decision_window(app.features, "credit", None, None)
    _, X = monitor_matrix(logged["inputs"], len(FEATURES))
    want = drift(ReferenceSummary.from_dict(model.reference["features"]), X)
    j = FEATURES.index("income")
    for measure in ("psi", "ks_statistic", "wasserstein", "jensenshannon"):
        assert s["drift"]["income"][measure] == pytest.approx(want[measure][j])
    key = (("feature", "income"), ("measure", "psi"), ("model", "credit"))
    assert _gauges(app)[("falaj_drift", key)] == s["psi"]["income"]  # the first window's
    opened = [a for a in r["alerts"] if (a["kind"], a["feature"]) == ("feature_drift", "income")]
    assert len(opened) == 1 and opened[0]["status"] == "open" and opened[0]["value"] > 1.0
    alert_id = opened[0]["id"]
    assert f"credit#{alert_id}" in [e["subject"] for e in _audit(app, "monitor.alert")]
    open_now = len(app.monitoring.alerts(ACTOR, model="credit"))
    assert open_now >= 1 and _gauges(app)[("falaj_alerts_open", (("model", "credit"),))] == open_now

    again = app.monitoring.run_pass(ACTOR, "credit", window="1h")  # still drifted: no second one
    assert not [a for a in again["alerts"] if a["feature"] == "income"]
    active = [a for a in app.monitoring.alerts(ACTOR, model="credit") if a["feature"] == "income"]
    assert [a["id"] for a in active] == [alert_id]

    acked = app.monitoring.acknowledge(alert_id, ACTOR)
    assert acked["status"] == "acknowledged" and acked["updated_by"] == str(ACTOR)
    assert _audit(app, "monitor.alert_ack")[-1]["subject"] == f"credit#{alert_id}"
    with pytest.raises(BadInput, match="acknowledged, not open"):
        app.monitoring.acknowledge(alert_id, ACTOR)
    with pytest.raises(NotFound):
        app.monitoring.acknowledge(99999, ACTOR)

    _predict(app, _records(rows, 400, 700))  # the training distribution again
    cleared = app.monitoring.run_pass(ACTOR, "credit", window="300")
    s = cleared["models"]["credit"][0]
    assert s["window"] == "last 300" and s["requests"] == 300 and s["psi"]["income"] < 0.2
    resolved = [a for a in cleared["alerts"] if a["id"] == alert_id]
    assert resolved and resolved[0]["status"] == "resolved"
    assert _audit(app, "monitor.alert_resolved")[-1]["subject"] == f"credit#{alert_id}"
    status = app.monitoring.status("credit", ACTOR)
    assert {(x["variant"], x["window"]) for x in status["snapshots"]} >= {("live", "1h"),
                                                                         ("live", "last 300")}  # fmt: skip
    assert len(status["history"]["live|1h"]) == 2  # one point per pass


def test_outcomes_by_request_id_give_live_auc(served):
    app, rows, _ = served
    with pytest.raises(BadInput, match="one join, not both"):
        app.monitoring.set_outcomes("credit", ACTOR, "loans", "default", request_id="x",
                                    entity="customer_id", timestamp="event_time")  # fmt: skip
    ids, labels, outputs = [], [], []
    for r in rows[1000:1060]:  # one record a request: the request id names the decision
        out = app.serving.predict("credit", _records([r], 0, 1), ACTOR)
        ids.append(out["request_id"])
        labels.append(r["default"])
        outputs.append(out["predictions"][0])
    app.decision_log.flush()
    now = datetime.now(UTC).replace(tzinfo=None)
    outcomes = pa.table({"request_id": ids, "customer": [f"c{i}" for i in range(len(ids))],
                         "at": [now] * len(ids), "repaid_default": labels})  # fmt: skip
    app.ingestion.ingest(outcomes, "outcomes", "customer", "at", ACTOR)
    with pytest.raises(BadInput, match="no label column 'nope'"):
        app.monitoring.set_outcomes("credit", ACTOR, "outcomes", "nope", request_id="request_id")
    cfg = app.monitoring.set_outcomes("credit", ACTOR, "outcomes", "repaid_default",
                                      request_id="request_id")  # fmt: skip
    assert cfg["outcomes"] == {"table": "outcomes", "label": "repaid_default",
                               "request_id": "request_id"}  # fmt: skip
    s = app.monitoring.run_pass(ACTOR, "credit", window="1h")["models"]["credit"][0]
    assert s["metric"]["labelled"] == len(ids)
    assert s["metric"]["auc"] == pytest.approx(roc_auc(np.array(labels), np.array(outputs)))
    assert s["metric"]["log_loss"] > 0 and s["metric"]["holdout_auc"] > 0.5


def _decisions(model, n, *, at, variant="live", version=1, release_id=None, keys=None,
               inputs=None, outputs=None, latency=1.0):  # fmt: skip
    ts = [at + timedelta(seconds=i) for i in range(n)]
    ids = [f"{model}-{variant}-{at.timestamp()}-{i}" for i in range(n)]
    return pa.table({
        "ts": pa.array(ts, pa.timestamp("us")), "request_id": ids,
        "row_in_request": pa.array([0] * n, pa.int32()), "actor": ["test:pytest"] * n,
        "model": [model] * n, "version": pa.array([version] * n, pa.int32()),
        "slot": ["blue"] * n, "input_fingerprint": ids,
        "output": pa.array(outputs if outputs is not None else np.linspace(0.1, 0.9, n)),
        "latency_ms": pa.array([latency] * n, pa.float64()), "variant": [variant] * n,
        "release_id": pa.array([release_id] * n, pa.int64()), "served": [True] * n,
        "request_key": keys or ids,
        "inputs": pa.array(inputs if inputs is not None else [None] * n, pa.list_(pa.float64())),
    })  # fmt: skip


def _append(app, table, batch):
    with app.features.transaction() as tx:
        tx.append_decisions(table, batch, table.num_rows, "0" * 64, datetime.now(UTC))


def test_outcomes_by_entity_take_the_latest_decision_at_or_before_them(served):
    app, _, _ = served
    t0 = datetime(2020, 1, 1)
    table = _decisions("asof", 3, at=t0, keys=["e1", "e1", "e2"], outputs=[0.1, 0.2, 0.3])
    _append(app, table, "asof-1")
    outcomes = pa.table({"who": ["e1", "e1", "e2", "e3"],
                         "when": [t0 + timedelta(seconds=1, milliseconds=500),  # after 2nd
                                  t0 + timedelta(seconds=0, milliseconds=10),  # after 1st
                                  t0,  # before e2's decision: no match
                                  t0 + timedelta(days=1)],  # no decision for e3
                         "y": [1, 0, 1, 1]})  # fmt: skip
    app.ingestion.ingest(outcomes, "asof_outcomes", "who", "when", ACTOR)
    joined = store.joined_outcomes(app.features, "asof", {"table": "asof_outcomes", "label": "y",
                                   "entity": "who", "timestamp": "when"}, None)  # fmt: skip
    got = sorted(zip(joined["output"].to_pylist(), joined["label"].to_pylist(), strict=True))
    assert got == [(0.1, 0.0), (0.2, 1.0)]


def test_release_evidence_reports_each_variant(served):
    app, _, _ = served
    model = app.registry.load("credit", 1, ACTOR)
    rng = np.random.default_rng(1)
    ref = Reference(model.reference)
    # vectors drawn from the reference's own points: no drift for the baseline...
    cols = ref.features.columns
    weights = [np.diff(c.cdf, prepend=0.0) for c in cols]  # a sketch's may not sum to 1
    draw = np.column_stack(
        [rng.choice(c.points, 400, p=w / w.sum()) for c, w in zip(cols, weights, strict=True)]
    )
    moved = draw.copy()
    moved[:, FEATURES.index("loan_amount")] *= 5  # ...and a lot for the candidate
    at = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
    _append(app, _decisions("credit", 400, at=at, variant="baseline", release_id=42,
                            inputs=draw.tolist(), latency=2.0), "rel-b")  # fmt: skip
    _append(app, _decisions("credit", 300, at=at, variant="candidate", release_id=42,
                            inputs=moved[:300].tolist(), latency=3.0), "rel-c")  # fmt: skip
    ev = app.monitoring.release_evidence("credit", 42, ACTOR)
    assert set(ev) == {"baseline", "candidate"}
    b, c = ev["baseline"], ev["candidate"]
    assert (b["requests"], c["requests"]) == (400, 300)
    assert (b["latency_p99_ms"], c["latency_p99_ms"]) == (2.0, 3.0)
    assert set(b["drift"]) == set(FEATURES) and b["max_psi"] < 0.2
    assert c["drift"]["loan_amount"] == c["max_psi"] > 1.0
    assert b["prediction_psi"] is not None and b["metric"] == {"auc": None, "labelled": 0}


def test_a_model_without_reference_says_why(served, monkeypatch):
    app, _, _ = served
    real = app.registry.load

    def load(name, version, actor):
        m = real(name, version, actor)
        m.reference = None
        return m

    monkeypatch.setattr(app.monitoring, "_references", {})
    monkeypatch.setattr(app.registry, "load", load)
    s = app.monitoring.run_pass(ACTOR, "credit", window="1h")["models"]["credit"][0]
    assert "trained before monitoring" in s["drift_reason"] and s["psi"] == {}
    assert s["requests"] > 0 and s["latency_p99_ms"] is not None
    monkeypatch.undo()
    app.monitoring._references.clear()


def test_monitor_vectors_of_any_shape_reshape_without_a_loop():
    arr = pa.array([[1.0, 2.0], None, [3.0], [4.0, None], [5.0, 6.0]], pa.list_(pa.float64()))
    ok, X = monitor_matrix(pa.chunked_array([arr[:2], arr[2:]]), 2)
    assert ok.tolist() == [True, False, False, True, True]
    np.testing.assert_array_equal(X, [[1.0, 2.0], [4.0, np.nan], [5.0, 6.0]])
    ok, X = monitor_matrix(pa.array([[1.0, 2.0], [3.0, 4.0]])[1:], 2)  # offset slice
    assert ok.tolist() == [True] and X.tolist() == [[3.0, 4.0]]


@pytest.mark.parametrize("url,message", [
    ("ftp://127.0.0.1/x", "scheme must be http or https"),
    ("http://8.8.8.8/hook", "8.8.8.8 is a public address"),
    ("http://169.254.169.254/", "public address"),
    ("http:///nohost", "no host"),
    ("http://127.0.0.1:99999/", "port"),
])  # fmt: skip
def test_webhook_urls_outside_the_lan_are_refused(url, message):
    with pytest.raises(BadInput, match=message):
        check_webhook_url(url)


def test_webhook_lan_urls_are_accepted():
    for url in ("http://127.0.0.1:9000/a", "https://10.1.2.3/a", "http://192.168.1.20/",
                "http://[::1]:8080/", "http://localhost:8080/"):  # fmt: skip
        check_webhook_url(url)


class _Receiver(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802
        _Receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_alerts_reach_a_local_webhook_and_failures_are_retried(served):
    app, rows, _ = served
    port = find_free_port()
    app.monitoring.set_webhook(f"http://127.0.0.1:{port}/alerts", ACTOR)
    assert _audit(app, "monitor.webhook")[-1]["subject"] == f"http://127.0.0.1:{port}/alerts"
    app.monitoring.configure("credit", ACTOR, latency_p99_ms=0.0)  # every pass breaches
    r = app.monitoring.run_pass(ACTOR, "credit", window="1h")  # nobody listens yet
    assert app.monitoring.deliver_alerts(10) >= 1
    failed = [a for a in app.monitoring.alerts(ACTOR, model="credit") if a["kind"] == "latency_p99"]
    assert failed[0]["attempts"] == 1 and failed[0]["last_error"] and not failed[0]["delivered_at"]
    assert r["models"]["credit"]  # the pass finished all the same

    _Receiver.bodies = []
    server = HTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app.monitoring.run_pass(ACTOR, "credit", window="1h")  # retries what is pending
        assert app.monitoring.deliver_alerts(10) == 0
    finally:
        server.shutdown()
        server.server_close()
        app.monitoring.configure("credit", ACTOR, latency_p99_ms=250.0)
        app.monitoring.set_webhook("", ACTOR)
    kinds = {(b["source"], b["alert"]["kind"]) for b in _Receiver.bodies}
    assert ("falaj", "latency_p99") in kinds
    sent = next(b["alert"] for b in _Receiver.bodies if b["alert"]["kind"] == "latency_p99")
    assert sent["model"] == "credit" and sent["id"] == failed[0]["id"]
    subject = f"credit#{sent['id']}"
    assert subject in [e["subject"] for e in _audit(app, "monitor.webhook_failed")]
    assert subject in [e["subject"] for e in _audit(app, "monitor.webhook_sent")]
    assert "p99 latency" in sent["message"]


def test_the_api(served):
    app, rows, _ = served
    _predict(app, _records(rows, 2000, 2100))
    client = admin_client(app)
    r = client.post("/api/v1/monitoring/run", json={"model": "credit", "window": "1h"})
    assert r.status_code == 200 and r.get_json()["models"]["credit"][0]["requests"] >= 100
    status = client.get("/api/v1/monitoring/models/credit").get_json()
    assert status["model"] == "credit" and status["snapshots"]
    assert status["config"]["thresholds"]["min_rows"] == 100
    assert client.get("/api/v1/monitoring").get_json()["models"][0]["model"] == "credit"
    r = client.put("/api/v1/monitoring/models/credit/config", json={"psi": -1})
    assert r.status_code == 400 and "psi" in r.get_json()["error"]["message"]
    r = client.put("/api/v1/monitoring/models/credit/config", json={"psi": 0.3})
    assert r.status_code == 200 and r.get_json()["thresholds"]["psi"] == 0.3
    assert client.post("/api/v1/monitoring/alerts/99999/ack").status_code == 404
    assert client.get("/api/v1/monitoring/models/nope").status_code == 404
    r = client.put("/api/v1/monitoring/webhook", json={"url": "http://93.184.216.34/"})
    assert r.status_code == 400 and "public address" in r.get_json()["error"]["message"]
    r = client.post("/api/v1/monitoring/run", json={"model": "nope"})
    assert r.status_code == 404
    assert client.get("/api/v1/monitoring/alerts?all=1").get_json()["alerts"]
    page = client.get("/monitoring")
    assert page.status_code == 200 and b"psi-history" in page.data and b"Acknowledge" in page.data


def test_the_cli(falaj):
    falaj.ok("init")
    assert "no decisions logged yet" in falaj.ok("monitor", "run").output
    assert json.loads(falaj.ok("monitor", "alerts", "--json").output) == []
    bad = falaj("monitor", "webhook", "http://8.8.8.8/x")
    assert bad.exit_code == 2 and "public address" in bad.stderr
    assert falaj("monitor", "ack", "7").exit_code == 2
    assert falaj("monitor", "config", "credit", "--psi", "-1").exit_code == 2
    out = json.loads(falaj.ok("monitor", "config", "credit", "--psi", "0.3", "--json").output)
    assert out["thresholds"]["psi"] == 0.3 and out["thresholds"]["prediction_psi"] == 0.2
    assert "alerts go to http://127.0.0.1:9/x" in falaj.ok("monitor", "webhook",
                                                           "http://127.0.0.1:9/x").output  # fmt: skip
    missing = falaj("monitor", "outcomes", "credit", "--table", "t", "--label", "y",
                    "--request-id", "id")  # fmt: skip
    assert missing.exit_code == 2 and "no table 't'" in missing.stderr


def test_one_model_failing_does_not_stop_a_pass_over_all(served, monkeypatch):
    app, rows, _ = served
    _predict(app, _records(rows, 2100, 2150))
    _append(app, _decisions("other", 5, at=datetime(2020, 1, 1)), "other-1")
    real = app.monitoring._model_pass

    def model_pass(name, windows, at):
        if name == "credit":
            raise RuntimeError("boom")
        return real(name, windows, at)

    monkeypatch.setattr(app.monitoring, "_model_pass", model_pass)
    r = app.monitoring.run_pass(ACTOR, window="1d")
    others = set(store.logged_models(app.features)) - {"credit"}
    assert r["errors"] == {"credit": "boom"} and set(r["models"]) == others
    with pytest.raises(RuntimeError):
        app.monitoring.run_pass(ACTOR, "credit", window="1d")  # asked for by name: it raises
