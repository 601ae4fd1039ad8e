"""The native JSON API: health, prediction, decisions, and read-only views of the
registry and the audit chain."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from appliance.auth import Actor
from appliance.core import Appliance
from appliance.errors import BadInput

bp = Blueprint("api", __name__)


def appliance() -> Appliance:
    return current_app.extensions["falaj"]


def request_actor() -> Actor:
    # Until accounts land, API callers are identified by address.
    return Actor("api", request.remote_addr or "unknown")


def json_body() -> dict:
    body = request.get_json(silent=True)  # the app's parser refuses deep nesting (400)
    if body is None:
        raise BadInput("request body: expected JSON (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise BadInput("request body: expected a JSON object")
    return body


@bp.get("/healthz")
def healthz():
    """Answers anyone: live versions, and any slot out of service (503 when a live slot
    cannot serve)."""
    deployments = appliance().serving.health()
    serving = all(d["serving"] for d in deployments.values())
    degraded = any(d["degraded"] for d in deployments.values())
    status = "ok" if serving and not degraded else ("degraded" if serving else "unavailable")
    return jsonify({"status": status, "deployments": deployments}), 200 if serving else 503


@bp.post("/api/v1/models/<name>/predict")
def predict(name: str):
    body = json_body()
    if "records" not in body:
        raise BadInput(
            'request body: missing field "records" (a list of {feature: number} objects)'
        )
    return jsonify(appliance().serving.predict(name, body["records"], request_actor()))


@bp.get("/api/v1/decisions/<request_id>")
def decision(request_id: str):
    return jsonify(appliance().serving.decision(request_id, request_actor()))


@bp.get("/api/v1/models")
def models():
    return jsonify({"models": appliance().registry.versions(request_actor())})


@bp.get("/api/v1/tables")
def tables():
    return jsonify({"tables": appliance().catalog.tables(request_actor())})


@bp.get("/api/v1/audit/verify")
def audit_verify():
    v = appliance().audit.verify(request_actor(), full=request.args.get("full") == "1")
    return jsonify({"checked": v.checked, "hashed": v.hashed, "ok": v.ok,
                    "first_bad": v.first_bad, "reason": v.reason})  # fmt: skip
