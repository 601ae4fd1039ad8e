"""The Releases page and its JSON API: every deployment with its active release and a
report per variant, a form that starts a release (canary, shadow, A/B, automatic or
not), promote and rollback buttons. Forms post to the same service the CLI calls, then
redirect back (post/redirect/get) with one line of outcome."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request

from appliance.errors import BadInput, FalajError
from appliance.serving.releases import DEFAULT_PERCENT, STRATEGIES
from webui.api import appliance, back, json_body, request_actor
from webui.auth import needs

bp = Blueprint("releases", __name__)

POLICY_FIELDS = ("min_requests", "after", "max_error_rate", "max_p99_ms", "max_psi",
                 "min_metric_delta")  # fmt: skip


def _start_args(body: dict[str, Any], where: str = "request body") -> dict[str, Any]:
    """Check a start request: version, strategy, percent, force, and an automatic policy
    (``policy`` as an object, or ``auto`` with the policy's fields at the top level)."""
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadInput(f'{where}: field "version" must be a positive integer')
    strategy = body.get("strategy")
    if strategy not in STRATEGIES:
        raise BadInput(f'{where}: field "strategy" must be one of {", ".join(STRATEGIES)}')
    percent = body.get("percent")
    if percent is not None and (isinstance(percent, bool) or not isinstance(percent, int | float)):
        raise BadInput(f'{where}: field "percent" must be a number from 0 to 100')
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadInput(f'{where}: field "force" must be true or false')
    policy = body.get("policy")
    if policy is None and body.get("auto"):
        policy = {k: body[k] for k in POLICY_FIELDS if body.get(k) is not None}
    if policy is not None and not isinstance(policy, dict):
        raise BadInput(f'{where}: field "policy" must be an object like {{"min_requests": 500}}')
    return {"version": version, "strategy": strategy, "percent": percent, "force": force,
            "policy": policy}  # fmt: skip


# -- JSON API ----------------------------------------------------------------------


@bp.get("/api/v1/releases")
@needs("release.read")
def api_list():
    return jsonify({"deployments": appliance().releases.list(request_actor())})


@bp.get("/api/v1/models/<name>/release")
@needs("release.read")
def api_status(name: str):
    return jsonify(appliance().releases.status(name, request_actor()))


@bp.post("/api/v1/models/<name>/release")
@needs("release.manage")
def api_start(name: str):
    a = _start_args(json_body())
    r = appliance().releases.start(name, a["version"], a["strategy"], request_actor(),
                                   percent=a["percent"], policy=a["policy"], force=a["force"])  # fmt: skip
    return jsonify(r), 201


@bp.post("/api/v1/models/<name>/release/promote")
@needs("release.manage")
def api_promote(name: str):
    return jsonify(appliance().releases.promote(name, request_actor()))


@bp.post("/api/v1/models/<name>/release/rollback")
@needs("release.manage")
def api_rollback(name: str):
    return jsonify(appliance().releases.rollback(name, request_actor()))


@bp.post("/api/v1/models/<name>/release/evaluate")
@needs("release.manage")
def api_evaluate(name: str):
    return jsonify({"decisions": appliance().releases.evaluate(request_actor(), name)})


# -- the page ------------------------------------------------------------------------


def _back(message: str, ok: bool = True, name: str | None = None):
    return back("releases.page", message, ok, f"#release-{name}" if name else "")


@bp.get("/releases")
@needs("release.read")
def page():
    app, actor = appliance(), request_actor()
    rows = app.releases.list(actor)
    versions: dict[str, list[int]] = {}
    for v in app.registry.versions(actor):
        versions.setdefault(v["name"], []).append(v["version"])
    details = {d["name"]: app.releases.status(d["name"], actor) for d in rows}
    return render_template(
        "releases.html",
        rows=rows,
        details=details,
        versions={k: sorted(v, reverse=True) for k, v in versions.items()},
        strategies=STRATEGIES,
        defaults=DEFAULT_PERCENT,
        selected=request.args.get("model"),
        done=request.args.get("done"),
        done_ok=request.args.get("ok") != "0",
    )


def _form_number(name: str, kind: type) -> Any:
    text = request.form.get(name, "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise BadInput(f'field "{name}": {text[:40]!r} is not a number') from None


@bp.post("/releases/<name>/start")
@needs("release.manage")
def start(name: str):
    app, actor = appliance(), request_actor()
    try:
        body: dict[str, Any] = {
            "version": _form_number("version", int),
            "strategy": request.form.get("strategy", ""),
            "percent": _form_number("percent", float),
            "force": request.form.get("force") == "1",
        }
        if request.form.get("auto") == "1":
            policy = {f: _form_number(f, int if f == "min_requests" else float)
                      for f in POLICY_FIELDS if f != "after"}  # fmt: skip
            after = request.form.get("after", "").strip()
            policy = {k: v for k, v in policy.items() if v is not None}
            if after:
                policy["after"] = after[:40]
            body["policy"] = policy
        a = _start_args(body, "form")
        r = app.releases.start(name, a["version"], a["strategy"], actor, percent=a["percent"],
                               policy=a["policy"], force=a["force"])  # fmt: skip
        rel = r["release"]
        return _back(f"started {rel['strategy']} release {rel['id']} of {name}@{rel['candidate_version']}",
                     name=name)  # fmt: skip
    except FalajError as exc:
        if exc.status == 404:
            raise
        return _back(exc.message, ok=False, name=name)


@bp.post("/releases/<name>/promote")
@needs("release.manage")
def promote(name: str):
    try:
        r = appliance().releases.promote(name, request_actor())
        return _back(f"promoted: {name}@{r['live_version']} is live in the {r['live_slot']} slot",
                     name=name)  # fmt: skip
    except FalajError as exc:
        if exc.status == 404:
            raise
        return _back(exc.message, ok=False, name=name)


@bp.post("/releases/<name>/rollback")
@needs("release.manage")
def rollback(name: str):
    try:
        r = appliance().releases.rollback(name, request_actor())
        return _back(f"rolled back: {name}@{r['live_version']} answers all traffic", name=name)
    except FalajError as exc:
        if exc.status == 404:
            raise
        return _back(exc.message, ok=False, name=name)
