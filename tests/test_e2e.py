"""The whole path through the CLI and a real server on a free port."""

import re
import socket
import time

import numpy as np
import pytest

from appliance import demo
from appliance.core import Appliance
from tests.conftest import ACTOR, FEATURES, LOANS, TRAIN

CANARY = "CANARY-7f3e9b1c-falaj"


def test_cli_flow_end_to_end(falaj, home, credit_csv, start_server):
    falaj.ok("init")
    falaj.ok("ingest", credit_csv, *LOANS)
    version = int(falaj.ok(*TRAIN).stdout)
    assert version == 1
    assert "live in the blue slot" in falaj.ok("deploy", "credit", "--version", "1").output

    server = start_server(home)
    status, health = server.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    assert health["deployments"]["credit"] == {
        "version": 1, "slot": "blue", "serving": True, "degraded": {}
    }  # fmt: skip

    table = demo.credit_risk(50, seed=99)
    records = [{f: table[f][i].as_py() for f in FEATURES} for i in range(50)]
    status, body = server.request("POST", "/api/v1/models/credit/predict", {"records": records})
    assert status == 200
    assert (body["model"], body["version"], len(body["predictions"])) == ("credit", 1, 50)

    status, err = server.request("POST", "/api/v1/models/credit/predict", {"records": [{"age": 3}]})
    assert status == 400 and "records[0].income: missing" in err["error"]["message"]

    # the same model through the standard protocols, over real HTTP
    tensors = [
        {"name": f, "shape": [50], "datatype": "FP64", "data": [r[f] for r in records]}
        for f in FEATURES
    ]
    status, v2 = server.request("POST", "/v2/models/credit/infer", {"inputs": tensors})
    assert status == 200 and v2["outputs"][0]["data"] == body["predictions"]
    status, ml = server.request("POST", "/invocations", {"dataframe_records": records})
    assert status == 200 and ml["predictions"] == body["predictions"]

    # the server holds the feature store: other writers get a clear refusal, not a hang
    r = falaj("ingest", credit_csv, *LOANS)
    assert r.exit_code == 2 and "in use by another Falaj process" in r.stderr

    # a redeploy from the CLI while the server runs is picked up by the server
    assert falaj.ok("deploy", "credit", "--version", "1").output  # redeploy to green
    status, body2 = server.request(
        "POST", "/api/v1/models/credit/predict", {"records": records[:1]}
    )
    # one row against a batch of 50: another code path, equal within rounding
    assert status == 200 and body2["predictions"][0] == pytest.approx(
        body["predictions"][0], rel=1e-12
    )
    # taken up at the server's next look at control.db, within milliseconds
    deadline = time.monotonic() + 5
    while server.request("GET", "/healthz")[1]["deployments"]["credit"]["slot"] != "green":
        assert time.monotonic() < deadline, "the redeploy never reached the server"
    server.stop()

    # predictions agree with the model loaded in this process
    app = Appliance.open({"home": str(home)})
    try:
        model = app.registry.load("credit", 1)
        np.testing.assert_allclose(body["predictions"], model.predict_records(records), rtol=1e-12)
        assert app.serving.decision_count(ACTOR, "credit") == 151
        actions = [
            e["action"]
            for e in reversed(app.audit.tail(50, ACTOR))
            if e["action"].split(".")[0] not in ("user", "token")
        ]  # first start, tests' token
        assert actions[:4] == ["home.init", "data.ingest", "model.register", "model.deploy"]
        # each answered request was committed (in a batch of its own, one at a time)
        assert actions[4:] == ["decisions.logged"] * 3 + ["model.deploy", "decisions.logged"]
        assert app.audit.verify(ACTOR).ok
    finally:
        app.close()
    r = falaj.ok("audit", "verify", "--full")  # the 9 above, the first start's admin, a token
    assert r.stdout.strip() == "audit chain verified: 11 events (11 hashed now)"
    assert (
        falaj.ok("audit", "verify").stdout.strip()
        == "audit chain verified: 11 events (0 hashed now)"
    )


def plaintext_files(home) -> list[str]:
    return [
        p.name
        for p in home.rglob("*")
        if p.is_file() and (CANARY.encode() in p.read_bytes() or b"secrets" in p.read_bytes())
    ]


def test_stores_hold_no_plaintext(falaj, home, tmp_path):
    path = tmp_path / "canary.csv"
    rows = [f"{i},2025-01-{1 + i % 28:02d},{CANARY}-{i},{i % 2}" for i in range(500)]
    path.write_text("id,ts,note,y\n" + "\n".join(rows) + "\n")
    falaj.ok("init")
    falaj.ok("ingest", path, "--table", "secrets", "--entity", "id", "--timestamp", "ts")
    assert plaintext_files(home) == []
    # ...and yet the data is there, through the key
    app = Appliance.open({"home": str(home)})
    try:
        assert (
            app.features.query("SELECT note FROM secrets WHERE id = 7")[0]["note"] == f"{CANARY}-7"
        )
    finally:
        app.close()


def test_run_demo_serves_a_model(home, start_server, monkeypatch):
    monkeypatch.setenv("FALAJ_DEMO_ROWS", "5000")
    server = start_server(home, "--demo")
    status, health = server.request("GET", "/healthz")
    assert health["deployments"]["credit_risk"]["version"] == 1
    table = demo.credit_risk(3, seed=5)
    inputs = [*FEATURES, "loan_purpose", "region"]  # the demo model takes its categories too
    recs = [{f: table[f][i].as_py() for f in inputs} for i in range(3)]
    status, body = server.request("POST", "/api/v1/models/credit_risk/predict", {"records": recs})
    assert status == 200 and all(0 < p < 1 for p in body["predictions"])
    log = server.log.read_text()
    assert "demo: ingested 5000 rows" in log and "Falaj serving on" in log
    # the demo ends with version 2 as a 10% canary: either may answer, and says which
    assert (body["version"], body["variant"]) in {(1, "baseline"), (2, "candidate")}
    # the demo model was trained on the applicant view: it also answers by customer id
    customer = table["customer_id"][0].as_py()
    status, body = server.request("POST", "/api/v1/models/credit_risk/predict",
                                  {"entities": [{"customer_id": customer}]})  # fmt: skip
    assert status == 200 and 0 < body["predictions"][0] < 1, body
    assert "demo: built training set" in log and "materialized applicant@1" in log
    # its later months: shocked traffic raises drift alerts, and the drift-triggered
    # pipeline retrains and releases version 2 as a 10% canary that waits for evidence
    assert re.search(r"demo: monitoring: [1-9]\d* alerts \(.*credit_utilization", log), log
    assert re.search(r"demo: pipeline retrain_on_drift run \S+: waiting \(.*register "
                     r"succeeded, release succeeded, decide waiting\)", log), log  # fmt: skip
    status, release = server.request("GET", "/api/v1/models/credit_risk/release")
    assert status == 200, release
    assert release["release"]["strategy"] == "canary" and release["release"]["percent"] == 10
    assert release["release"]["candidate_version"] == 2
    # the pipeline's plaintext training set went once the model was registered
    assert not list(home.glob("tmp/**/*.parquet"))


def test_the_readme_tour(falaj, tmp_path):
    """The tour's first steps, as the README gives them."""
    out = tmp_path / "loans.parquet"
    assert (
        falaj.ok("demo-data", out, "--rows", "2000").stdout.strip() == f"wrote 2000 rows to {out}"
    )
    falaj.ok("init")
    assert "ingested 2000 rows" in falaj.ok("ingest", out, *LOANS).stdout
    assert falaj.ok(*TRAIN).stdout.strip() == "1"
    assert falaj.ok("models", "verify", "credit@1").stdout.startswith("credit@1: bundle verified")
    csv = tmp_path / "loans.csv"
    falaj.ok("demo-data", csv, "--rows", "10")
    assert csv.read_text().splitlines()[0].startswith('"customer_id","event_time","age"')
    assert falaj("demo-data", csv, "--rows", "0").exit_code == 2


def test_run_on_a_taken_port_is_one_clear_line(falaj, home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = falaj("run", "--port", port)
    assert r.exit_code == 2
    assert (
        r.stderr.strip()
        == f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port"
    )
    assert not home.exists()  # it failed before creating anything


def test_a_second_sigterm_during_shutdown_still_stops_cleanly(home, start_server):
    import signal
    import time

    server = start_server(home)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=30) == 0
    log = server.log.read_text()
    assert "stopping" in log and "Aborted" not in log and "Traceback" not in log
    assert "terminate called" not in log
