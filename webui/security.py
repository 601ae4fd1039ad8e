"""Security headers on every answer (HSTS, CSP, frame denial, no-sniff) and the self-test
page.

The CSP allows scripts and styles only from the appliance itself: no inline script, no
``on...=`` handlers (JavaScript lives in ``static/*.js``), no ``<style>`` blocks or
``style=`` attributes (page styles live in ``static/style.css``), so an injected
attribute can neither run code nor restyle a page to mislead. The one inline style
allowed is the standalone model card's, by its hash (the card is a single file meant to
be saved and shared, so it carries its own CSS).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from appliance import selftest
from appliance.errors import FalajError, NotFound
from appliance.registry import card
from webui.api import appliance, back, request_actor
from webui.apidoc import page as page_doc  # "page" is this blueprint's view
from webui.auth import needs

bp = Blueprint("security", __name__)

_CARD_STYLE = base64.b64encode(hashlib.sha256(card.CSS.encode()).digest()).decode()
CSP = (
    f"default-src 'self'; script-src 'self'; style-src 'self' 'sha256-{_CARD_STYLE}'; "
    "img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"  # one year; no includeSubDomains: the box does not own the domain


@bp.after_app_request
def security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


# -- the self-test -----------------------------------------------------------------


MIN_INTERVAL_S = 60  # between two self-tests over HTTP: each copies both stores


class SelftestBusy(FalajError):
    """A self-test is running, or one ended moments ago: each copies both stores, so
    HTTP clients get one a minute (the CLI is not limited)."""

    status = 429


def _run_limited() -> dict:
    state = current_app.extensions.setdefault(
        "falaj.selftest", {"lock": threading.Lock(), "last": -1e9}
    )  # per app: when its last HTTP self-test ended, and whether one is running
    wait = MIN_INTERVAL_S - (time.monotonic() - state["last"])
    if wait > 0:
        raise SelftestBusy(f"a self-test ended {MIN_INTERVAL_S - wait:.0f} s ago; the next "
                           f"may start in {wait:.0f} s (GET /api/v1/selftest/latest has its "
                           "report)")  # fmt: skip
    if not state["lock"].acquire(blocking=False):
        raise SelftestBusy("a self-test is running; its report will be the latest")
    try:
        return selftest.run(appliance(), request_actor())
    finally:
        state["last"] = time.monotonic()
        state["lock"].release()


@bp.post("/api/v1/selftest")
@needs("selftest.run")
def api_selftest_run():
    """Run the self-test in this (the serving) process; the signed report."""
    return jsonify(_run_limited())


@bp.get("/api/v1/selftest/latest")
@needs("selftest.run")
def api_selftest_latest():
    return jsonify(selftest.latest(appliance(), request_actor()))


@bp.get("/selftest")
@needs("selftest.run")
def page():
    try:
        report = selftest.latest(appliance(), request_actor())
    except NotFound:
        report = None
    return render_template("selftest.html", report=report, done=request.args.get("done"),
                           done_ok=request.args.get("ok", "1") == "1")  # fmt: skip


@bp.post("/selftest")
@needs("selftest.run")
def run_now():
    try:
        r = _run_limited()
    except SelftestBusy as exc:
        return back("security.page", exc.message, ok=False)
    failed = ", ".join(r["failed"])
    return back("security.page", "self-test passed: report signed" if r["passed"] else
                f"self-test FAILED ({failed}): report signed", ok=r["passed"])  # fmt: skip


# -- the OpenAPI document's part (webui/openapi.py adds it) ------------------------

_JSON = "application/json"
_ERR = {"content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
_REPORT = {"description": "The signed report: format, host, started, finished, actor, "
           "master_key (fingerprint), passed, failed, checks (name, passed, detail, status), "
           "public_key, signature; file and sha256",
           "content": {_JSON: {"schema": {"type": "object"}}}}  # fmt: skip
OPENAPI: dict = {
    "/api/v1/selftest": {"post": {
        "summary": "Run the self-test in the serving process (on copies of the stores) and "
                   "sign its report; it is recorded in the audit chain",
        "tags": ["Security"],
        "responses": {"200": _REPORT,
                      "4XX": _ERR | {"description": "Not allowed (selftest.run), or one "
                                     "ran less than a minute ago or is running (429)"}}}},
    "/api/v1/selftest/latest": {"get": {
        "summary": "The latest self-test report, with its signature checked",
        "tags": ["Security"],
        "responses": {"200": _REPORT,
                      "4XX": _ERR | {"description": "No report yet (404), or not allowed"}}}},
    "/selftest": {
        "get": {"summary": "The Self-test page (HTML): the latest report's checks",
                "tags": ["Security"],
                "responses": {"200": page_doc("The page")}},
        "post": {"summary": "Run the self-test (a dashboard form)", "tags": ["Security"],
                 "requestBody": {"required": False, "content": {
                     "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
                 "responses": {"302": {"description": "Back to the Self-test page"}}}},
}  # fmt: skip
