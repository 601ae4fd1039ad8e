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

from flask import Blueprint, Response, jsonify, render_template, request

from appliance import selftest
from appliance.errors import NotFound
from appliance.registry import card
from webui.api import appliance, back, request_actor
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


@bp.post("/api/v1/selftest")
@needs("selftest.run")
def api_selftest_run():
    """Run the self-test in this (the serving) process; the signed report."""
    return jsonify(selftest.run(appliance(), request_actor()))


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
    r = selftest.run(appliance(), request_actor())
    failed = ", ".join(r["failed"])
    return back("security.page", "self-test passed: report signed" if r["passed"] else
                f"self-test FAILED ({failed}): report signed", ok=r["passed"])  # fmt: skip
