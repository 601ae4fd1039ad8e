"""The native JSON API: health, prediction, decisions, online features, and read-only
views of the registry and the audit chain."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, redirect, request, url_for

from appliance.auth import Actor, Unauthenticated
from appliance.core import Appliance
from appliance.errors import BadInput
from appliance.features.online import to_json
from webui.auth import needs, public
from webui.metrics import scored

bp = Blueprint("api", __name__)


def appliance() -> Appliance:
    return current_app.extensions["falaj"]


def request_actor() -> Actor:
    """The authenticated principal of this request (a user's session or an API token),
    found by webui.auth before the view ran."""
    actor = g.get("actor")
    if actor is None:
        raise Unauthenticated("sign in, or send Authorization: Bearer <token>")
    return actor


def request_key() -> str | None:
    """The request's key (``X-Falaj-Key``): a release's sticky routing key, and the data
    subject whose consent serving checks, on every protocol."""
    return request.headers.get("X-Falaj-Key") or None


def back(endpoint: str, message: str, ok: bool = True, anchor: str = "", **values: object):
    """A form's answer: redirect to ``endpoint``, which shows ``message`` as a notice (a
    failure when not ``ok``), scrolled to ``anchor``."""
    target = url_for(endpoint, done=message[:500], ok="1" if ok else "0", **values)
    return redirect(target + anchor)


def json_body() -> dict:
    body = request.get_json(silent=True)  # the app's parser refuses deep nesting (400)
    if body is None:
        raise BadInput("request body: expected JSON (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise BadInput("request body: expected a JSON object")
    return body


@bp.get("/healthz")
@public
def healthz():
    """Answers anyone: live versions, and any slot out of service (503 when a live slot
    cannot serve)."""
    answer, status = health(appliance())
    return jsonify(answer), status


def health(app: Appliance) -> tuple[dict, int]:
    deployments = app.serving.health()
    serving = all(d["serving"] for d in deployments.values())
    degraded = any(d["degraded"] for d in deployments.values())
    status = "ok" if serving and not degraded else ("degraded" if serving else "unavailable")
    return {"status": status, "deployments": deployments}, 200 if serving else 503


FAST_PATH_ERROR = "falaj.fast_path_error"  # set by webui.fastpath only (not an HTTP_ key)


@bp.post("/api/v1/models/<name>/predict")
@needs("model.predict")
def predict(name: str):
    failed = request.environ.pop(FAST_PATH_ERROR, None)
    if failed is not None:  # the fast path scored it and failed: answer that error here
        return jsonify(scored(name, lambda: _raise(failed)))
    return jsonify(scored(name, lambda: score(appliance(), name, json_body(), request_actor(),
                                              request_key())))  # fmt: skip


def _raise(exc: BaseException):
    raise exc


def score(app: Appliance, name: str, body: dict, actor: Actor, key: str | None) -> dict:
    """A native prediction request's answer: ``records`` or ``entities`` scored."""
    if "records" in body and "entities" in body:
        raise BadInput('request body: give either "records" or "entities", not both')
    if "entities" in body:
        return app.serving.predict_entities(name, body["entities"], actor, key=key)
    if "records" not in body:
        raise BadInput(
            'request body: missing field "records" (a list of {feature: number} objects), '
            'or "entities" for a model trained on feature views'
        )
    return app.serving.predict(name, body["records"], actor, key=key)


@bp.get("/api/v1/decisions/<request_id>")
@needs("decision.read")
def decision(request_id: str):
    return jsonify(appliance().serving.decision(request_id, request_actor()))


@bp.get("/api/v1/models")
@needs("model.read")
def models():
    return jsonify({"models": appliance().registry.versions(request_actor())})


@bp.get("/api/v1/models/resolve")
@needs("model.read")
def resolve_model():
    """A version by any model reference (``models:/credit@champion``, ``credit@2``, ...)."""
    app, actor = appliance(), request_actor()
    ref = request.args.get("ref", "")
    if not ref:
        raise BadInput('query parameter "ref" is missing (like models:/credit@champion)')
    name, version = app.registry.resolve(ref[:300], actor)
    row = app.registry.version(name, version, actor)
    return jsonify(row | {"aliases": app.registry.aliases_of(name, version, actor)})


@bp.put("/api/v1/models/<name>/aliases/<alias>")
@needs("model.alias")
def put_alias(name: str, alias: str):
    """Point an alias at a version: body {"version": N}. Audited."""
    version = json_body().get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadInput('request body: field "version" must be a positive integer')
    return jsonify(appliance().registry.set_alias(name, alias, version, request_actor()))


@bp.delete("/api/v1/models/<name>/aliases/<alias>")
@needs("model.alias")
def delete_alias(name: str, alias: str):
    return jsonify(appliance().registry.delete_alias(name, alias, request_actor()))


@bp.get("/api/v1/runs")
@needs("model.read")
def runs():
    """Training runs newest first; ``model`` and ``search`` (a search run's id) filter."""
    args = request.args
    return jsonify({"runs": appliance().runs.list(request_actor(), model=args.get("model"),
                                                  parent=args.get("search"))})  # fmt: skip


@bp.get("/api/v1/tables")
@needs("data.read")
def tables():
    return jsonify({"tables": appliance().catalog.tables(request_actor())})


@bp.get("/api/v1/audit/verify")
@needs("audit.read")
def audit_verify():
    v = appliance().audit.verify(request_actor(), full=request.args.get("full") == "1")
    return jsonify({"checked": v.checked, "hashed": v.hashed, "ok": v.ok,
                    "first_bad": v.first_bad, "reason": v.reason,
                    "checkpoint": v.checkpoint})  # fmt: skip


@bp.post("/api/v1/features/online")
@needs("features.read")
def online_features():
    """The latest materialized feature values of entities, as ``get_online_features``."""
    body = json_body()
    features, entities = body.get("features"), body.get("entities")
    if not isinstance(features, list) or not features:
        raise BadInput('request body: field "features" must be a non-empty list of "VIEW:COLUMN"')
    for i, f in enumerate(features):
        if not isinstance(f, str):
            raise BadInput(f'request body: field "features[{i}]" must be a string "VIEW:COLUMN"')
    if not isinstance(entities, list):
        raise BadInput(
            'request body: field "entities" must be a list of objects like {"customer_id": "c1"}'
        )
    for i, e in enumerate(entities):
        if not isinstance(e, dict):
            raise BadInput(f'request body: field "entities[{i}]" must be an object')
    full_names = body.get("full_names", False)
    if not isinstance(full_names, bool):
        raise BadInput('request body: field "full_names" must be true or false')
    result = appliance().online.get_online_features(
        features, entities, request_actor(), full_names=full_names
    )
    return jsonify(to_json(result))
