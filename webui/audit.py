"""The audit view and its JSON API: the chain's state, the latest signed checkpoints,
a receipt's inclusion proof (looked up from a form), consistency between checkpoints,
and a button that writes a checkpoint for the roles allowed to."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from appliance.errors import BadInput, FalajError
from webui.api import appliance, back, request_actor
from webui.apidoc import errors, ok
from webui.apidoc import page as page_doc  # "page" is this blueprint's view
from webui.auth import needs

bp = Blueprint("audit", __name__)


def _size_arg(name: str) -> int | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"query parameter {name!r}: {text[:40]!r} is not a whole number") from None
    if value < 0:
        raise BadInput(f"query parameter {name!r}: expected a tree size >= 0")
    return value


# -- JSON API ----------------------------------------------------------------------


@bp.get("/api/v1/audit/checkpoints")
@needs("audit.read")
def api_checkpoints():
    limit = _size_arg("limit") or 20
    return jsonify(
        {"checkpoints": appliance().audit.checkpoints(request_actor(), min(limit, 1000))}
    )


@bp.post("/api/v1/audit/checkpoint")
@needs("audit.checkpoint")
def api_checkpoint():
    return jsonify(appliance().audit.checkpoint(request_actor()))


@bp.get("/api/v1/audit/proof/<receipt>")
@needs("audit.read")
def api_proof(receipt: str):
    return jsonify(appliance().audit.prove(receipt, request_actor()))


@bp.get("/api/v1/audit/consistency")
@needs("audit.read")
def api_consistency():
    first, second = _size_arg("from"), _size_arg("to")
    return jsonify(appliance().audit.consistency(request_actor(), first, second))


# -- the page ----------------------------------------------------------------------


@bp.get("/audit")
@needs("audit.read")
def page():
    app, actor = appliance(), request_actor()
    receipt = request.args.get("receipt", "").strip()
    proof, problem = None, None
    if receipt:
        try:
            proof = app.audit.prove(receipt, actor)
        except FalajError as exc:  # pending, unknown or malformed: said on the page
            problem = exc.message
    checkpoints = app.audit.checkpoints(actor, 10)
    return render_template(
        "audit.html",
        verification=app.audit.verify(actor),
        checkpoints=checkpoints,
        # the latest checkpoint against the one before it (RFC 6962 consistency)
        consistency=app.audit.consistency(actor) if len(checkpoints) > 1 else None,
        receipt=receipt,
        proof=proof,
        problem=problem,
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


@bp.post("/audit/checkpoint")
@needs("audit.checkpoint")
def checkpoint():
    try:
        c = appliance().audit.checkpoint(request_actor())
    except FalajError as exc:
        return back("audit.page", exc.message, ok=False)
    return back("audit.page", f"checkpoint {c['line_no']} signed: {c['size']} events, root "
                              f"{c['root'][:16]}...")  # fmt: skip


# -- the OpenAPI document's part (webui/openapi.py merges it) ----------------------

ERRORS = "Bad input, an unknown receipt, or a proof still pending (409)"


_SIZE = {"type": "integer", "minimum": 0}
TAG = "Audit"
OPENAPI: dict = {
    "/audit": {"get": {
        "summary": "The Audit page (HTML): the chain, signed checkpoints, a receipt's proof",
        "tags": [TAG],
        "parameters": [{"name": "receipt", "in": "query", "required": False,
                        "description": "A prediction's receipt: its proof is shown",
                        "schema": {"type": "string", "maxLength": 200}}],
        "responses": {"200": page_doc("The page"), **errors(ERRORS, html=True)}}},
    "/audit/checkpoint": {"post": {
        "summary": "Write a signed checkpoint (a dashboard form)",
        "tags": [TAG],
        "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {
            "schema": {"type": "object"}}}},
        "responses": {"302": {"description": "Back to the Audit page, with the outcome"}}}},
    "/api/v1/audit/checkpoints": {"get": {
        "summary": "The latest signed checkpoints, newest first",
        "tags": [TAG],
        "parameters": [{"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1000}}],
        "responses": {"200": ok("Checkpoints: line_no, size, root, head, time, key_id, "
                                 "public_key, sig"), **errors(ERRORS)}}},
    "/api/v1/audit/checkpoint": {"post": {
        "summary": "Sign the verified chain's size and Merkle root (RFC 6962) with Ed25519 "
                   "and append it to the checkpoint log outside the store",
        "tags": [TAG],
        "responses": {"200": ok("The checkpoint written"), **errors(ERRORS)}}},
    "/api/v1/audit/proof/{receipt}": {"get": {
        "summary": "A decision's proof: its record in its batch's Merkle root, the batch's "
                   "audit event in the latest signed checkpoint; 409 while pending",
        "tags": [TAG],
        "parameters": [{"name": "receipt", "in": "path", "required": True,
                        "description": "The receipt a prediction answered with",
                        "schema": {"type": "string"}}],
        "responses": {"200": ok("The proof, checkable offline with "
                                 "python -m appliance.audit.verify_export"), **errors(ERRORS)}}},
    "/api/v1/audit/consistency": {"get": {
        "summary": "An RFC 6962 consistency proof between two tree sizes (default: the two "
                   "latest checkpoints)",
        "tags": [TAG],
        "parameters": [{"name": "from", "in": "query", "required": False, "schema": _SIZE},
                       {"name": "to", "in": "query", "required": False, "schema": _SIZE}],
        "responses": {"200": ok("from, to, their roots, the proof and whether it verified"),
                      **errors(ERRORS)}}},
}  # fmt: skip
