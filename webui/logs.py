"""Request logs: one line per request, plain text or JSON (see ``appliance.ops.logs``),
and the request id every answer carries in ``X-Request-Id``.

A client's ``X-Request-Id`` is kept when it is a plain token (letters, digits, ``.``,
``_``, ``-``; at most 64), so a caller's id follows the request into the log; anything
else is replaced by a new one, so no client text reaches the log through it. The line
is written after the answer is made: method, path, status, actor, model (for the routes
that name one), latency. The path is the route's pattern with only the model's name
filled in, once the request succeeded (``/api/v1/models/credit/predict``,
``/api/v1/models/<name>/predict`` for a 404, ``/api/v1/subjects/<subject>``): never the
query string, and no entity key, subject or other identifier a path may carry, nor a
name no model has; a path no route matches is logged as ``(no route)``. Turned off with
``log_requests = false``; the cost when on is one formatted line per request.
"""

from __future__ import annotations

import logging
import re
import time

from flask import Blueprint, Response, current_app, g, request

from appliance import ids
from appliance.ops.logs import REQUEST_LOGGER

bp = Blueprint("logs", __name__)
log = logging.getLogger(REQUEST_LOGGER)

CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
HEADER = "X-Request-Id"
NAME = re.compile(r"<(?:[a-z]+:)?name>")  # a route's model-name placeholder


def request_id() -> str:
    """This request's id (the client's, when it is a plain token, else a new one)."""
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = new_id(request.headers.get(HEADER, ""))
    return rid


def new_id(given: str) -> str:
    """The client's ``X-Request-Id`` when it is a plain token, else a new id."""
    return given if CLIENT_ID.fullmatch(given) else ids.new_id()


@bp.before_app_request
def _start() -> None:
    g.request_t0 = time.perf_counter()


@bp.after_app_request
def _log(response: Response) -> Response:
    rid = request_id()
    response.headers[HEADER] = rid
    if not current_app.extensions["falaj"].settings.get("log_requests", True):
        return response
    t0 = g.get("request_t0")
    rule = request.url_rule
    model = None
    if rule and response.status_code < 400 and "models/<" in rule.rule:  # a name it found
        model = (request.view_args or {}).get("name")
    path = NAME.sub(lambda _: model, rule.rule) if model else (rule.rule if rule else "(no route)")
    write(rid, request.method, path, response.status_code, g.get("actor"), model, t0)
    return response


def write(rid: str, method: str, path: str, status: int, actor: object, model: str | None,
          t0: float | None) -> None:  # fmt: skip
    """The request's log line (the caller checked ``log_requests``)."""
    fields = {
        "request_id": rid,
        "method": method,
        "path": path,
        "status": status,
        "actor": str(actor) if actor is not None else None,
        "model": model,
        "latency_ms": round((time.perf_counter() - t0) * 1000, 3) if t0 else None,
    }
    log.info("%s %s %d", method, path, status, extra={"request": fields})
