"""/metrics: Prometheus' own parser reads what a live server counted, and the counts equal
what was sent."""

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance import demo
from appliance.core import Appliance
from appliance.monitoring.metrics import Metrics
from tests.conftest import ACTOR, FEATURES, RECORD, Server


def metrics_request(server) -> urllib.request.Request:
    return urllib.request.Request(server.url + "/metrics", headers=server.headers())


def samples(text: str) -> dict[tuple, float]:
    """Every sample as (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def labels(**kw) -> tuple:
    return tuple(sorted(kw.items()))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    home = tmp / "home"
    app = Appliance.open({"home": str(home)})
    try:
        app.init(ACTOR)
        app.ingestion.ingest(demo.write(tmp / "credit.parquet", 500), "loans", "customer_id",
                             "event_time", ACTOR)  # fmt: skip
        app.training.train("loans", "default", "credit", ACTOR, features=tuple(FEATURES))
        app.serving.deploy("credit", 1, ACTOR)
    finally:
        app.close()
    s = Server(home, "--decision-log", "durable").wait()
    yield s
    s.stop()


def test_metrics_count_what_was_sent(server):
    for _ in range(5):
        assert (
            server.request("POST", "/api/v1/models/credit/predict", {"records": [RECORD]})[0] == 200
        )
    for _ in range(2):
        body = {"records": [RECORD] * 3}
        assert server.request("POST", "/api/v1/models/credit/predict", body)[0] == 200
    for _ in range(2):  # MLflow's scoring protocol counts the same way
        body = {"dataframe_records": [RECORD]}
        assert server.request("POST", "/models/credit/invocations", body)[0] == 200
    for _ in range(3):
        assert server.request("POST", "/api/v1/models/credit/predict", {"rows": []})[0] == 400
    assert server.request("POST", "/api/v1/models/nobody/predict", {"records": [RECORD]})[0] == 404

    with urllib.request.urlopen(metrics_request(server), timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        got = samples(r.read().decode())

    ok = labels(model="credit", version="1", variant="live", status="ok")
    assert got[("falaj_requests_total", ok)] == 9
    bad = labels(model="credit", version="", variant="", status="client_error")
    assert got[("falaj_requests_total", bad)] == 3
    unknown = labels(model="", version="", variant="", status="client_error")
    assert got[("falaj_requests_total", unknown)] == 1  # an unknown name is no label
    assert got[("falaj_request_seconds_count", ok)] == 9
    buckets = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in got.items()
        if k[0] == "falaj_request_seconds_bucket" and dict(k[1])["status"] == "ok"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1] == (float("inf"), 9)
    assert dict(buckets)[10.0] == 9  # none took ten seconds
    assert 0 < got[("falaj_request_seconds_sum", ok)] < 9 * 10
    rows = labels(model="credit", version="1", variant="live")
    assert got[("falaj_rows_scored_total", rows)] == 5 + 2 * 3 + 2
    # durable: each request, sent one at a time, committed its own batch before answering
    assert got[("falaj_decision_batches_total", ())] == 9
    assert got[("falaj_decision_rows_total", ())] == 13
    assert got[("falaj_decision_batch_seconds_count", ())] == 9

    status, health = server.request("GET", "/healthz")
    assert status == 200 and json.dumps(health)  # /healthz is not a scoring request
    with urllib.request.urlopen(metrics_request(server), timeout=30) as r:
        assert samples(r.read().decode())[("falaj_requests_total", ok)] == 9


def test_drift_alerts_and_job_states_are_gauges():
    m = Metrics()
    m.set_drift("credit", "age", "psi", 0.31)
    m.set_alerts_open("credit", 2)
    m.set_job_state("retrain", "running")
    m.set_job_state("retrain", "succeeded")
    got = samples(m.text().decode())
    assert got[("falaj_drift", labels(model="credit", feature="age", measure="psi"))] == 0.31
    assert got[("falaj_alerts_open", labels(model="credit"))] == 2
    assert got[("falaj_job_state", labels(job="retrain", state="running"))] == 0
    assert got[("falaj_job_state", labels(job="retrain", state="succeeded"))] == 1
    assert Metrics().text() != m.text()  # one registry per appliance, not the global one
