"""The scoring fast path: ``POST /api/v1/models/<name>/predict`` and ``GET /healthz``
answered in plain WSGI, in front of Flask.

Flask's per-request machinery (request context, session, URL map, before/after hooks,
a Response object) costs about 0.45 ms of CPU per request on this project's 2-core
machines, more than scoring one row. These two routes take most of a serving box's
traffic, so their plain successful case skips it and does only what Flask would do
for it, with the same functions: the bearer token's actor (``token_actor``, cached)
and its permission, the same JSON provider both ways, ``api.score`` / ``api.health``,
the metrics (``metrics.answered``), the request log line (``logs.write``), the security
headers and ``X-Request-Id``.

Everything else goes to Flask untouched (its body put back): no bearer token or a bad
one, a role that may not predict, a body that is not a JSON object, HEAD, chunked
bodies, anything too long. When scoring itself fails, the error goes to Flask's view in
the environ (``api.FAST_PATH_ERROR``), which raises it there: the answer, its status,
the metrics and the log are Flask's, and nothing is scored twice.
tests/test_fastpath.py compares both paths' answers header by header.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any

from flask import Flask

from appliance.core import Appliance
from webui import logs
from webui.api import FAST_PATH_ERROR, health, score
from webui.auth import bearer_token
from webui.metrics import answered
from webui.security import HEADERS, HSTS

PREDICT = re.compile(r"/api/v1/models/([^/]+)/predict")
JSON_TYPE = re.compile(r"application/json\s*(;.*)?", re.IGNORECASE)


class FastPath:
    def __init__(self, flask: Flask, appliance: Appliance) -> None:
        self.flask = flask
        self.app = appliance
        self.next = flask.wsgi_app  # Flask, for everything the fast path does not answer

    def __call__(self, environ: dict[str, Any], start_response) -> Any:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if method == "GET" and path == "/healthz":
            return self._healthz(environ, start_response)
        if method == "POST" and (found := PREDICT.fullmatch(path)):
            return self._predict(environ, start_response, found[1])
        return self.next(environ, start_response)

    def _actor(self, environ: dict[str, Any]) -> Any:
        """The bearer token's actor; None without a token, False for one that fails
        (as ``webui.auth.find_actor`` reads the header)."""
        token = bearer_token(environ.get("HTTP_AUTHORIZATION"))
        if token is None:
            return None
        return self.app.auth.token_actor(token) or False

    def _healthz(self, environ, start_response):
        t0 = time.perf_counter()
        actor = self._actor(environ)
        if actor is False:  # Flask answers 401
            return self.next(environ, start_response)
        answer, status = health(self.app)
        return self._answer(environ, start_response, t0, "/healthz", status, answer, actor, None)

    def _predict(self, environ, start_response, name: str):
        t0 = time.perf_counter()
        actor = self._actor(environ)
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        limit = self.flask.config["MAX_CONTENT_LENGTH"]
        if (not actor or not actor.can("model.predict") or not 0 <= length <= limit
                or not JSON_TYPE.fullmatch(environ.get("CONTENT_TYPE", ""))):  # fmt: skip
            return self.next(environ, start_response)
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
        try:
            body = self.flask.json.loads(raw)
        except Exception:  # Flask says what is wrong with it
            return self.next(environ, start_response)
        if not isinstance(body, dict):
            return self.next(environ, start_response)
        key = environ.get("HTTP_X_FALAJ_KEY") or None
        t1 = time.perf_counter()
        try:
            answer = score(self.app, name, body, actor, key)
        except Exception as exc:
            environ[FAST_PATH_ERROR] = exc  # Flask's view raises it: its answer and its log
            return self.next(environ, start_response)
        answered(self.app, name, answer, t1)
        path = f"/api/v1/models/{name}/predict"
        return self._answer(environ, start_response, t0, path, 200, answer, actor, name)

    def _answer(self, environ, start_response, t0, path, status, answer, actor, model):
        # as jsonify writes it outside debug mode: compact, a newline at the end
        body = f"{self.flask.json.dumps(answer, separators=(',', ':'))}\n".encode()
        rid = logs.new_id(environ.get("HTTP_X_REQUEST_ID", ""))
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   *HEADERS.items(), (logs.HEADER, rid)]  # fmt: skip
        if environ.get("wsgi.url_scheme") == "https":
            headers.append(("Strict-Transport-Security", HSTS))
        start_response(f"{status} {'OK' if status == 200 else 'SERVICE UNAVAILABLE'}", headers)
        if self.app.settings.get("log_requests", True):
            logs.write(rid, environ["REQUEST_METHOD"], path, status, actor, model, t0)
        return [body]
