"""The native JSON API: health, prediction, and read-only views of the registry."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from appliance.audit import Actor
from appliance.core import Appliance
from appliance.errors import BadInput

bp = Blueprint("api", __name__)


def appliance() -> Appliance:
    return current_app.extensions["falaj"]


def request_actor() -> Actor:
    # Until accounts land, API callers are identified by address.
    return Actor("api", request.remote_addr or "unknown")


def json_body() -> dict:
    body = request.get_json(silent=True)
    if body is None:
        raise BadInput("request body: expected JSON (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise BadInput("request body: expected a JSON object")
    return body


@bp.get("/healthz")
def healthz():
    app = appliance()
    deployments = app.server.deployments()
    return jsonify(
        {
            "status": "ok",
            "deployments": {
                n: {"version": d.live.version, "slot": d.live_slot} for n, d in deployments.items()
            },
        }
    )


@bp.post("/api/v1/models/<name>/predict")
def predict(name: str):
    body = json_body()
    if "records" not in body:
        raise BadInput(
            'request body: missing field "records" (a list of {feature: number} objects)'
        )
    return jsonify(appliance().predict(name, body["records"], request_actor()))


@bp.get("/api/v1/models")
def models():
    return jsonify({"models": appliance().models()})


@bp.get("/api/v1/tables")
def tables():
    return jsonify({"tables": appliance().tables()})


@bp.get("/api/v1/audit/verify")
def audit_verify():
    v = appliance().audit_verify()
    return jsonify({"checked": v.checked, "ok": v.ok, "first_bad": v.first_bad, "reason": v.reason})
