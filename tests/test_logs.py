"""Logs: a line per request, plain or JSON, with its request id, and nothing personal or
secret in them: a canary sent in the body, the query string and the headers never
reaches the log."""

import io
import json
import logging
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from appliance.ops import logs
from tests.conftest import Falaj

FIXTURE = Path(__file__).parent / "fixtures" / "home-0.1.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
CANARY = "canary-7f3d9e21"
CANARY_NUMBER = 91827.364512  # a record value


@pytest.fixture(scope="module")
def base_home(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("logs")
    with tarfile.open(FIXTURE / "home.tar.gz") as tar:
        tar.extractall(root, filter="data")
    Falaj(root / "home").ok("check")  # migrated once
    return root / "home"


@pytest.fixture
def home(base_home, tmp_path) -> Path:
    shutil.copytree(base_home, tmp_path / "home")
    return tmp_path / "home"


def send(server, path: str, body: dict, headers: dict) -> tuple[int, dict, dict]:
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method="POST")
    for k, v in ({"Content-Type": "application/json"} | server.headers() | headers).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def canary_traffic(server) -> dict:
    """A good prediction, a bad one and an unknown model, each carrying the canary in
    its query string, headers and body; the answers."""
    record = EXPECTED["records"][0] | {"income": CANARY_NUMBER}
    headers = {"X-Canary": CANARY, "Cookie": f"session={CANARY}", "User-Agent": CANARY,
               "X-Request-Id": "client-id.1"}  # fmt: skip
    path = f"/api/v1/models/credit/predict?note={CANARY}"
    ok = send(server, path, {"records": [record], "note": CANARY}, headers)
    bad = send(
        server,
        path,
        {"records": [record | {"age": CANARY}]},
        headers | {"X-Request-Id": f"{CANARY} x"},
    )
    unknown = send(server, f"/api/v1/models/{CANARY}/predict", {"records": [record]}, headers)
    return {"ok": ok, "bad": bad, "unknown": unknown}


def assert_clean(text: str, server) -> None:
    assert CANARY not in text
    assert str(CANARY_NUMBER) not in text and "91827" not in text
    assert server.token and server.token not in text  # the bearer secret


def test_json_request_lines_carry_the_fields_and_no_canary(home, start_server):
    server = start_server(home, "--log-format", "json")
    answers = canary_traffic(server)
    status, headers, body = answers["ok"]
    assert status == 200 and headers["X-Request-Id"] == "client-id.1"
    assert answers["bad"][0] == 400
    generated = answers["bad"][1]["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)  # the client's was not a plain token
    assert answers["unknown"][0] == 404
    server.stop()
    text = server.log.read_text()
    assert_clean(text, server)
    lines = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    requests = [x for x in lines if x["logger"] == "falaj.request"]
    assert all(set(x) >= {"time", "level", "logger", "message"} for x in lines)
    mine = [x for x in requests if x["request_id"] == "client-id.1"]
    assert len(mine) == 2  # the good one and the unknown model's
    good = next(x for x in mine if x["status"] == 200)
    assert good["method"] == "POST" and good["path"] == "/api/v1/models/credit/predict"
    assert good["model"] == "credit" and good["level"] == "INFO"
    assert good["actor"].startswith("token:") and good["latency_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", good["time"])
    miss = next(x for x in mine if x["status"] == 404)
    assert miss["path"] == "/api/v1/models/<name>/predict" and miss["model"] is None
    bad = next(x for x in requests if x["request_id"] == generated)
    assert bad["status"] == 400 and bad["model"] is None


def test_plain_request_lines_are_the_default_and_carry_no_canary(home, start_server):
    server = start_server(home)
    answers = canary_traffic(server)
    assert answers["ok"][0] == 200
    server.stop()
    text = server.log.read_text()
    assert_clean(text, server)
    line = next(x for x in text.splitlines() if "request_id=client-id.1" in x and " 200 " in x)
    assert re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z INFO falaj\.request: POST "
                    r"/api/v1/models/credit/predict 200 request_id=client-id\.1 method=POST "
                    r"path=/api/v1/models/credit/predict status=200 actor=token:\S+ "
                    r"model=credit latency_ms=[\d.]+$", line)  # fmt: skip
    assert not any(x.startswith("{") for x in text.splitlines())


def test_formatters_write_one_line_per_record():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging._srcfile, logging.logThreads)
    logs.configure("json", stream)
    try:
        logging.getLogger("falaj").warning("two\nlines %s", "here")
        logging.getLogger("falaj.request").info("GET / 200", extra={"request": {
            "request_id": "r1", "method": "GET", "path": "/", "status": 200, "actor": None,
            "model": None, "latency_ms": 0.5}})  # fmt: skip
    finally:  # this process's logging as pytest set it up
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging._srcfile, logging.logThreads = saved[2], saved[3]
        logging.logProcesses = logging.logMultiprocessing = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["message"] == "two\nlines here" and first["level"] == "WARNING"
    assert second["request_id"] == "r1" and second["latency_ms"] == 0.5
    with pytest.raises(ValueError, match="plain, json"):
        logs.configure("xml")
