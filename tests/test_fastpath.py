"""The scoring fast path (webui.fastpath) answers as Flask would: the same status,
headers, body, log line and metrics, for the requests it answers itself; and it hands
everything else to Flask, whose answer is then the one the client gets."""

import json
import logging

import pytest
from flask import request_started
from prometheus_client.parser import text_string_to_metric_families

from appliance.core import Appliance
from tests.conftest import ACTOR, RECORD, admin_token

PREDICT = "/api/v1/models/credit/predict"


@pytest.fixture
def pair(trained):
    """Two test clients over one appliance: through the fast path, and Flask alone;
    and the list of requests Flask handled on the first."""
    from webui import create_app

    trained.serving.deploy("credit", 1, ACTOR)
    token = admin_token(trained)
    fast_app, flask_app = (
        create_app(trained, {"TESTING": True}),
        create_app(trained, {"TESTING": True}),
    )
    flask_app.wsgi_app = flask_app.wsgi_app.next  # Flask without the fast path in front
    seen: list[str] = []
    request_started.connect(lambda sender, **kw: seen.append(kw), fast_app, weak=False)
    clients = []
    for a in (fast_app, flask_app):
        c = a.test_client()
        c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        clients.append(c)
    return trained, clients[0], clients[1], seen


def _answer(resp) -> tuple[int, dict, dict]:
    body = json.loads(resp.data)
    for k in ("request_id", "receipt"):  # a new id per decision
        body.pop(k, None)
    headers = dict(resp.headers)
    return resp.status_code, headers, body


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_fast_path_answers_as_flask(pair, scheme, caplog):
    app, fast, flask, seen = pair
    base = f"{scheme}://localhost"
    asks = [
        ("post", PREDICT, {"records": [RECORD, RECORD | {"age": 61.0}]}, {}),
        ("post", PREDICT, {"records": [RECORD]}, {"X-Falaj-Key": "customer-7"}),
        ("get", "/healthz", None, {}),
    ]
    caplog.set_level(logging.INFO, logger="falaj.request")
    for method, path, body, headers in asks:
        headers = headers | {"X-Request-Id": "the-same-id"}
        caplog.clear()
        got = getattr(fast, method)(path, json=body, headers=headers, base_url=base)
        fast_log = [r.request for r in caplog.records]
        caplog.clear()
        want = getattr(flask, method)(path, json=body, headers=headers, base_url=base)
        flask_log = [r.request for r in caplog.records]
        assert got.status_code == 200
        assert _answer(got) == _answer(want), path
        if body:
            assert len(json.loads(got.data)["predictions"]) == len(body["records"])
        assert ("Strict-Transport-Security" in got.headers) == (scheme == "https")
        assert got.headers["X-Request-Id"] == "the-same-id"
        # one line each, the same but for its latency
        assert len(fast_log) == len(flask_log) == 1
        assert {**fast_log[0], "latency_ms": 0} == {**flask_log[0], "latency_ms": 0}
        assert fast_log[0]["actor"] == "token:pytest-admin"
    assert seen == []  # Flask never saw them


def test_healthz_without_a_token_is_answered_and_logged_as_anonymous(pair, caplog):
    app, fast, flask, seen = pair
    caplog.set_level(logging.INFO, logger="falaj.request")
    got = fast.get("/healthz", headers={"Authorization": ""})
    assert got.status_code == 401  # an empty Authorization header: Flask refuses it
    assert len(seen) == 1
    fast.environ_base.pop("HTTP_AUTHORIZATION")
    got = fast.get("/healthz")
    assert got.status_code == 200
    assert got.get_json() == {"status": "ok", "deployments": {"credit": {
        "version": 1, "slot": "blue", "serving": True, "degraded": {}}}}  # fmt: skip
    assert caplog.records[-1].request["actor"] is None
    assert len(seen) == 1  # the fast path answered the second


BAD_TOKEN = {"Authorization": "Bearer flj_00000000_not-a-token"}
FALLBACKS = [
    # (headers, raw body, content type, status, a phrase of the answer); None: no token
    (None, json.dumps({"records": [RECORD]}), "application/json", 401, "sign in"),
    ({"Authorization": ""}, json.dumps({"records": [RECORD]}), "application/json", 401, "not valid"),
    (BAD_TOKEN, json.dumps({"records": [RECORD]}), "application/json", 401, "not valid"),
    ({}, json.dumps({"records": [RECORD]}), "text/plain", 400, "expected JSON"),
    ({}, '{"records": [', "application/json", 400, "line 1, column"),
    ({}, json.dumps([RECORD]), "application/json", 400, "a JSON object"),
    ({}, json.dumps({"rows": [RECORD]}), "application/json", 400, 'missing field "records"'),
    ({}, json.dumps({"records": [RECORD], "entities": []}), "application/json", 400, "not both"),
    ({}, json.dumps({"records": []}), "application/json", 400, "non-empty list"),
    ({}, json.dumps({"records": [{"age": 1.0}]}), "application/json", 400, "records[0].income"),
    ({}, json.dumps({"records": [RECORD | {"age": "old"}]}), "application/json", 400,
     "records[0].age"),
]  # fmt: skip


@pytest.mark.parametrize("headers,raw,ctype,status,phrase", FALLBACKS)
def test_what_the_fast_path_does_not_answer_flask_does(pair, headers, raw, ctype, status, phrase):
    app, fast, flask, seen = pair
    if headers is None:
        for c in (fast, flask):
            c.environ_base.pop("HTTP_AUTHORIZATION")
    got = fast.post(PREDICT, data=raw, content_type=ctype, headers=headers)
    want = flask.post(PREDICT, data=raw, content_type=ctype, headers=headers)
    assert got.status_code == want.status_code == status
    assert got.get_json() == want.get_json()
    assert phrase in got.get_json()["error"]["message"]
    assert dict(got.headers) == dict(want.headers) | {"X-Request-Id": got.headers["X-Request-Id"]}
    assert len(seen) == 1


def test_roles_and_unknown_models_are_refused_once_counted_once(pair):
    app, fast, flask, seen = pair
    viewer = app.auth.create_token("looker", "viewer", ACTOR)["token"]
    got = fast.post(
        PREDICT, json={"records": [RECORD]}, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert got.status_code == 403 and "model.predict" in got.get_json()["error"]["message"]
    scoped = app.auth.create_token("other-model", "ml-engineer", ACTOR, models=["fraud"])["token"]
    got = fast.post(
        PREDICT, json={"records": [RECORD]}, headers={"Authorization": f"Bearer {scoped}"}
    )
    assert got.status_code == 403 and "credit" in got.get_json()["error"]["message"]
    for _ in range(3):  # scored, then failed: Flask's view answers the error it was given
        got = fast.post("/api/v1/models/nobody/predict", json={"records": [RECORD]})
        assert got.status_code == 404 and "nobody" in got.get_json()["error"]["message"]
    for _ in range(2):
        assert fast.post(PREDICT, json={"records": [{"age": 1.0}]}).status_code == 400
    assert fast.post(PREDICT, json={"records": [RECORD]}).status_code == 200
    counts = {}
    for family in text_string_to_metric_families(fast.get("/metrics").data.decode()):
        for s in family.samples:
            if s.name == "falaj_requests_total":
                counts[(s.labels["model"], s.labels["status"])] = s.value
    # each request counted once: by the fast path when it answered, by Flask when not
    assert counts == {("", "client_error"): 3, ("credit", "client_error"): 3,
                      ("credit", "ok"): 1}  # fmt: skip
    # and only the one that scored left a decision
    app.serving._log().flush()
    assert list(app.features.query("SELECT count(*) AS n FROM _predictions")[0].values()) == [1]


def test_a_body_longer_than_the_limit_goes_to_flask(pair):
    app, fast, flask, seen = pair
    fast.application.config["MAX_CONTENT_LENGTH"] = 100
    raw = json.dumps({"records": [RECORD]})
    assert len(raw) > 100
    got = fast.post(PREDICT, data=raw, content_type="application/json")
    assert got.status_code == 413
    assert len(seen) == 1


def test_a_worker_lingers_for_the_next_request_on_a_keep_alive_connection(monkeypatch):
    """webui.server's workers serve a keep-alive client's next request themselves when
    it comes within LINGER_S, and hand the connection back to the selector otherwise;
    a client that leaves meanwhile costs nothing."""
    import http.client
    import threading
    import time

    from webui import server as web

    # 2 ms in service; here long enough that a busy CI box never delays this client's
    # next request past it (it did: a second worker took over)
    monkeypatch.setattr(web, "LINGER_S", 0.25)
    threads: list[int] = []

    def wsgi(environ, start_response):
        threads.append(threading.get_ident())
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    srv = web.make_server(wsgi, "127.0.0.1", 0, 4)
    runner = threading.Thread(target=srv.serve, daemon=True)
    runner.start()
    try:
        port = web.effective_port(srv)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(20):  # at once, one after another: one worker serves them all
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"ok"
        assert len(set(threads)) == 1
        time.sleep(web.LINGER_S * 4)  # idle: back to the selector, and still served
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        conn.close()  # while a worker may linger on it
        other = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        other.request("GET", "/")
        assert other.getresponse().read() == b"ok"
        other.close()
        assert len(threads) == 22
    finally:
        srv.stop()


def test_a_prediction_does_not_wait_for_a_control_commit_in_progress(trained):
    """While another thread holds control.db (a decision batch's audit event and its
    fsync), a prediction's and a health check's look-up of the deployments goes on with
    those it holds."""
    import threading
    import time

    trained.serving.deploy("credit", 1, ACTOR)
    store, server = trained.control, trained.serving.server
    held, release = threading.Event(), threading.Event()

    def commit_in_progress():
        with store.transaction():
            held.set()
            release.wait(10)

    other = Appliance.open({"home": str(trained.home)})  # another process, as the CLI
    try:
        other.serving.deploy("credit", 1, ACTOR)  # to the green slot
    finally:
        other.close()
    writer = threading.Thread(target=commit_in_progress)
    writer.start()
    try:
        held.wait(10)
        assert store.data_version(wait=False) is None
        time.sleep(0.02)  # past CHECK_EVERY: the next request looks
        t0 = time.monotonic()
        assert server.get("credit").live_slot == "blue"  # what a prediction looks up
        assert trained.serving.health()["credit"]["version"] == 1
        assert time.monotonic() - t0 < 5  # neither waited for the writer
    finally:
        release.set()
        writer.join()
    assert isinstance(store.data_version(wait=False), int)
    # the look that found the store busy did not count: the next request looks at once
    assert server.get("credit").live_slot == "green"
