"""Compliance pages: the consent registry, data-subject requests, the review queue and the record of processing activities.

The page (``/compliance``) shows each section to the roles allowed to use it; its forms
post to the same services the CLI calls and redirect back with one line of outcome,
except an export, which answers with the subject's JSON as a download. The same
operations are on the JSON API under ``/api/v1/consent``, ``/api/v1/subjects/<id>/...``,
``/api/v1/reviews`` and ``/api/v1/compliance/record``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request

from appliance.compliance.consent import BASES, PURPOSES
from appliance.compliance.record import processing_csv
from appliance.errors import BadInput, FalajError
from webui.api import appliance, back, json_body, request_actor
from webui.apidoc import JSON, errors, ok
from webui.apidoc import page as page_doc  # "page" is this blueprint's view
from webui.auth import needs

bp = Blueprint("compliance", __name__)


def _field(body: dict[str, Any], name: str, required: bool = True) -> Any:
    value = body.get(name)
    if required and (value is None or value == ""):
        raise BadInput(f'request body: field "{name}" is missing')
    return value


def _download(doc: Any, filename: str) -> Response:
    return Response(json.dumps(doc, indent=2, default=str) + "\n", mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip


def _safe(subject: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in subject)[:80]


# -- JSON API ----------------------------------------------------------------------------


@bp.get("/api/v1/consent")
@needs("consent.read")
def api_consent_list():
    args = request.args
    rows = appliance().consent.list(request_actor(), subject=args.get("subject"),
                                    purpose=args.get("purpose"))  # fmt: skip
    return jsonify({"consent": rows})


@bp.post("/api/v1/consent")
@needs("consent.manage")
def api_consent_give():
    """Body {"subject", "purpose", "basis"}: consent given (201 when recorded)."""
    body = json_body()
    r = appliance().consent.give(_field(body, "subject"), _field(body, "purpose"),
                                 body.get("basis", "consent"), request_actor())  # fmt: skip
    return jsonify(r), 201 if r["changed"] else 200


@bp.post("/api/v1/consent/withdraw")
@needs("consent.manage")
def api_consent_withdraw():
    """Body {"subject", "purpose"}: consent withdrawn."""
    body = json_body()
    r = appliance().consent.withdraw(_field(body, "subject"), _field(body, "purpose"),
                                     request_actor())  # fmt: skip
    return jsonify(r)


@bp.get("/api/v1/subjects/<subject>/export")
@needs("subject.export")
def api_export(subject: str):
    return jsonify(appliance().subjects.export(subject, request_actor()))


@bp.post("/api/v1/subjects/<subject>/rectify")
@needs("subject.rectify")
def api_rectify(subject: str):
    """Body {"table", "changes": {column: value}, "event_time"?}."""
    body = json_body()
    changes = _field(body, "changes")
    if not isinstance(changes, dict):
        raise BadInput('request body: field "changes" must be an object like {"email": "..."}')
    table = _field(body, "table")
    if not isinstance(table, str):
        raise BadInput('request body: field "table" must be a table name')
    r = appliance().subjects.rectify(subject, table, changes, request_actor(),
                                     event_time=body.get("event_time"))  # fmt: skip
    return jsonify(r)


@bp.post("/api/v1/subjects/<subject>/erase")
@needs("subject.erase")
def api_erase(subject: str):
    return jsonify(appliance().subjects.erase(subject, request_actor()))


@bp.post("/api/v1/subjects/<subject>/object")
@needs("subject.object")
def api_object(subject: str):
    """Body {"decision": request id, "reason"?}: opens a review (201)."""
    body = json_body()
    r = appliance().subjects.object(subject, _field(body, "decision"), body.get("reason"),
                                    request_actor())  # fmt: skip
    return jsonify(r), 201


@bp.get("/api/v1/subjects/<subject>/requests")
@needs("review.read")
def api_requests(subject: str):
    return jsonify({"requests": appliance().subjects.requests(request_actor(), subject=subject)})


@bp.get("/api/v1/reviews")
@needs("review.read")
def api_reviews():
    return jsonify({"reviews": appliance().reviews.list(request_actor(),
                                                        status=request.args.get("status"))})  # fmt: skip


@bp.post("/api/v1/reviews/<int:review_id>/decide")
@needs("review.decide")
def api_decide(review_id: int):
    """Body {"outcome": "uphold" | "overturn", "note"?}."""
    body = json_body()
    r = appliance().reviews.decide(review_id, _field(body, "outcome"), body.get("note"),
                                   request_actor())  # fmt: skip
    return jsonify(r)


@bp.get("/api/v1/compliance/record")
@needs("compliance.read")
def api_record():
    rec = appliance().processing_record(request_actor())
    if request.args.get("format") == "csv":
        return Response(processing_csv(rec), mimetype="text/csv")
    return jsonify(rec)


# -- the page ----------------------------------------------------------------------------


def _back(message: str, ok: bool = True, anchor: str = "", subject: str | None = None):
    values = {"subject": subject} if subject else {}
    return back("compliance.page", message, ok, anchor, **values)


@bp.get("/compliance")
@needs("compliance.read")
def page():
    app, actor = appliance(), request_actor()
    subject = (request.args.get("subject") or "").strip()[:200]
    overview, lookup_error = None, None
    if subject and actor.can("consent.read"):
        try:
            overview = app.subjects.overview(subject, actor)
        except FalajError as exc:
            lookup_error = exc.message
    return render_template(
        "compliance.html",
        consent=app.consent.list(actor, limit=50) if actor.can("consent.read") else None,
        requests=app.subjects.requests(actor, limit=30) if actor.can("review.read") else None,
        reviews=app.reviews.list(actor, limit=50) if actor.can("review.read") else None,
        tables=[t["table_name"] for t in app.features.tables()],
        purposes=list(PURPOSES),
        bases=BASES,
        subject=subject,
        overview=overview,
        lookup_error=lookup_error,
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


@bp.get("/compliance/record.<fmt>")
@needs("compliance.read")
def record(fmt: str):
    rec = appliance().processing_record(request_actor())
    if fmt == "csv":
        return Response(processing_csv(rec), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="ropa.csv"'})  # fmt: skip
    if fmt != "json":
        raise BadInput(f"record.{fmt[:10]}: give record.json or record.csv")
    return _download(rec, "ropa.json")


@bp.post("/compliance/consent")
@needs("consent.manage")
def consent_form():
    f = request.form
    subject = f.get("subject", "").strip()
    try:
        if f.get("action") == "withdraw":
            r = appliance().consent.withdraw(subject, f.get("purpose", "").strip(), request_actor())
            return _back(f"consent withdrawn: {r['subject']} {r['purpose']}", anchor="#consent",
                         subject=r["subject"])  # fmt: skip
        r = appliance().consent.give(subject, f.get("purpose", "").strip(),
                                     f.get("basis", "consent"), request_actor())  # fmt: skip
        what = "consent recorded" if r["changed"] else "consent already given"
        return _back(f"{what}: {r['subject']} {r['purpose']} ({r['basis']})", anchor="#consent",
                     subject=r["subject"])  # fmt: skip
    except FalajError as exc:
        return _back(exc.message, ok=False, anchor="#consent")


@bp.post("/compliance/subjects/export")
@needs("subject.export")
def export_form():
    subject = request.form.get("subject", "").strip()
    try:
        doc = appliance().subjects.export(subject, request_actor())
    except FalajError as exc:
        return _back(exc.message, ok=False, anchor="#requests")
    return _download(doc, f"subject-{_safe(doc['subject'])}.json")


@bp.post("/compliance/subjects/rectify")
@needs("subject.rectify")
def rectify_form():
    f = request.form
    subject = f.get("subject", "").strip()
    try:
        column = f.get("column", "").strip()
        if not column:
            raise BadInput("rectify: name the column to correct")
        r = appliance().subjects.rectify(subject, f.get("table", ""), {column: f.get("value", "")},
                                         request_actor(),
                                         event_time=f.get("event_time", "").strip() or None)  # fmt: skip
        return _back(f"rectified {r['subject']} in {r['table']}: {', '.join(r['columns'])} "
                     f"(request {r['request']})", anchor="#requests", subject=r["subject"])  # fmt: skip
    except FalajError as exc:
        return _back(exc.message, ok=False, anchor="#requests")


@bp.post("/compliance/subjects/erase")
@needs("subject.erase")
def erase_form():
    f = request.form
    subject = f.get("subject", "").strip()
    if f.get("confirm") != subject or not subject:
        return _back("erase: type the subject id again to confirm", ok=False, anchor="#requests")
    try:
        r = appliance().subjects.erase(subject, request_actor())
        return _back(f"erased {r['subject']}: key deleted, {r['online_rows_dropped']} online "
                     f"rows dropped (request {r['request']})", anchor="#requests",
                     subject=r["subject"])  # fmt: skip
    except FalajError as exc:
        return _back(exc.message, ok=False, anchor="#requests")


@bp.post("/compliance/subjects/object")
@needs("subject.object")
def object_form():
    f = request.form
    subject = f.get("subject", "").strip()
    try:
        r = appliance().subjects.object(subject, f.get("decision", "").strip(),
                                        f.get("reason", ""), request_actor())  # fmt: skip
        return _back(f"objection recorded: review {r['review']} is open", anchor="#reviews",
                     subject=r["subject"])  # fmt: skip
    except FalajError as exc:
        return _back(exc.message, ok=False, anchor="#requests")


@bp.post("/compliance/reviews/<int:review_id>/decide")
@needs("review.decide")
def decide_form(review_id: int):
    f = request.form
    try:
        r = appliance().reviews.decide(review_id, f.get("outcome", ""), f.get("note", ""),
                                       request_actor())  # fmt: skip
        return _back(f"review {review_id}: {r['status']}", anchor="#reviews")
    except FalajError as exc:
        if exc.status == 404:
            raise
        return _back(exc.message, ok=False, anchor="#reviews")


# -- the OpenAPI document's part (merged in webui/openapi.py) ----------------------------

TAG = "Compliance"
_SUBJECT = {"name": "subject", "in": "path", "required": True,
            "description": "The data subject: an entity id", "schema": {"type": "string"}}  # fmt: skip
_REVIEW = {"name": "review_id", "in": "path", "required": True,
           "schema": {"type": "integer", "minimum": 0}}  # fmt: skip

ERRORS = (
    "Bad input, an unknown subject or review, or a request that conflicts (409: decided already)"
)


def _body(properties: dict, required: list[str]) -> dict:
    return {"required": True, "content": {JSON: {"schema": {
        "type": "object", "properties": properties, "required": required}}}}  # fmt: skip


def _form(summary: str, params: list | None = None, download: bool = False) -> dict:
    answers = {"302": {"description": "Back to the Compliance page, with the outcome"}}
    if download:
        answers["200"] = ok("The subject's data as a JSON download")
    return {"post": {"summary": summary, "tags": [TAG], "parameters": params or [],
                     "requestBody": {"required": False, "content": {
                         "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
                     "responses": answers | errors(ERRORS, html=True)}}  # fmt: skip


_STR = {"type": "string"}
OPENAPI: dict = {
    "/api/v1/consent": {
        "get": {"summary": "The consent registry, newest first (filter by subject, purpose)",
                "tags": [TAG],
                "parameters": [{"name": n, "in": "query", "required": False, "schema": _STR}
                               for n in ("subject", "purpose")],
                "responses": {"200": ok("Consent records"), **errors(ERRORS)}},
        "post": {"summary": "Record consent given (201; 200 when already given)", "tags": [TAG],
                 "requestBody": _body({"subject": _STR, "purpose": _STR, "basis": _STR},
                                      ["subject", "purpose"]),
                 "responses": {"201": ok("Recorded"), "200": ok("Already given"),
                               **errors(ERRORS)}}},
    "/api/v1/consent/withdraw": {"post": {
        "summary": "Record consent withdrawn", "tags": [TAG],
        "requestBody": _body({"subject": _STR, "purpose": _STR}, ["subject", "purpose"]),
        "responses": {"200": ok("Withdrawn"), **errors(ERRORS)}}},
    "/api/v1/subjects/{subject}/export": {"get": {
        "summary": "Everything held about a subject: rows (personal columns decrypted or "
                   "[erased]), online features, decisions, consent, requests, reviews",
        "tags": [TAG], "parameters": [_SUBJECT],
        "responses": {"200": ok("The subject's data"), **errors(ERRORS)}}},
    "/api/v1/subjects/{subject}/rectify": {"post": {
        "summary": "An audited correction: a new row version with the corrected values",
        "tags": [TAG], "parameters": [_SUBJECT],
        "requestBody": _body({"table": _STR, "changes": {"type": "object"},
                              "event_time": _STR}, ["table", "changes"]),
        "responses": {"200": ok("Rectified"), **errors(ERRORS)}}},
    "/api/v1/subjects/{subject}/erase": {"post": {
        "summary": "Erase by crypto-shredding: the subject's key is deleted", "tags": [TAG],
        "parameters": [_SUBJECT], "responses": {"200": ok("Erased"), **errors(ERRORS)}}},
    "/api/v1/subjects/{subject}/object": {"post": {
        "summary": "An objection to an automated decision: opens a human review (201)",
        "tags": [TAG], "parameters": [_SUBJECT],
        "requestBody": _body({"decision": _STR, "reason": _STR}, ["decision"]),
        "responses": {"201": ok("The review opened"), **errors(ERRORS)}}},
    "/api/v1/subjects/{subject}/requests": {"get": {
        "summary": "The subject's data-subject requests", "tags": [TAG],
        "parameters": [_SUBJECT], "responses": {"200": ok("Requests"), **errors(ERRORS)}}},
    "/api/v1/reviews": {"get": {
        "summary": "The human-review queue", "tags": [TAG],
        "parameters": [{"name": "status", "in": "query", "required": False, "schema": _STR}],
        "responses": {"200": ok("Reviews"), **errors(ERRORS)}}},
    "/api/v1/reviews/{review_id}/decide": {"post": {
        "summary": "Record a review's outcome (uphold or overturn), once", "tags": [TAG],
        "parameters": [_REVIEW],
        "requestBody": _body({"outcome": {"type": "string", "enum": ["uphold", "overturn"]},
                              "note": _STR}, ["outcome"]),
        "responses": {"200": ok("Decided"), **errors(ERRORS)}}},
    "/api/v1/compliance/record": {"get": {
        "summary": "The record of processing activities (JSON, or CSV with format=csv)",
        "tags": [TAG],
        "parameters": [{"name": "format", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["json", "csv"]}}],
        "responses": {"200": {"description": "The record", "content": {
            JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": _STR}}},
            **errors(ERRORS)}}},
    "/compliance": {"get": {
        "summary": "The Compliance page (HTML)", "tags": [TAG],
        "parameters": [{"name": "subject", "in": "query", "required": False, "schema": _STR}],
        "responses": {"200": page_doc("The page"), **errors(ERRORS, html=True)}}},
    "/compliance/record.{fmt}": {"get": {
        "summary": "The record of processing activities as a download (json or csv)",
        "tags": [TAG],
        "parameters": [{"name": "fmt", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": ["json", "csv"]}}],
        "responses": {"200": {"description": "The record", "content": {
            JSON: {"schema": {"type": "object"}}, "text/csv": {"schema": _STR}}},
            **errors(ERRORS, html=True)}}},
    "/compliance/consent": _form("Give or withdraw consent (a dashboard form)"),
    "/compliance/subjects/export": _form("Export a subject's data (a dashboard form)",
                                         download=True),
    "/compliance/subjects/rectify": _form("Rectify a subject's row (a dashboard form)"),
    "/compliance/subjects/erase": _form("Erase a subject (a dashboard form)"),
    "/compliance/subjects/object": _form("Object to a decision (a dashboard form)"),
    "/compliance/reviews/{review_id}/decide": _form("Decide a review (a dashboard form)",
                                                    [_REVIEW]),
}  # fmt: skip
